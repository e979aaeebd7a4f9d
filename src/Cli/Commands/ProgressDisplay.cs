using System.Globalization;
using System.Text;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>An in-place progress bar for terminals. Log lines written through <see cref="Log"/> clear the bar
/// first, so the bar always sits on the last line.</summary>
internal sealed class ProgressDisplay(TextWriter terminal)
{
    private const int Width = 30;
    private bool _barShown;

    public TextWriter Log => new LineWriter(this);

    public void Update(TrainingStepReport report)
    {
        int filled = (int)(Width * report.Step / Math.Max(1, report.MaxSteps));
        string rate = report.ItPerSecond > 0 ? report.ItPerSecond.ToString("F2", CultureInfo.InvariantCulture) + " it/s" : "";
        string loss = report.Values.TryGetValue("total_loss", out var l) ? $"loss {l.ToString("F4", CultureInfo.InvariantCulture)}" : "";
        lock (this)
        {
            terminal.Write($"\r\u001b[K[{new string('#', filled)}{new string('.', Width - filled)}] {report.Step}/{report.MaxSteps}  {loss}  {rate}");
            terminal.Flush();
            _barShown = true;
        }
        if (report.Step == report.MaxSteps) Finish();
    }

    public void Finish()
    {
        lock (this)
        {
            if (_barShown) terminal.WriteLine();
            _barShown = false;
        }
    }

    private void WriteLogLine(string line)
    {
        lock (this)
        {
            terminal.Write(_barShown ? "\r\u001b[K" + line + "\n" : line + "\n");
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
