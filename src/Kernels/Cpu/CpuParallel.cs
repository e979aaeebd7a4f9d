namespace MaskBit.Kernels.Cpu;

/// <summary>Splits work over the cores in a few large contiguous chunks (one per worker) so scheduling cost
/// stays far below kernel cost, and runs inline when the work is too small to be worth a fork.</summary>
public static class CpuParallel
{
    public static int Workers { get; set; } = Environment.ProcessorCount;

    /// <summary>Runs body(start, end) over [0, count) in up to <see cref="Workers"/> chunks.
    /// <paramref name="costPerItem"/> (rough FLOPs or bytes per item) keeps tiny loops on one thread.</summary>
    public static void For(int count, Action<int, int> body, double costPerItem = 1e4)
    {
        if (count <= 0) return;
        int workers = Math.Min(Workers, count);
        if (workers <= 1 || count * costPerItem < 2e5) { body(0, count); return; }
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, wk =>
        {
            int start = (int)((long)count * wk / workers), end = (int)((long)count * (wk + 1) / workers);
            if (start < end) body(start, end);
        });
    }
}
