using System.Globalization;

namespace MaskBit.Distributed;

/// <summary>
/// The collective timeout for calls that block in a library we cannot poll: NCCL's communicator set-up, which waits
/// for every rank to join, and the CUDA stream sync that waits for the NCCL collectives queued on it (a peer that
/// died or hangs leaves NCCL's kernel spinning, and the sync with it). Such a call cannot be interrupted, so a timer
/// aborts the whole job (<see cref="ICollectives.Abort"/>: MPI_Abort) when it has not returned within the group's
/// <see cref="ICollectives.Timeout"/>, with the same one line as a timed-out MPI collective, naming this rank.
/// </summary>
public static class CollectiveWatchdog
{
    /// <summary>Runs <paramref name="call"/> (described by <paramref name="what"/>) and aborts the job if it has not
    /// returned after <paramref name="group"/>'s timeout. Exceptions of the call pass through.</summary>
    public static void Run(ICollectives group, string what, Action call)
    {
        if (group.Timeout == Timeout.InfiniteTimeSpan)
        {
            call();
            return;
        }
        using var alarm = new Timer(_ => group.Abort(TimedOut(group, what), 1), null, group.Timeout, Timeout.InfiniteTimeSpan);
        call();
    }

    /// <summary>The one line a job stops with when rank <paramref name="group"/>.Rank waited too long in <paramref name="what"/>.</summary>
    public static string TimedOut(ICollectives group, string what) => string.Create(CultureInfo.InvariantCulture,
        $"rank {group.Rank}: {what} timed out after {group.Timeout.TotalSeconds:0.#} s waiting for the other ranks (one is stuck or gone); " +
        $"stopping the job ({ProcessGroup.TimeoutVariable} sets the limit)");
}
