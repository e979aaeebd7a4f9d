using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>
/// Sgemm's packing scratch is never overrun: every packed product runs under <see cref="Sgemm.GuardScratch"/> (scratch
/// of exactly the length its blocking asks for, NaN-filled, a canary behind it), on every vector ISA, through the
/// GEMM and convolution entry points, with float32 and 16-bit operands, and its result must match the scalar ISA's
/// (which packs nothing). Small cache blocks make small shapes cross every K, M and N block boundary: partial panels,
/// row blocks, the convolutions' in-place windows with their K blocks of 2·KC (which once overran the scratch of B,
/// and of a packed 16-bit A). The machine's own blocking is checked with shapes sized from it.
/// </summary>
[NonParallelizable]
public class PackingScratchTests
{
    private const double Tolerance = 1e-5;

    /// <summary>KC 24 (in place 48), MC 12, NC 3 panels: K ≥ 25, M ≥ 13 and N ≥ 49 (97 for zmm) cross a block.</summary>
    private static IDisposable SmallBlocks() =>
        Sgemm.GuardScratch(new GemmBlocking(NR: 16, KC: 24, MC: 12, NC: 48, InPlaceKC: 48), new GemmBlocking(NR: 32, KC: 24, MC: 12, NC: 96, InPlaceKC: 48));

    private static IEnumerable<string> VectorIsas => CpuIsa.Supported.Where(isa => isa != Isa.Scalar).Select(CpuIsa.Name);

    private static readonly (int M, int N, int K, bool TransA, bool TransB)[] GemmShapes =
    {
        (7, 100, 53, false, false), (7, 100, 53, true, false), (7, 100, 53, false, true), (7, 100, 53, true, true),
        (40, 37, 100, false, false), (40, 37, 100, true, true), (45, 2 * Sgemm.InPlaceAMaxColumns + 37, 33, false, false),
    };

    private static readonly (DType A, DType B)[] OperandTypes =
    {
        (DType.Float32, DType.Float32), (DType.BFloat16, DType.BFloat16), (DType.Float16, DType.Float32), (DType.Float32, DType.BFloat16),
    };

    /// <summary>Forward windows read in place (few output channels), row blocks, windows packed (more than 128
    /// channels), a strided conv (input-gradient phases); the weight gradient through packed patches (fewer than 16
    /// channels) and through patches read in place (16–128).</summary>
    private static readonly Conv2dDesc[] Convs =
    {
        Conv(2, 5, 7, 8, 7, 3, 1, 1), Conv(2, 5, 7, 8, 20, 3, 1, 1), Conv(1, 3, 6, 6, 136, 3, 1, 1), Conv(2, 6, 9, 9, 9, 4, 2, 1),
    };

    [TestCaseSource(nameof(VectorIsas))]
    public void GemmStaysInsideExactScratch(string isa)
    {
        using var _ = TestIsas.Use(isa);
        using var guard = SmallBlocks();
        foreach (var (m, n, k, ta, tb) in GemmShapes)
            foreach (var (aType, bType) in OperandTypes)
            {
                var d = new GemmDesc(m, n, k, ta, tb);
                var rng = new Random(m * 31 + n + k);
                float[] a = Values(rng, m * k, aType), b = Values(rng, k * n, bType);
                Compare.AssertClose(RunGemm(d, a, aType, b, bType), OnScalar(() => RunGemm(d, a, aType, b, bType)), Tolerance, $"{d} {aType}·{bType}");
            }
    }

    [TestCaseSource(nameof(VectorIsas))]
    public void ConvStaysInsideExactScratch(string isa)
    {
        using var _ = TestIsas.Use(isa);
        using var guard = SmallBlocks();
        foreach (var d in Convs)
            foreach (var dtype in new[] { DType.Float32, DType.BFloat16 })
                CheckConv(d, dtype);
        int saved = CpuBackend.BandColumns;
        CpuBackend.BandColumns = 16;    // the forward in bands of columns, each band's GEMM on its own scratch
        try { CheckConv(Convs[0], DType.Float32); }
        finally { CpuBackend.BandColumns = saved; }
    }

    /// <summary>The machine's blocking: a GEMM over more than NC columns per worker, and a convolution whose in-place
    /// windows run K blocks of InPlaceKC over about NC columns per GEMM (the shape of the crash: the partial last
    /// panel lay beyond KC·NC).</summary>
    [TestCaseSource(nameof(VectorIsas))]
    public void MachineBlockingStaysInsideExactScratch(string isa)
    {
        using var _ = TestIsas.Use(isa);
        var b = Sgemm.BlockingFor(CpuIsa.Current);
        int workers = CpuParallel.Workers;
        using var guard = Sgemm.GuardScratch();

        var g = new GemmDesc(7, workers * (b.NC + b.NR) + 5, b.KC + 3);
        var rng = new Random(1);
        float[] ga = Values(rng, g.M * g.K, DType.Float32), gb = Values(rng, g.K * g.N, DType.Float32);
        Compare.AssertClose(RunGemm(g, ga, DType.Float32, gb, DType.Float32),
            OnScalar(() => RunGemm(g, ga, DType.Float32, gb, DType.Float32)), Tolerance, $"{g}");

        int cin = b.InPlaceKC / 9, k = cin * 9;
        const int side = 30, columnsPerImage = (side + 1) * (side + 1);    // a 3×3 SAME conv's window plane
        int images = Math.Clamp((int)(1.25 * workers * ((long)b.KC * b.NC / k + b.NR) / columnsPerImage) + 1, 1, 64);
        CheckConv(Conv(images, cin, side, side, 8, 3, 1, 1), DType.Float32);
    }

    private static Conv2dDesc Conv(int n, int cin, int h, int w, int cout, int kernel, int stride, int pad)
    {
        int oh = Conv2dDesc.OutSize(h, kernel, stride, pad, pad), ow = Conv2dDesc.OutSize(w, kernel, stride, pad, pad);
        return new Conv2dDesc(n, cin, h, w, cout, kernel, kernel, stride, stride, pad, pad, oh, ow);
    }

    private static T OnScalar<T>(Func<T> run)
    {
        using var _ = CpuIsa.Use(Isa.Scalar);
        return run();
    }

    /// <summary>Forward (with bias), input gradient and weight gradient (with bias gradient) with x, w and dy stored in
    /// <paramref name="dtype"/>, against the scalar ISA.</summary>
    private static void CheckConv(Conv2dDesc d, DType dtype)
    {
        var rng = new Random(d.Cin * 7 + d.Cout);
        float[] x = Values(rng, d.N * d.Cin * d.H * d.W, dtype), w = Values(rng, d.Cout * d.CinPerGroup * d.KH * d.KW, dtype);
        float[] dy = Values(rng, d.N * d.Cout * d.OH * d.OW, dtype), bias = Values(rng, d.Cout, DType.Float32);
        var actual = RunConv(d, x, w, dy, bias, dtype);
        var expected = OnScalar(() => RunConv(d, x, w, dy, bias, dtype));
        string[] names = { "output", "input gradient", "weight gradient", "bias gradient" };
        for (int i = 0; i < names.Length; i++)
            Compare.AssertClose(actual[i], expected[i], Tolerance, $"{d} {dtype} {names[i]}");
    }

    private static float[] RunGemm(GemmDesc d, float[] a, DType aType, float[] b, DType bType)
    {
        var cpu = CpuBackend.Instance;
        using var sa = Stored(a, aType);
        using var sb = Stored(b, bType);
        using var sc = cpu.Allocate((long)d.M * d.N);
        cpu.Gemm(d, new Buf(sa, 0), new Buf(sb, 0), new Buf(sc, 0));
        return Download(sc, d.M * d.N);
    }

    private static float[][] RunConv(Conv2dDesc d, float[] x, float[] w, float[] dy, float[] bias, DType dtype)
    {
        var cpu = CpuBackend.Instance;
        using var sx = Stored(x, dtype);
        using var sw = Stored(w, dtype);
        using var sdy = Stored(dy, dtype);
        using var sb = Stored(bias, DType.Float32);
        using var y = cpu.Allocate(dy.Length);
        using var dx = cpu.Allocate(x.Length);
        using var dw = cpu.Allocate(w.Length);
        using var db = cpu.Allocate(bias.Length);
        cpu.Conv2dForward(d, new Buf(sx, 0), new Buf(sw, 0), new Buf(sb, 0), new Buf(y, 0));
        cpu.Conv2dBackwardInput(d, new Buf(sdy, 0), new Buf(sw, 0), new Buf(dx, 0));
        cpu.Conv2dBackwardWeight(d, new Buf(sx, 0), new Buf(sdy, 0), new Buf(dw, 0), new Buf(db, 0));
        return new[] { Download(y, dy.Length), Download(dx, x.Length), Download(dw, w.Length), Download(db, bias.Length) };
    }

    /// <summary>Random values in [−1, 1) that <paramref name="dtype"/> represents exactly.</summary>
    private static float[] Values(Random rng, int n, DType dtype) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).Select(v => dtype.Is16Bit() ? HalfBits.Round(v, dtype) : v).ToArray();

    private static Storage Stored(float[] values, DType dtype)
    {
        var cpu = CpuBackend.Instance;
        var storage = cpu.Allocate(values.Length, dtype);
        if (dtype == DType.Float32) cpu.Upload(values, new Buf(storage, 0));
        else
        {
            using var wide = cpu.Allocate(values.Length);
            cpu.Upload(values, new Buf(wide, 0));
            cpu.Convert(new Buf(wide, 0), new Buf(storage, 0), values.Length);
        }
        return storage;
    }

    private static float[] Download(Storage storage, int n)
    {
        var values = new float[n];
        CpuBackend.Instance.Download(new Buf(storage, 0), values);
        return values;
    }
}
