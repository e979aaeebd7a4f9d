using System.Globalization;
using System.Text;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>An in-place progress bar for terminals. Log lines written through <see cref="Log"/> clear the bar
/// first, so the bar always sits on the last line.</summary>
internal sealed class ProgressDisplay
{
    private const int Width = 30;
    private readonly TextWriter _terminal;
    private readonly Lock _lock = new();
    private readonly System.Diagnostics.Stopwatch _clock = new();
    private long _firstStep = -1;
    private bool _barShown;

    public ProgressDisplay(TextWriter terminal)
    {
        _terminal = terminal;
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
        lock (_lock)
        {
            _terminal.Write($"\r\u001b[K[{new string('#', filled)}{new string('.', Width - filled)}] {report.Step}/{report.MaxSteps}  {loss}  {rate}");
            _terminal.Flush();
            _barShown = true;
        }
        if (report.Step == report.MaxSteps) Finish();
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
