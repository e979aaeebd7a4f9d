using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;

namespace MaskBit.KernelAb;

/// <summary>
/// A/B timing of two builds of MaskBit.Kernels in ONE process, for shared, loaded machines where separate runs
/// cannot be compared: each build is loaded into its own AssemblyLoadContext, the workload is prepared in both, and
/// calls alternate A, B, A, B... so both see the same load. Reports per-side medians and the median of the paired
/// ratios (A time / B time: > 1 means B is faster).
///   dotnet run -c Release --project bench/ab -- DIR_A DIR_B WORKLOAD[,WORKLOAD...] [--pairs N] [--threads T] [--cpu]
/// --cpu: one thread, timed by the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) instead of the wall clock, which
/// removes the time the thread waits for a core on a loaded machine (not the cache sharing).
/// DIR_A/DIR_B hold a MaskBit.Kernels.dll each (e.g. copies of src/Kernels/bin/Release/net10.0 of two commits).
/// The ISA follows MASKBIT_ISA as in the other tools. Workloads: see <see cref="Workloads.Prepare"/>.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length < 3) { Console.Error.WriteLine("usage: DIR_A DIR_B WORKLOAD[,WORKLOAD...] [--pairs N] [--threads T]"); return 2; }
        int pairs = 40, threads = Environment.ProcessorCount;
        bool cpuTime = false;
        for (int i = 3; i < args.Length; i++)
        {
            if (args[i] == "--cpu") { cpuTime = true; threads = 1; }
            else if (args[i] == "--pairs" && i + 1 < args.Length) pairs = int.Parse(args[++i]);
            else if (args[i] == "--threads" && i + 1 < args.Length) threads = int.Parse(args[++i]);
            else { Console.Error.WriteLine($"unknown argument {args[i]}"); return 2; }
        }
        Func<double> clock = cpuTime ? ThreadCpuSeconds : () => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
        var sides = new[] { Side.Load("A", args[0], threads, clock), Side.Load("B", args[1], threads, clock) };
        Console.WriteLine($"isa={Environment.GetEnvironmentVariable("MASKBIT_ISA") ?? "best"} threads={threads} clock={(cpuTime ? "thread cpu" : "wall")} pairs={pairs} load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        foreach (string workload in args[2].Split(','))
        {
            var runs = sides.Select(s => s.Prepare(workload)).ToArray();
            foreach (var run in runs) { run(); run(); }
            var times = new double[2][];
            times[0] = new double[pairs]; times[1] = new double[pairs];
            var ratios = new double[pairs];
            for (int p = 0; p < pairs; p++)
            {
                // Alternate which side goes first so a trend in the load does not favour one side.
                int first = p % 2;
                times[first][p] = runs[first]();
                times[1 - first][p] = runs[1 - first]();
                ratios[p] = times[0][p] / times[1][p];
            }
            Console.WriteLine($"{workload,-28} A {Median(times[0]) * 1e3,9:F3} ms   B {Median(times[1]) * 1e3,9:F3} ms   A/B median {Median(ratios):F3}  (p25 {Percentile(ratios, 0.25):F3}, p75 {Percentile(ratios, 0.75):F3})");
        }
        return 0;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec { public long Seconds, Nanoseconds; }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    private static double ThreadCpuSeconds()
    {
        const int threadCpuTimeId = 3;  // CLOCK_THREAD_CPUTIME_ID
        ClockGetTime(threadCpuTimeId, out var t);
        return t.Seconds + t.Nanoseconds * 1e-9;
    }

    private static double Median(double[] x) => Percentile(x, 0.5);

    private static double Percentile(double[] x, double q)
    {
        var s = x.OrderBy(v => v).ToArray();
        return s[(int)Math.Round(q * (s.Length - 1))];
    }

    /// <summary>One build: its own load context, in which this tool's assembly binds to that build's kernels.</summary>
    private sealed class Side(string name, MethodInfo prepare, Func<double> clock)
    {
        public string Name { get; } = name;

        public static Side Load(string name, string dir, int threads, Func<double> clock)
        {
            var context = new BuildContext(Path.GetFullPath(dir));
            var self = context.LoadFromAssemblyPath(typeof(Program).Assembly.Location);
            var workloads = self.GetType(typeof(Workloads).FullName!)!;
            workloads.GetMethod(nameof(Workloads.SetThreads))!.Invoke(null, [threads]);
            return new Side(name, workloads.GetMethod(nameof(Workloads.Prepare))!, clock);
        }

        /// <summary>A timed call of the workload in this build (seconds).</summary>
        public Func<double> Prepare(string workload)
        {
            var action = (Action)prepare.Invoke(null, [workload])!;
            return () =>
            {
                double t0 = clock();
                action();
                return clock() - t0;
            };
        }
    }

    private sealed class BuildContext(string dir) : AssemblyLoadContext(isCollectible: false)
    {
        protected override Assembly? Load(AssemblyName assemblyName)
        {
            if (assemblyName.Name == typeof(Program).Assembly.GetName().Name)
                return LoadFromAssemblyPath(typeof(Program).Assembly.Location);
            string path = Path.Combine(dir, assemblyName.Name + ".dll");
            return assemblyName.Name!.StartsWith("MaskBit.", StringComparison.Ordinal) && File.Exists(path) ? LoadFromAssemblyPath(path) : null;
        }
    }
}

/// <summary>The workloads, written against the public kernel API (so any build of it runs them).</summary>
public static class Workloads
{
    public static void SetThreads(int threads) => CpuParallel.Workers = threads;

    /// <summary>gemm_M_N_K[_nt|_tn] (C = A·B, B or A transposed), conv_C_HW[_N[_COUT[_K]]] (3×3 pad 1, C→C, or C→COUT K×K SAME, fwd), convfb_C_HW (fwd +
    /// both gradients), convdx_C_HW, convdw_C_HW, dw_C_HW_N (depthwise 4×4 stride 2, fwd), dwfb_C_HW_N (+ both gradients), amaxpool_PLANES_HW_OHW (adaptive max pooling), attn_BH_SEQ_DIM (forward), attnfb_BH_SEQ_DIM,
    /// linear16_ROWS_IN_OUT (y = x·Wᵀ with x and W in bfloat16, y float32) and conv16_C_HW[_N] (conv's forward on bfloat16
    /// x and W): the kernel work of autocast's Linear and conv2d, which on a build whose kernels read 16-bit operands
    /// is one call on them, and on an older build (see <see cref="ReadsHalfOperands"/>) was widening both into float32
    /// temporaries first.</summary>
    public static Action Prepare(string workload)
    {
        var be = CpuBackend.Instance;
        var p = workload.Split('_');
        int Arg(int i) => int.Parse(p[i]);
        switch (p[0])
        {
            case "gemm":
            {
                bool nt = p.Length > 4 && p[4] == "nt", tn = p.Length > 4 && p[4] == "tn";
                var d = new GemmDesc(Arg(1), Arg(2), Arg(3), TransA: tn, TransB: nt);
                Storage a = Random(be, (long)d.M * d.K), b = Random(be, (long)d.K * d.N), c = be.Allocate((long)d.M * d.N);
                return () => be.Gemm(d, new Buf(a, 0), new Buf(b, 0), new Buf(c, 0));
            }
            case "conv" or "convfb" or "convdx" or "convdw":
            {
                int ch = Arg(1), hw = Arg(2), n = p.Length > 3 ? Arg(3) : 1, cout = p.Length > 4 ? Arg(4) : ch, k = p.Length > 5 ? Arg(5) : 3;
                var d = new Conv2dDesc(n, ch, hw, hw, cout, k, k, 1, 1, k / 2, k / 2, hw, hw);
                long xLen = (long)n * ch * hw * hw, yLen = (long)n * cout * hw * hw, wLen = (long)cout * ch * k * k;
                Storage x = Random(be, xLen), w = Random(be, wLen, 0.05f), dy = Random(be, yLen);
                Storage y = be.Allocate(yLen), dx = be.Allocate(xLen), dw = be.Allocate(wLen);
                string kind = p[0];
                return () =>
                {
                    if (kind is "conv" or "convfb") be.Conv2dForward(d, new Buf(x, 0), new Buf(w, 0), null, new Buf(y, 0));
                    if (kind is "convdx" or "convfb") be.Conv2dBackwardInput(d, new Buf(dy, 0), new Buf(w, 0), new Buf(dx, 0));
                    if (kind is "convdw" or "convfb") be.Conv2dBackwardWeight(d, new Buf(x, 0), new Buf(dy, 0), new Buf(dw, 0), null);
                };
            }
            case "dw" or "dwfb":
            {
                // The discriminator's blur: depthwise 4×4, stride 2, padding 1.
                int ch = Arg(1), hw = Arg(2), n = p.Length > 3 ? Arg(3) : 1, ohw = hw / 2;
                var d = new Conv2dDesc(n, ch, hw, hw, ch, 4, 4, 2, 2, 1, 1, ohw, ohw, Groups: ch);
                long xLen = (long)n * ch * hw * hw, yLen = (long)n * ch * ohw * ohw, wLen = ch * 16L;
                Storage x = Random(be, xLen), w = Random(be, wLen, 0.25f), dy = Random(be, yLen);
                Storage y = be.Allocate(yLen), dx = be.Allocate(xLen), dw = be.Allocate(wLen);
                bool backward = p[0] == "dwfb";
                return () =>
                {
                    be.Conv2dForward(d, new Buf(x, 0), new Buf(w, 0), null, new Buf(y, 0));
                    if (!backward) return;
                    be.Conv2dBackwardInput(d, new Buf(dy, 0), new Buf(w, 0), new Buf(dx, 0));
                    be.Conv2dBackwardWeight(d, new Buf(x, 0), new Buf(dy, 0), new Buf(dw, 0), null);
                };
            }
            case "linear16":
            {
                int rows = Arg(1), inFeatures = Arg(2), outFeatures = Arg(3);
                var d = new GemmDesc(rows, outFeatures, inFeatures, TransB: true);
                Storage x = Random(be, (long)rows * inFeatures, dtype: DType.BFloat16), w = Random(be, (long)outFeatures * inFeatures, 0.05f, DType.BFloat16);
                Storage y = be.Allocate((long)rows * outFeatures);
                return () => AsFloat32Where(be, [(x, (long)rows * inFeatures), (w, (long)outFeatures * inFeatures)],
                    ops => be.Gemm(d, ops[0], ops[1], new Buf(y, 0)));
            }
            case "conv16":
            {
                int ch = Arg(1), hw = Arg(2), n = p.Length > 3 ? Arg(3) : 1;
                var d = new Conv2dDesc(n, ch, hw, hw, ch, 3, 3, 1, 1, 1, 1, hw, hw);
                long xLen = (long)n * ch * hw * hw, wLen = (long)ch * ch * 9;
                Storage x = Random(be, xLen, dtype: DType.BFloat16), w = Random(be, wLen, 0.05f, DType.BFloat16), y = be.Allocate(xLen);
                return () => AsFloat32Where(be, [(x, xLen), (w, wLen)], ops => be.Conv2dForward(d, ops[0], ops[1], null, new Buf(y, 0)));
            }
            case "amaxpool":
            {
                int planes = Arg(1), hw = Arg(2), ohw = Arg(3);
                Storage x = Random(be, (long)planes * hw * hw), y = be.Allocate((long)planes * ohw * ohw);
                Storage argmax = be.Allocate((long)planes * ohw * ohw, DType.Int32);
                return () => be.AdaptiveMaxPoolForward(planes, hw, hw, ohw, ohw, new Buf(x, 0), new Buf(y, 0), new Buf(argmax, 0));
            }
            case "attn" or "attnfb":
            {
                int bh = Arg(1), seq = Arg(2), hd = Arg(3);
                long len = (long)bh * seq * hd;
                float scale = 1f / MathF.Sqrt(hd);
                Storage q = Random(be, len), k = Random(be, len), v = Random(be, len), dOut = Random(be, len);
                Storage o = be.Allocate(len), lse = be.Allocate((long)bh * seq), dq = be.Allocate(len), dk = be.Allocate(len), dv = be.Allocate(len);
                bool backward = p[0] == "attnfb";
                return () =>
                {
                    be.AttentionForward(bh, seq, hd, scale, 0f, 0, new Buf(q, 0), new Buf(k, 0), new Buf(v, 0), new Buf(o, 0), new Buf(lse, 0));
                    if (backward)
                        be.AttentionBackward(bh, seq, hd, scale, 0f, 0, new Buf(q, 0), new Buf(k, 0), new Buf(v, 0), new Buf(o, 0),
                            new Buf(lse, 0), new Buf(dOut, 0), new Buf(dq, 0), new Buf(dk, 0), new Buf(dv, 0));
                };
            }
            default: throw new ArgumentException($"unknown workload '{workload}'");
        }
    }

    private static Storage Random(CpuBackend be, long length, float amplitude = 1f, DType dtype = DType.Float32)
    {
        var rng = new Random(unchecked((int)length));
        var data = new float[length];
        for (long i = 0; i < length; i++) data[i] = amplitude * (float)(rng.NextDouble() * 2 - 1);
        var s = be.Allocate(length, zero: false);
        be.Upload(data, new Buf(s, 0));
        if (dtype == DType.Float32) return s;
        var narrow = be.Allocate(length, dtype, zero: false);
        be.Convert(new Buf(s, 0), new Buf(narrow, 0), length);
        s.Dispose();
        return narrow;
    }

    /// <summary>Whether this build's GEMM reads bfloat16 operands (builds before it throw on them).</summary>
    private static readonly Lazy<bool> ReadsHalfOperands = new(() =>
    {
        var be = CpuBackend.Instance;
        using var a = be.Allocate(1, DType.BFloat16);
        using var c = be.Allocate(1);
        try { be.Gemm(new GemmDesc(1, 1, 1), new Buf(a, 0), new Buf(a, 0), new Buf(c, 0)); return true; }
        catch (InvalidOperationException) { return false; }
    });

    /// <summary>Runs <paramref name="call"/> on the 16-bit operands themselves where the build reads them, else on
    /// float32 copies made for the call and freed after it (what autocast did before).</summary>
    private static void AsFloat32Where(CpuBackend be, (Storage Storage, long Length)[] operands, Action<Buf[]> call)
    {
        if (ReadsHalfOperands.Value) { call(operands.Select(o => new Buf(o.Storage, 0)).ToArray()); return; }
        var wide = operands.Select(o => be.Allocate(o.Length, DType.Float32, zero: false)).ToArray();
        try
        {
            for (int i = 0; i < operands.Length; i++) be.Convert(new Buf(operands[i].Storage, 0), new Buf(wide[i], 0), operands[i].Length);
            call(wide.Select(s => new Buf(s, 0)).ToArray());
        }
        finally { foreach (var s in wide) s.Dispose(); }
    }
}
