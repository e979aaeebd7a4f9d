using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MaskBit.Cli.Commands;

/// <summary>
/// Progress of a long command. On a terminal: one bar on the last line (step/total, a detail such as the loss,
/// rate, ETA), redrawn in place; log lines written through <see cref="Log"/> clear it first. Otherwise (output
/// redirected, tests): a plain line at most every <see cref="PlainInterval"/> and at the last step, or nothing
/// when the command's own log lines already report progress (<c>plainLines: false</c>).
/// </summary>
internal sealed class ProgressDisplay
{
    private const int Width = 30;
    public static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(10);

    private readonly TextWriter _output;
    private readonly string _label, _unit;
    private readonly bool _plainLines;
    private readonly Lock _lock = new();
    private readonly Stopwatch _clock = new();
    private TimeSpan? _lastPlainLine;
    private long _firstStep = -1;
    private bool _barShown;

    /// <param name="output">The command's stdout.</param>
    /// <param name="label">What progresses ("train", "generate"), the prefix of plain lines.</param>
    /// <param name="unit">Unit of the rate ("it" for steps, "img" for images).</param>
    /// <param name="plainLines">Whether to print plain progress lines when not on a terminal.</param>
    public ProgressDisplay(TextWriter output, string label, string unit = "it", bool plainLines = true)
    {
        _output = output;
        _label = label;
        _unit = unit;
        _plainLines = plainLines;
        // Only the real console, not redirected, gets the bar (tests pass their own writers).
        IsTerminal = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
        Log = IsTerminal ? new LineWriter(this) : output;
    }

    public bool IsTerminal { get; }

    /// <summary>Where the command's log lines go (through the bar on a terminal).</summary>
    public TextWriter Log { get; }

    /// <summary>Whether <see cref="Report"/> shows anything in this mode (training skips the callback otherwise).</summary>
    public bool Shows => IsTerminal || _plainLines;

    /// <summary>A training step with its loss.</summary>
    public void ReportStep(MaskBit.Models.Training.TrainingStepReport report) =>
        Report(report.Step, report.MaxSteps, string.Create(CultureInfo.InvariantCulture, $"loss {report.Loss:F4}"));

    /// <summary>Reports that <paramref name="done"/> of <paramref name="total"/> are done.</summary>
    public void Report(long done, long total, string? detail = null)
    {
        // The rate over this session's steps (a resumed run starts counting where it resumed).
        if (_firstStep < 0) { _firstStep = done; _clock.Start(); }
        double seconds = _clock.Elapsed.TotalSeconds;
        double perSecond = (done - _firstStep) / Math.Max(seconds, 1e-9);
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{done}/{total}");
        if (!string.IsNullOrEmpty(detail)) text.Append("  ").Append(detail);
        if (done > _firstStep)
        {
            text.Append(CultureInfo.InvariantCulture, $"  {perSecond:F2} {_unit}/s");
            if (done < total) text.Append(CultureInfo.InvariantCulture, $"  eta {TimeSpan.FromSeconds(Math.Round((total - done) / perSecond)):c}");
        }
        lock (_lock)
        {
            if (IsTerminal)
            {
                int filled = (int)(Width * Math.Clamp(done, 0, total) / Math.Max(1, total));
                _output.Write($"\r\u001b[K[{new string('#', filled)}{new string('.', Width - filled)}] {text}");
                _output.Flush();
                _barShown = true;
            }
            else if (_plainLines && (done >= total || _lastPlainLine is not { } last || _clock.Elapsed - last >= PlainInterval))
            {
                _output.WriteLine($"{_label}: {text}");
                _lastPlainLine = _clock.Elapsed;
            }
        }
        if (done >= total) Finish();
    }

    /// <summary>Ends the bar's line (call when the work stops early too).</summary>
    public void Finish()
    {
        lock (_lock)
        {
            if (_barShown) _output.WriteLine();
            _barShown = false;
        }
    }

    private void WriteLogLine(string line)
    {
        lock (_lock)
        {
            _output.Write(_barShown ? "\r\u001b[K" + line + "\n" : line + "\n");
            _barShown = false;
        }
    }

    private sealed class LineWriter(ProgressDisplay display) : TextWriter
    {
        private readonly StringBuilder _pending = new();
        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            if (value == '\n')
            {
                display.WriteLogLine(_pending.ToString().TrimEnd('\r'));
                _pending.Clear();
            }
            else _pending.Append(value);
        }
    }
}
