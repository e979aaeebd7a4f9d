using System.Runtime.InteropServices;
using MaskBit.Distributed;

namespace MaskBit.Cli.Commands;

/// <summary>Ctrl-C (SIGINT) or SIGTERM during training requests a clean stop: the trainer finishes the current
/// step, writes a resumable checkpoint and the command exits with <see cref="Program.ExitInterrupted"/>. A second
/// Ctrl-C ends the process at once. Under mpirun SIGUSR1 asks the same: Open MPI's mpirun forwards SIGUSR1 to every
/// rank, while its own SIGINT/SIGTERM handling kills the ranks one second after passing SIGTERM on.</summary>
internal sealed class StopSignal : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly TextWriter _log;
    private readonly PosixSignalRegistration? _terminate, _user1;
    /// <summary>SIGUSR1's number on Linux (.NET accepts raw signal numbers where PosixSignal has no name).</summary>
    private const int SigUsr1 = 10;

    public StopSignal(TextWriter log)
    {
        _log = log;
        Console.CancelKeyPress += OnCancelKeyPress;
        _terminate = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            Request();
        });
        if (OperatingSystem.IsLinux() && LaunchInfo.FromEnvironment() != null)
            _user1 = PosixSignalRegistration.Create((PosixSignal)SigUsr1, context =>
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
        _user1?.Dispose();
        _source.Dispose();
    }
}
