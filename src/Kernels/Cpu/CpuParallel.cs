using System.Runtime.ExceptionServices;

namespace MaskBit.Kernels.Cpu;

/// <summary>A loop body over a range of items [start, end). As a struct type argument it is called directly (and
/// can be inlined), and a parallel loop over it needs no closure.</summary>
public interface IRangeBody
{
    void Run(int start, int end);
}

/// <summary>Splits work over the cores in a few large contiguous chunks (one per worker) so scheduling cost
/// stays far below kernel cost, and runs inline when the work is too small to be worth a fork.</summary>
public static class CpuParallel
{
    public static int Workers { get; set; } = Environment.ProcessorCount;

    /// <summary>Runs body(start, end) over [0, count) in up to <see cref="Workers"/> chunks.
    /// <paramref name="costPerItem"/> (rough FLOPs or bytes per item) keeps tiny loops on one thread.</summary>
    public static void For(int count, Action<int, int> body, double costPerItem = 1e4) =>
        For(count, new DelegateBody(body), costPerItem);

    /// <summary><see cref="For(int, Action{int, int}, double)"/> over a struct body: no delegate, no closure.</summary>
    public static void For<TBody>(int count, TBody body, double costPerItem = 1e4) where TBody : struct, IRangeBody
    {
        if (count <= 0) return;
        int workers = Math.Min(Workers, count);
        if (workers <= 1 || count * costPerItem < 2e5) { body.Run(0, count); return; }
        new ForkJoin<TBody>(body, count, workers).Run();
    }

    private readonly struct DelegateBody(Action<int, int> body) : IRangeBody
    {
        public void Run(int start, int end) => body(start, end);
    }

    /// <summary>One parallel loop: the caller queues a work item per extra worker and then takes chunks itself like
    /// the items do, so the loop finishes even when the pool is busy (or the loop is nested in another one's chunk);
    /// it then waits for the chunks others took. An exception of a chunk is rethrown as is once all have ended.</summary>
    private sealed class ForkJoin<TBody>(TBody body, int count, int workers) : IThreadPoolWorkItem
        where TBody : struct, IRangeBody
    {
        private int _nextChunk;
        private int _doneChunks;
        private Exception? _error;

        public void Run()
        {
            for (int i = 1; i < workers; i++) ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
            Execute();
            var spin = new SpinWait();
            while (Volatile.Read(ref _doneChunks) < workers && !spin.NextSpinWillYield) spin.SpinOnce();
            lock (this)
                while (_doneChunks < workers) Monitor.Wait(this);
            if (_error != null) ExceptionDispatchInfo.Throw(_error);
        }

        /// <summary>Takes chunks until none is left (a late work item finds none and returns).</summary>
        public void Execute()
        {
            int chunk;
            while ((chunk = Interlocked.Increment(ref _nextChunk) - 1) < workers)
            {
                try
                {
                    body.Run((int)((long)count * chunk / workers), (int)((long)count * (chunk + 1) / workers));
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref _error, e, null);
                }
                if (Interlocked.Increment(ref _doneChunks) == workers)
                    lock (this) Monitor.PulseAll(this);
            }
        }
    }
}
