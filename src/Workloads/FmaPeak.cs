using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Models.Benchmarks;

/// <summary>
/// This machine's FP32 peak at the selected ISA (<see cref="CpuIsa.Current"/>), measured in-process the way
/// the shared folder's peer/peak_fma.c does: every worker thread (<see cref="CpuParallel.Workers"/>), pinned to its own
/// core where the OS allows (Linux sched_setaffinity), runs 12 independent chains of FMAs at the ISA's width
/// (512-bit for avx512, 256-bit for avx2; scalar: multiply + add, as the scalar kernels do) from a common start
/// line. Each try lasts <see cref="TrySeconds"/> after a discarded warm-up try (clocks settle), and the best of
/// <see cref="Tries"/> counts: FLOPs = threads × iterations × 12 × lanes × 2 over the slowest thread's time. On a
/// machine shared with other jobs it is still a lower bound, which is why rows above 100% are flagged.
/// </summary>
public static class FmaPeak
{
    private const int Chains = 12, Tries = 4;
    private const double TrySeconds = 0.3;

    private static readonly Lazy<(double Gflops, Isa Isa, int Threads)> Measured = new(Measure);

    /// <summary>GFLOP/s over all worker threads (measured once per process, on first use).</summary>
    public static double Gflops => Measured.Value.Gflops;

    public static string Description
    {
        get
        {
            var (gflops, isa, threads) = Measured.Value;
            return string.Create(CultureInfo.InvariantCulture,
                $"{gflops:F1} GFLOP/s measured in-process ({threads} pinned threads × {Chains} chains of {Bits(isa)}-bit {(isa == Isa.Scalar ? "mul+add" : "FMA")}, best of {Tries} × {TrySeconds} s)");
        }
    }

    /// <summary>One line for the head of every bench table: CPU model, ISA, cores, threads and the peak.</summary>
    public static string MachineHeader => string.Create(CultureInfo.InvariantCulture,
        $"{CpuModel}, ISA {CpuIsa.Name(CpuIsa.Current)}, {Environment.ProcessorCount} cores visible, {CpuParallel.Workers} worker threads; FMA peak {Description}");

    /// <summary>The "model name" of /proc/cpuinfo, else the OS's architecture name.</summary>
    public static string CpuModel { get; } = ReadCpuModel();

    /// <summary>A row's share of the peak, and whether it exceeds it (then the peak, not the kernel, is wrong).</summary>
    public static (double Percent, bool UnderMeasured) Share(double gflops)
    {
        double percent = 100 * gflops / Gflops;
        return (percent, percent > 100);
    }

    public const string UnderMeasuredNote = "peak under-measured";

    private static string ReadCpuModel()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                    if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':') is int colon and >= 0)
                        return line[(colon + 1)..].Trim();
        }
        catch (IOException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static int Bits(Isa isa) => isa switch { Isa.Avx512 => 512, Isa.Avx2 => 256, _ => 32 };

    private static (double, Isa, int) Measure()
    {
        var isa = CpuIsa.Current;
        int threads = CpuParallel.Workers;
        // Per-thread iterations for one try: a short single-thread calibration, scaled to the try length.
        long iterations = 1 << 16;
        while (RunPinned(isa, 1, iterations) < 0.02) iterations *= 2;
        iterations = (long)(iterations * TrySeconds / RunPinned(isa, 1, iterations));
        RunPinned(isa, threads, iterations);                                        // warm-up: clocks settle
        double best = Enumerable.Range(0, Tries).Min(_ => RunPinned(isa, threads, iterations));
        int lanes = Bits(isa) / 32;
        return (threads * (double)iterations * Chains * lanes * 2 / best / 1e9, isa, threads);
    }

    /// <summary>Seconds from a common start line until the slowest of <paramref name="threads"/> pinned workers
    /// has run its chains.</summary>
    private static double RunPinned(Isa isa, int threads, long iterations)
    {
        var cores = AllowedCores();
        using var start = new Barrier(threads + 1);
        var seconds = new double[threads];
        var workers = Enumerable.Range(0, threads).Select(i => new Thread(() =>
        {
            if (cores.Count > 0) PinCurrentThread(cores[i % cores.Count]);
            start.SignalAndWait();
            long t0 = Stopwatch.GetTimestamp();
            _sink = Chain(isa, iterations);
            seconds[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        })
        { IsBackground = true }).ToList();
        foreach (var t in workers) t.Start();
        start.SignalAndWait();
        foreach (var t in workers) t.Join();
        return seconds.Max();
    }

    // ---- pinning (Linux) ----------------------------------------------------------------------------------------

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int sched_setaffinity(int pid, nint size, ulong* mask);

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int sched_getaffinity(int pid, nint size, ulong* mask);

    private const int MaskWords = 16;   // 1024 CPUs

    /// <summary>The CPUs this process may run on (empty where affinity is unavailable: no pinning then).</summary>
    private static unsafe List<int> AllowedCores()
    {
        var cores = new List<int>();
        if (!OperatingSystem.IsLinux()) return cores;
        ulong* mask = stackalloc ulong[MaskWords];
        try
        {
            if (sched_getaffinity(0, MaskWords * sizeof(ulong), mask) != 0) return cores;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return cores; }
        for (int cpu = 0; cpu < MaskWords * 64; cpu++)
            if ((mask[cpu / 64] >> (cpu % 64) & 1) != 0) cores.Add(cpu);
        return cores;
    }

    private static unsafe void PinCurrentThread(int cpu)
    {
        ulong* mask = stackalloc ulong[MaskWords];
        new Span<ulong>(mask, MaskWords).Clear();
        mask[cpu / 64] = 1UL << (cpu % 64);
        sched_setaffinity(0, MaskWords * sizeof(ulong), mask);   // best effort: an unpinned try only reads lower
    }

    // ---- the chains ---------------------------------------------------------------------------------------------

    private static float _sink;

    private static float Chain(Isa isa, long iterations) => isa switch
    {
        Isa.Avx512 => Chain512(iterations),
        Isa.Avx2 => Chain256(iterations),
        _ => ChainScalar(iterations),
    };

    // The loops differ only in type; the JIT keeps the 12 accumulators in registers.
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

    /// <summary>Scalar: a multiply and an add per step (2 FLOPs), as the scalar kernels' loops compile.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float ChainScalar(long iterations)
    {
        float mul = 0.999999f, add = 1e-7f;
        float a0 = 0, a1 = 1, a2 = 2, a3 = 3, a4 = 4, a5 = 5, a6 = 6, a7 = 7, a8 = 8, a9 = 9, a10 = 10, a11 = 11;
        for (long i = 0; i < iterations; i++)
        {
            a0 = a0 * mul + add; a1 = a1 * mul + add; a2 = a2 * mul + add; a3 = a3 * mul + add;
            a4 = a4 * mul + add; a5 = a5 * mul + add; a6 = a6 * mul + add; a7 = a7 * mul + add;
            a8 = a8 * mul + add; a9 = a9 * mul + add; a10 = a10 * mul + add; a11 = a11 * mul + add;
        }
        return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    }
}
