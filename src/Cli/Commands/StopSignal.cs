using System.Runtime.InteropServices;

namespace MaskBit.Cli.Commands;

/// <summary>Ctrl-C (SIGINT) or SIGTERM during training requests a clean stop: the trainer finishes the current
/// step, writes a resumable checkpoint and the command exits with <see cref="Program.ExitInterrupted"/>. A second
/// Ctrl-C ends the process at once.</summary>
internal sealed class StopSignal : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly TextWriter _log;
    private readonly PosixSignalRegistration? _terminate;

    public StopSignal(TextWriter log)
    {
        _log = log;
        Console.CancelKeyPress += OnCancelKeyPress;
        _terminate = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            Request();
        });
    }

    public CancellationToken Token => _source.Token;

    private void OnCancelKeyPress(object? sender, ConsoleCancelEventArgs e)
    {
        if (_source.IsCancellationRequested) return;   // second Ctrl-C: let the process end
        e.Cancel = true;
        Request();
    }

    private void Request()
    {
        _log.WriteLine();
        _log.WriteLine("stopping after this step (writing a checkpoint); press Ctrl-C again to abort");
        _source.Cancel();
    }

    public void Dispose()
    {
        Console.CancelKeyPress -= OnCancelKeyPress;
        _terminate?.Dispose();
        _source.Dispose();
    }
}
