using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Models.Benchmarks;

/// <summary>
/// This machine's FP32 FMA peak, measured in-process the way the shared folder's peer/peak_fma.c does: every worker
/// thread (<see cref="CpuParallel.Workers"/>) runs 12 independent chains of vector FMAs (enough to cover two FMA
/// pipes × 4-cycle latency) at the widest accelerated width (512-bit where AVX-512 is, else 256-bit); FLOPs =
/// threads × iterations × 12 × lanes × 2. Best of three ~0.1 s tries, so a briefly busy machine lowers it less.
/// On a machine shared with other jobs the figure is still a lower bound on the true peak.
/// </summary>
public static class FmaPeak
{
    private const int Chains = 12;
    private static readonly Lazy<double> Measured = new(() => Enumerable.Range(0, 3).Max(_ => MeasureOnce(TimeSpan.FromSeconds(0.1))));

    /// <summary>GFLOP/s over all worker threads (measured once per process, on first use).</summary>
    public static double Gflops => Measured.Value;

    public static string Description =>
        $"{Gflops:F1} GFLOP/s measured in-process ({CpuParallel.Workers} threads × {Chains} chains of {VectorBits}-bit FMAs, best of 3)";

    private static int VectorBits => Vector512.IsHardwareAccelerated ? 512 : 256;

    private static double MeasureOnce(TimeSpan duration)
    {
        int threads = CpuParallel.Workers;
        long iterations = 1 << 20;
        // Grow the per-thread work until one single-threaded run takes a tenth of the target.
        while (Time(1, iterations) < duration.TotalSeconds / 10) iterations *= 2;
        iterations = (long)(iterations * 10);
        double seconds = Time(threads, iterations);
        int lanes = VectorBits / 32;
        return threads * (double)iterations * Chains * lanes * 2 / seconds / 1e9;
    }

    private static double Time(int threads, long iterations)
    {
        var workers = Enumerable.Range(0, threads).Select(_ => new Thread(() => Chain(iterations))).ToList();
        long start = Stopwatch.GetTimestamp();
        foreach (var t in workers) t.Start();
        foreach (var t in workers) t.Join();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static float _sink;

    private static void Chain(long iterations)
    {
        if (Vector512.IsHardwareAccelerated) _sink = Chain512(iterations);
        else _sink = Chain256(iterations);
    }

    // The two loops differ only in vector type; the JIT keeps the 12 accumulators in registers.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Chain256(long iterations)
    {
        Vector256<float> mul = Vector256.Create(0.999999f), add = Vector256.Create(1e-7f);
        Vector256<float> a0 = Vector256.Create(0f), a1 = Vector256.Create(1f), a2 = Vector256.Create(2f), a3 = Vector256.Create(3f),
            a4 = Vector256.Create(4f), a5 = Vector256.Create(5f), a6 = Vector256.Create(6f), a7 = Vector256.Create(7f),
            a8 = Vector256.Create(8f), a9 = Vector256.Create(9f), a10 = Vector256.Create(10f), a11 = Vector256.Create(11f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, mul, add); a1 = Vector256.FusedMultiplyAdd(a1, mul, add);
            a2 = Vector256.FusedMultiplyAdd(a2, mul, add); a3 = Vector256.FusedMultiplyAdd(a3, mul, add);
            a4 = Vector256.FusedMultiplyAdd(a4, mul, add); a5 = Vector256.FusedMultiplyAdd(a5, mul, add);
            a6 = Vector256.FusedMultiplyAdd(a6, mul, add); a7 = Vector256.FusedMultiplyAdd(a7, mul, add);
            a8 = Vector256.FusedMultiplyAdd(a8, mul, add); a9 = Vector256.FusedMultiplyAdd(a9, mul, add);
            a10 = Vector256.FusedMultiplyAdd(a10, mul, add); a11 = Vector256.FusedMultiplyAdd(a11, mul, add);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Chain512(long iterations)
    {
        Vector512<float> mul = Vector512.Create(0.999999f), add = Vector512.Create(1e-7f);
        Vector512<float> a0 = Vector512.Create(0f), a1 = Vector512.Create(1f), a2 = Vector512.Create(2f), a3 = Vector512.Create(3f),
            a4 = Vector512.Create(4f), a5 = Vector512.Create(5f), a6 = Vector512.Create(6f), a7 = Vector512.Create(7f),
            a8 = Vector512.Create(8f), a9 = Vector512.Create(9f), a10 = Vector512.Create(10f), a11 = Vector512.Create(11f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, mul, add); a1 = Vector512.FusedMultiplyAdd(a1, mul, add);
            a2 = Vector512.FusedMultiplyAdd(a2, mul, add); a3 = Vector512.FusedMultiplyAdd(a3, mul, add);
            a4 = Vector512.FusedMultiplyAdd(a4, mul, add); a5 = Vector512.FusedMultiplyAdd(a5, mul, add);
            a6 = Vector512.FusedMultiplyAdd(a6, mul, add); a7 = Vector512.FusedMultiplyAdd(a7, mul, add);
            a8 = Vector512.FusedMultiplyAdd(a8, mul, add); a9 = Vector512.FusedMultiplyAdd(a9, mul, add);
            a10 = Vector512.FusedMultiplyAdd(a10, mul, add); a11 = Vector512.FusedMultiplyAdd(a11, mul, add);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }
}
