using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Precision;

/// <summary>
/// GEMM and convolution kernels fed bfloat16/float16 operands directly (the CPU packing widens them in registers, the
/// ILGPU kernels widen them first): the result must be the float32 kernel's on the operands' float32 values, on every
/// CPU ISA and on ilgpu-cpu, for every operand mix (16-bit and float32 on either side), transposes, edge tiles, K
/// blocks, and each convolution path (implicit GEMM whole and in bands, strided input-gradient phases, pointwise,
/// grouped, depthwise).
/// </summary>
[NonParallelizable]
public class HalfOperandKernelTests
{
    /// <summary>The same products in the same order: only rounding-free widening differs, so the results agree to the
    /// last bits (a small slack for the ILGPU kernels' independent reductions).</summary>
    private const double Tolerance = 1e-6;

    private static readonly DType[] Halves = { DType.BFloat16, DType.Float16 };

    /// <summary>Every CPU ISA, then each ILGPU test device, as (device, ISA or null).</summary>
    private static IEnumerable<(string Device, string? Isa)> Targets() =>
        TestIsas.Names.Select(isa => (TestDevices.Cpu, (string?)isa))
            .Concat(TestDevices.IlgpuNames.Select(name => (name, (string?)null)));

    private static IEnumerable<TestCaseData> GemmCases()
    {
        var sizes = new (int M, int N, int K)[] { (5, 7, 3), (33, 65, 17), (45, 2 * Sgemm.InPlaceAMaxColumns + 37, 33), (150, 70, 530) };
        foreach (var (device, isa) in Targets())
            foreach (var (aType, bType) in new[] { (DType.BFloat16, DType.BFloat16), (DType.Float16, DType.Float16),
                         (DType.Float32, DType.BFloat16), (DType.Float16, DType.Float32) })
                foreach (var (m, n, k) in sizes)
                    foreach (bool ta in new[] { false, true })
                        foreach (bool tb in new[] { false, true })
                            yield return new TestCaseData(device, isa, aType, bType, new GemmDesc(m, n, k, ta, tb))
                                .SetName($"Gemm16_{device}_{isa ?? "-"}_{aType}x{bType}_{m}x{n}x{k}_{(ta ? "T" : "N")}{(tb ? "T" : "N")}");
    }

    [TestCaseSource(nameof(GemmCases))]
    public void GemmReads16BitOperands(string deviceName, string? isa, DType aType, DType bType, GemmDesc d)
    {
        using var _ = isa == null ? null : TestIsas.Use(isa);
        var device = TestDevices.Get(deviceName);
        var rng = new Random(d.M * 131 + d.N * 7 + d.K + (int)aType * 3 + (int)bType);
        const int offset = 5;   // operands at an offset inside their storages
        float[] a = Values(rng, offset + d.M * d.K, aType), b = Values(rng, offset + d.K * d.N, bType);
        float[] c = Values(rng, d.M * d.N, DType.Float32);
        var expected = RunGemm(device, d, a, DType.Float32, b, DType.Float32, c, offset);
        var actual = RunGemm(device, d, a, aType, b, bType, c, offset);
        Compare.AssertClose(actual, expected, Tolerance, $"{d} {aType}·{bType}");
    }

    [Test]
    public void BatchedGemmWithBroadcastOperand() => TestIsas.Each(() =>
    {
        foreach (var dtype in Halves)
        {
            var d = new GemmDesc(23, 45, 31, Batch: 3, StrideA: 23 * 31, StrideB: 0, StrideC: 23 * 45);
            var rng = new Random(7);
            float[] a = Values(rng, 3 * 23 * 31, dtype), b = Values(rng, 31 * 45, dtype), c = Values(rng, 3 * 23 * 45, DType.Float32);
            Compare.AssertClose(RunGemm(CpuBackend.Instance, d, a, dtype, b, dtype, c, 0),
                RunGemm(CpuBackend.Instance, d, a, DType.Float32, b, DType.Float32, c, 0), Tolerance, $"batched {dtype}");
        }
    });

    /// <summary>C = 0.5·A·B + 0.25·C with the operands stored in the given types.</summary>
    private static float[] RunGemm(IBackend device, GemmDesc d, float[] a, DType aType, float[] b, DType bType, float[] c, int offset)
    {
        using var sa = Stored(device, a, aType);
        using var sb = Stored(device, b, bType);
        using var sc = Stored(device, c, DType.Float32);
        device.Gemm(d, new Buf(sa, offset), new Buf(sb, offset), new Buf(sc, 0), 0.5f, 0.25f);
        return Download(device, sc, c.Length);
    }

    /// <summary>A conv geometry: input (n, cin, h, w), weight (cout, cin/groups, k, k), stride, padding.</summary>
    public sealed record ConvCase(string Name, int N, int Cin, int H, int W, int Cout, int K, int Stride, int Pad, int Groups = 1)
    {
        public Conv2dDesc Desc
        {
            get
            {
                int oh = Conv2dDesc.OutSize(H, K, Stride, Pad, Pad), ow = Conv2dDesc.OutSize(W, K, Stride, Pad, Pad);
                return new Conv2dDesc(N, Cin, H, W, Cout, K, K, Stride, Stride, Pad, Pad, oh, ow, Groups);
            }
        }

        public override string ToString() => Name;
    }

    private static readonly ConvCase[] Convs =
    {
        new("3x3_same", 2, 5, 9, 11, 7, 3, 1, 1),
        new("4x4_stride2", 2, 6, 12, 10, 4, 4, 2, 1),
        new("pointwise", 2, 8, 5, 7, 6, 1, 1, 0),
        new("grouped", 1, 6, 8, 8, 4, 3, 1, 1, Groups: 2),
        new("depthwise_blur", 2, 4, 10, 10, 4, 4, 2, 1, Groups: 4),
        new("one_output_5x5", 2, 6, 9, 10, 1, 5, 1, 2),
    };

    private static IEnumerable<TestCaseData> ConvCases() =>
        from target in Targets()
        from dtype in Halves
        from conv in Convs
        select new TestCaseData(target.Device, target.Isa, dtype, conv).SetName($"Conv16_{target.Device}_{target.Isa ?? "-"}_{dtype}_{conv}");

    [TestCaseSource(nameof(ConvCases))]
    public void ConvReads16BitOperands(string deviceName, string? isa, DType dtype, ConvCase conv)
    {
        using var _ = isa == null ? null : TestIsas.Use(isa);
        CheckConv(TestDevices.Get(deviceName), dtype, conv);
    }

    [Test]
    public void ConvInBandsReads16BitOperands()
    {
        int saved = CpuBackend.BandColumns;
        CpuBackend.BandColumns = 16;   // every map of these shapes runs in bands of GEMM columns
        try
        {
            TestIsas.Each(() =>
            {
                foreach (var dtype in Halves)
                {
                    CheckConv(CpuBackend.Instance, dtype, Convs[0]);
                    CheckConv(CpuBackend.Instance, dtype, Convs[1]);
                }
            });
        }
        finally { CpuBackend.BandColumns = saved; }
    }

    /// <summary>Forward (with bias), input gradient and weight gradient (with bias gradient) with x, w and dy stored in
    /// <paramref name="dtype"/>, against the float32 kernels on the same values.</summary>
    private static void CheckConv(IBackend device, DType dtype, ConvCase conv)
    {
        var d = conv.Desc;
        var rng = new Random(conv.Name.Length * 17 + (int)dtype);
        float[] x = Values(rng, d.N * d.Cin * d.H * d.W, dtype), w = Values(rng, d.Cout * d.CinPerGroup * d.KH * d.KW, dtype);
        float[] dy = Values(rng, d.N * d.Cout * d.OH * d.OW, dtype), bias = Values(rng, d.Cout, DType.Float32);
        var expected = RunConv(device, d, x, w, dy, bias, DType.Float32);
        var actual = RunConv(device, d, x, w, dy, bias, dtype);
        string[] names = { "output", "input gradient", "weight gradient", "bias gradient" };
        for (int i = 0; i < names.Length; i++)
            Compare.AssertClose(actual[i], expected[i], Tolerance, $"{conv} {dtype} {names[i]}");
    }

    private static float[][] RunConv(IBackend device, Conv2dDesc d, float[] x, float[] w, float[] dy, float[] bias, DType dtype)
    {
        using var sx = Stored(device, x, dtype);
        using var sw = Stored(device, w, dtype);
        using var sdy = Stored(device, dy, dtype);
        using var sb = Stored(device, bias, DType.Float32);
        using var y = device.Allocate(dy.Length);
        using var dx = device.Allocate(x.Length);
        using var dw = device.Allocate(w.Length);
        using var db = device.Allocate(bias.Length);
        device.Conv2dForward(d, new Buf(sx, 0), new Buf(sw, 0), new Buf(sb, 0), new Buf(y, 0));
        device.Conv2dBackwardInput(d, new Buf(sdy, 0), new Buf(sw, 0), new Buf(dx, 0));
        device.Conv2dBackwardWeight(d, new Buf(sx, 0), new Buf(sdy, 0), new Buf(dw, 0), new Buf(db, 0));
        return new[] { Download(device, y, dy.Length), Download(device, dx, x.Length), Download(device, dw, w.Length), Download(device, db, bias.Length) };
    }

    /// <summary>Random values in [−1, 1) that <paramref name="dtype"/> represents exactly.</summary>
    private static float[] Values(Random rng, int n, DType dtype) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).Select(v => dtype.Is16Bit() ? HalfBits.Round(v, dtype) : v).ToArray();

    private static Storage Stored(IBackend device, float[] values, DType dtype)
    {
        using var wide = device.Allocate(values.Length);
        device.Upload(values, new Buf(wide, 0));
        if (dtype == DType.Float32)
        {
            var copy = device.Allocate(values.Length);
            device.Copy(new Buf(wide, 0), new Buf(copy, 0), values.Length);
            return copy;
        }
        var narrow = device.Allocate(values.Length, dtype);
        device.Convert(new Buf(wide, 0), new Buf(narrow, 0), values.Length);
        return narrow;
    }

    private static float[] Download(IBackend device, Storage storage, int n)
    {
        var values = new float[n];
        device.Download(new Buf(storage, 0), values);
        return values;
    }
}
