using System.Globalization;
using System.Text;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>Shows training progress (a bar on terminals, plain lines elsewhere).</summary>
internal interface IStepProgress
{
    void Update(TrainingStepReport report);
    void Finish();
}

/// <summary>An in-place progress bar for terminals: optional stage label, step, loss, it/s and ETA. Log lines
/// written through <see cref="Log"/> clear the bar first, so the bar always sits on the last line.</summary>
internal sealed class ProgressDisplay : IStepProgress
{
    private const int Width = 30;
    private readonly TextWriter _terminal;
    private readonly string _label;
    private readonly Lock _lock = new();
    private readonly System.Diagnostics.Stopwatch _clock = new();
    private long _firstStep = -1;
    private bool _barShown;

    public ProgressDisplay(TextWriter terminal, string? label = null)
    {
        _terminal = terminal;
        _label = label != null ? label + " " : "";
        Log = new LineWriter(this);
    }

    public TextWriter Log { get; }

    public void Update(TrainingStepReport report)
    {
        int filled = (int)(Width * report.Step / Math.Max(1, report.MaxSteps));
        // The rate over this session's steps (the report's rate only changes at log lines).
        if (_firstStep < 0) { _firstStep = report.Step; _clock.Start(); }
        double perSecond = (report.Step - _firstStep) / Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        string rate = report.Step > _firstStep ? perSecond.ToString("F2", CultureInfo.InvariantCulture) + " it/s" : "";
        string loss = report.Values.TryGetValue("total_loss", out var l) ? $"loss {l.ToString("F4", CultureInfo.InvariantCulture)}" : "";
        string eta = report.Step > _firstStep ? "  " + Eta(report.MaxSteps - report.Step, perSecond) : "";
        lock (_lock)
        {
            _terminal.Write($"\r\u001b[K{_label}[{new string('#', filled)}{new string('.', Width - filled)}] {report.Step}/{report.MaxSteps}  {loss}  {rate}{eta}");
            _terminal.Flush();
            _barShown = true;
        }
        if (report.Step == report.MaxSteps) Finish();
    }

    /// <summary>"eta 00:03:12" for the steps left at the given rate (empty when unknown or done).</summary>
    public static string Eta(long stepsLeft, double perSecond)
    {
        if (stepsLeft <= 0 || !(perSecond > 0)) return "";
        double seconds = stepsLeft / perSecond;
        return seconds < TimeSpan.MaxValue.TotalSeconds ? $"eta {TimeSpan.FromSeconds(Math.Round(seconds)):c}" : "";
    }

    public void Finish()
    {
        lock (_lock)
        {
            if (_barShown) _terminal.WriteLine();
            _barShown = false;
        }
    }

    private void WriteLogLine(string line)
    {
        lock (_lock)
        {
            _terminal.Write(_barShown ? "\r\u001b[K" + line + "\n" : line + "\n");
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

/// <summary>Progress for logs and pipes: one plain line (label, step, loss, it/s, ETA) at most every
/// <c>interval</c>, and one at the last step.</summary>
internal sealed class ProgressLines(TextWriter output, string label, TimeSpan interval) : IStepProgress
{
    private readonly System.Diagnostics.Stopwatch _clock = new();
    private long _firstStep = -1;
    private TimeSpan _lastLine;

    public void Update(TrainingStepReport report)
    {
        if (_firstStep < 0) { _firstStep = report.Step; _clock.Start(); _lastLine = -interval; }
        bool last = report.Step >= report.MaxSteps;
        if (!last && _clock.Elapsed - _lastLine < interval) return;
        _lastLine = _clock.Elapsed;
        double perSecond = (report.Step - _firstStep) / Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        var line = new StringBuilder().Append(CultureInfo.InvariantCulture, $"{label}  step {report.Step}/{report.MaxSteps}");
        if (report.Values.TryGetValue("total_loss", out var loss)) line.Append(CultureInfo.InvariantCulture, $"  loss {loss:F4}");
        if (report.Step > _firstStep)
        {
            line.Append(CultureInfo.InvariantCulture, $"  {perSecond:F2} it/s");
            if (ProgressDisplay.Eta(report.MaxSteps - report.Step, perSecond) is { Length: > 0 } eta) line.Append("  ").Append(eta);
        }
        output.WriteLine(line.ToString());
        output.Flush();
    }

    public void Finish() { }
}
