using System.Runtime.InteropServices;

namespace MaskBit.Distributed;

/// <summary>
/// The collective operations data-parallel training needs, over host buffers, in the spirit of
/// <c>torch.distributed</c>: every rank of the group calls the same operations in the same order with buffers of the
/// same length. Results are identical on every rank (the reductions run in a fixed order, so runs of one world size
/// and seed repeat bit for bit). A collective that does not complete within <see cref="Timeout"/> stops the whole job.
/// </summary>
public interface ICollectives : IDisposable
{
    /// <summary>This process's rank, 0 ≤ Rank &lt; WorldSize; rank 0 writes checkpoints, grids and logs.</summary>
    int Rank { get; }
    int WorldSize { get; }
    /// <summary>The rank among the processes of this machine (picks the GPU of <c>--device cuda</c>).</summary>
    int LocalRank { get; }
    /// <summary>How long a collective may wait for its peers before the job is aborted.</summary>
    TimeSpan Timeout { get; }

    /// <summary>Element-wise sum over the ranks, in place.</summary>
    void AllReduceSum(Span<float> buffer);
    /// <summary>Element-wise sum over the ranks, in place.</summary>
    void AllReduceSum(Span<double> buffer);
    /// <summary>Starts an element-wise sum of <paramref name="buffer"/> in place and returns at once; the buffer must not
    /// be touched until the returned request is waited for (lets the next bucket be packed while this one travels).</summary>
    IPendingCollective StartAllReduceSum(float[] buffer, int offset, int count);
    /// <summary>Rank <paramref name="root"/>'s buffer copied to every rank.</summary>
    void Broadcast(Span<float> buffer, int root = 0);
    /// <summary>Rank <paramref name="root"/>'s bytes copied to every rank.</summary>
    void Broadcast(Span<byte> buffer, int root = 0);
    /// <summary>Returns when every rank has called it.</summary>
    void Barrier();
    /// <summary>Every rank's <paramref name="value"/>, indexed by rank.</summary>
    double[] AllGather(double value);
    /// <summary>Ends every process of the job with <paramref name="exitCode"/> after writing <paramref name="message"/>
    /// (one line, naming this rank) to standard error. Does not return.</summary>
    void Abort(string message, int exitCode);
}

/// <summary>A collective started by <see cref="ICollectives.StartAllReduceSum"/>.</summary>
public interface IPendingCollective
{
    /// <summary>Blocks until the collective is done (or aborts the job after the group's timeout).</summary>
    void Wait();
}

public static class CollectivesExtensions
{
    /// <summary>Element-wise mean over the ranks, in place (sum, then one multiplication by 1/world).</summary>
    public static void AllReduceAverage(this ICollectives group, Span<double> buffer)
    {
        if (group.WorldSize == 1) return;
        group.AllReduceSum(buffer);
        double scale = 1.0 / group.WorldSize;
        for (int i = 0; i < buffer.Length; i++) buffer[i] *= scale;
    }

    public static bool IsMain(this ICollectives group) => group.Rank == 0;

    /// <summary>Every rank's <paramref name="mine"/> (any length, also empty), indexed by rank, on every rank: the
    /// lengths by one all-gather, then each rank's elements by a broadcast from it. For results gathered once at the
    /// end of a command (samples, evaluation sums), not for a step's traffic.</summary>
    public static T[][] AllGather<T>(this ICollectives group, ReadOnlySpan<T> mine) where T : unmanaged
    {
        if (group.WorldSize == 1) return [mine.ToArray()];
        var lengths = group.AllGather(mine.Length);
        var all = new T[group.WorldSize][];
        for (int root = 0; root < group.WorldSize; root++)
        {
            all[root] = root == group.Rank ? mine.ToArray() : new T[checked((int)lengths[root])];
            group.Broadcast(MemoryMarshal.AsBytes(all[root].AsSpan()), root);
        }
        return all;
    }
}

/// <summary>The group of one process: every collective returns its input; nothing waits.</summary>
public sealed class SingleProcess : ICollectives
{
    public static readonly SingleProcess Instance = new();

    public int Rank => 0;
    public int WorldSize => 1;
    public int LocalRank => 0;
    public TimeSpan Timeout => System.Threading.Timeout.InfiniteTimeSpan;
    public void AllReduceSum(Span<float> buffer) { }
    public void AllReduceSum(Span<double> buffer) { }
    public IPendingCollective StartAllReduceSum(float[] buffer, int offset, int count) => Done.Instance;
    public void Broadcast(Span<float> buffer, int root = 0) => CheckRoot(root);
    public void Broadcast(Span<byte> buffer, int root = 0) => CheckRoot(root);
    public void Barrier() { }
    public double[] AllGather(double value) => [value];

    public void Abort(string message, int exitCode)
    {
        Console.Error.WriteLine(message);
        Environment.Exit(exitCode);
    }

    public void Dispose() { }

    private static void CheckRoot(int root)
    {
        if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), root, "a one-process group has only rank 0");
    }

    private sealed class Done : IPendingCollective
    {
        public static readonly Done Instance = new();
        public void Wait() { }
    }
}
