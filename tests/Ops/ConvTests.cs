using MaskBit.Autograd;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;
using Conv2dModule = MaskBit.Autograd.Nn.Conv2d;

namespace MaskBit.Tests.Ops;

/// <summary>Conv2d against a naive float64 convolution: finite-difference gradients on small odd shapes, and
/// forward/backward of larger convs, with batches split into passes of a few images (to catch errors at image edges).</summary>
[TestFixture]
public class ConvTests
{
    /// <summary>Shape and settings of one conv: x (N, Cin, H, W), weight (Cout, Cin/G, K, KW); KW = K unless given.</summary>
    public sealed record Case(int N, int Cin, int H, int W, int Cout, int K, int Stride, Padding2d Pad, int Groups, bool Bias, int Kw = 0)
    {
        public int KW => Kw > 0 ? Kw : K;
        public int OH => (H + Pad.Top + Pad.Bottom - K) / Stride + 1;
        public int OW => (W + Pad.Left + Pad.Right - KW) / Stride + 1;
        public int[] XShape => new[] { N, Cin, H, W };
        public int[] WShape => new[] { Cout, Cin / Groups, K, KW };
        public override string ToString() =>
            $"x{N}x{Cin}x{H}x{W}_to{Cout}_k{K}x{KW}_s{Stride}_pad{Pad.Left}{Pad.Right}{Pad.Top}{Pad.Bottom}_g{Groups}{(Bias ? "_bias" : "")}";
    }

    private static Case C(int n, int cin, int h, int w, int cout, int k, int s, (int l, int r, int t, int b) p, int g, bool bias, int Kw = 0) =>
        new(n, cin, h, w, cout, k, s, new Padding2d(p.l, p.r, p.t, p.b), g, bias, Kw);

    public static IEnumerable<TestCaseData> SmallCases() => new[]
    {
        C(2, 3, 7, 9, 4, 3, 1, (1, 1, 1, 1), 1, true),
        C(2, 3, 7, 9, 4, 3, 2, (0, 1, 1, 0), 1, false),   // asymmetric
        C(2, 3, 8, 7, 5, 5, 3, (2, 1, 0, 2), 1, true),
        C(2, 4, 6, 5, 2, 2, 1, (0, 1, 0, 1), 2, true),    // even kernel, TF-SAME-like extra bottom/right
        C(2, 4, 7, 7, 6, 3, 2, (1, 1, 1, 1), 2, false),   // groups 2
        C(2, 3, 7, 9, 3, 3, 2, (1, 1, 1, 1), 3, true),    // depthwise
        C(2, 3, 8, 7, 3, 4, 2, (1, 2, 1, 1), 3, false),   // depthwise, blur-like
        C(2, 3, 5, 6, 3, 5, 1, (2, 2, 2, 2), 3, true),    // depthwise stride 1
        C(2, 3, 5, 7, 4, 1, 1, (0, 0, 0, 0), 1, true),    // pointwise GEMM path
        C(2, 4, 5, 7, 6, 1, 1, (0, 0, 0, 0), 2, false),   // pointwise, grouped
        C(2, 3, 7, 9, 4, 1, 2, (0, 0, 0, 0), 1, true),    // 1×1 strided: general path
        C(2, 3, 5, 6, 4, 1, 1, (1, 0, 0, 1), 1, false),   // 1×1 padded: general path
        C(2, 3, 6, 8, 4, 3, 2, (0, 1, 0, 1), 1, true),    // SAME stride 2 on an even map (the tokenizer's downsampling)
        C(2, 4, 5, 9, 3, 1, 1, (3, 3, 0, 0), 1, true, Kw: 7),   // 1×7 (Inception)
        C(2, 4, 9, 5, 3, 7, 1, (0, 0, 3, 3), 1, false, Kw: 1),  // 7×1 (Inception)
        C(2, 3, 11, 10, 5, 7, 2, (3, 3, 3, 3), 1, false), // 7×7 stride 2 (ResNet stem)
        C(2, 3, 9, 9, 4, 2, 3, (0, 0, 0, 0), 1, true),    // stride above the kernel: inputs no tap reads
        C(2, 5, 7, 9, 1, 5, 1, (2, 2, 2, 2), 1, true),    // one output channel, 5×5 SAME (the discriminator's logits): few-outputs kernels
        C(2, 4, 7, 6, 3, 3, 2, (1, 1, 1, 1), 1, false),   // three outputs, stride 2: few-outputs kernels
    }.Select(c => new TestCaseData(c).SetName($"ConvGradCheck({c})"));

    [TestCaseSource(nameof(SmallCases))]
    public void GradCheckAgainstFloat64(Case c)
    {
        var rng = new Random(11);
        var inputs = new List<(double[], int[])>
        {
            (GradCheck.RandomValues(rng, Numel(c.XShape)), c.XShape),
            (GradCheck.RandomValues(rng, Numel(c.WShape), 0.5), c.WShape),
        };
        if (c.Bias) inputs.Add((GradCheck.RandomValues(rng, c.Cout), new[] { c.Cout }));
        GradCheck.Check(inputs,
            t => F.Conv2d(t[0], t[1], c.Bias ? t[2] : null, c.Stride, c.Pad, c.Groups),
            v => ReferenceForward(c, v[0], v[1], c.Bias ? v[2] : null));
    }

    public static IEnumerable<TestCaseData> LargeCases() =>
        from c in new[]
        {
            C(3, 16, 20, 20, 24, 3, 1, (1, 1, 1, 1), 1, true),
            C(3, 16, 21, 19, 24, 3, 2, (0, 1, 0, 1), 1, false),   // SAME stride 2 of the tokenizer's downsampling
            C(2, 16, 20, 20, 24, 5, 1, (2, 2, 2, 2), 2, true),
            C(3, 16, 13, 11, 8, 4, 2, (1, 2, 1, 2), 1, true),
            C(2, 32, 9, 10, 13, 3, 1, (1, 1, 1, 1), 1, false),    // K = 288 > one GEMM K block; 13 rows: partial tiles
            C(2, 64, 9, 10, 32, 3, 1, (1, 1, 1, 1), 1, true),     // K = 576: windows read in place over two K blocks
            C(2, 8, 7, 6, 130, 3, 1, (1, 1, 1, 1), 1, false),     // 130 rows: windows packed (Sgemm.InPlaceBFloats)
            C(2, 32, 8, 7, 64, 3, 1, (1, 1, 1, 1), 2, true),      // groups of 32 outputs: weight gradient as dWᵀ per group
            C(2, 13, 11, 9, 7, 1, 2, (0, 0, 0, 0), 1, true),      // 1×1 stride 2 (ResNet downsample)
            C(2, 6, 12, 11, 10, 7, 2, (3, 3, 3, 3), 1, false),    // 7×7 stride 2 (ResNet stem)
            C(3, 16, 16, 15, 1, 5, 1, (2, 2, 2, 2), 1, true),     // one output (discriminator logits): few-outputs tiles, full and partial
            C(2, 23, 13, 14, 3, 3, 1, (1, 1, 1, 1), 1, true),     // to RGB: few-outputs kernels, K = 207 not a multiple of 4 taps
            C(2, 8, 9, 10, 4, 3, 1, (1, 1, 1, 1), 2, false),      // groups of 2 outputs: few-outputs kernels per group
        }
        from onePerPass in new[] { false, true }
        select new TestCaseData(c, onePerPass).SetName($"ConvLarge({c}, {(onePerPass ? "one image per pass" : "one pass")})");

    /// <summary>Our forward, input, weight and bias gradients of sum(y·R) against float64: the whole batch in one
    /// pass (the default budget), or with the scratch budget shrunk to one image per pass; on every ISA the CPU
    /// supports.</summary>
    [TestCaseSource(nameof(LargeCases))]
    public void MatchesReference(Case c, bool onePerPass) => TestIsas.Each(() => MatchesReferenceOnce(c, onePerPass));

    /// <summary>The forward in bands of about two output rows of columns (what large maps run; these small ones
    /// otherwise take one GEMM over all columns): bands start and end mid-row and mid-image, groups and bias included.</summary>
    [TestCaseSource(nameof(LargeCases))]
    public void MatchesReferenceInBands(Case c, bool onePerPass)
    {
        int saved = CpuBackend.BandColumns;
        CpuBackend.BandColumns = 2 * c.W;
        try { TestIsas.Each(() => MatchesReferenceOnce(c, onePerPass)); }
        finally { CpuBackend.BandColumns = saved; }
    }

    private static void MatchesReferenceOnce(Case c, bool onePerPass)
    {
        long saved = CpuBackend.PassFloats;
        if (onePerPass) CpuBackend.PassFloats = 1;   // below one image's need: passes of one image
        try
        {
            var rng = new Random(5);
            double[] x = GradCheck.RandomValues(rng, Numel(c.XShape)), w = GradCheck.RandomValues(rng, Numel(c.WShape), 0.2);
            double[] b = GradCheck.RandomValues(rng, c.Cout), r = GradCheck.RandomValues(rng, c.N * c.Cout * c.OH * c.OW);
            var xt = Tensor.FromArray(ToFloat(x), c.XShape).RequiresGrad_();
            var wt = Tensor.FromArray(ToFloat(w), c.WShape).RequiresGrad_();
            var bt = c.Bias ? Tensor.FromArray(ToFloat(b), new[] { c.Cout }).RequiresGrad_() : null;
            var y = F.Conv2d(xt, wt, bt, c.Stride, c.Pad, c.Groups);
            y.Mul(Tensor.FromArray(ToFloat(r), y.Shape)).Sum().Backward();

            var (yRef, dx, dw, db) = ReferenceWithGradients(c, x, w, c.Bias ? b : null, r);
            Expect(y.ToArray(), yRef, "y");
            Expect(xt.Grad!.ToArray(), dx, "grad_x");
            Expect(wt.Grad!.ToArray(), dw, "grad_w");
            if (bt != null) Expect(bt.Grad!.ToArray(), db, "grad_b");
        }
        finally { CpuBackend.PassFloats = saved; }
    }

    [TestCase(7, 4, 1, 1, 2)]
    [TestCase(7, 4, 2, 1, 2)]
    [TestCase(8, 4, 2, 1, 1)]
    [TestCase(8, 3, 1, 1, 1)]
    [TestCase(9, 1, 2, 0, 0)]
    [TestCase(5, 5, 3, 1, 2)]
    public void SamePaddingFollowsTheReference(int size, int kernel, int stride, int before, int after)
    {
        Assert.That(F.SamePadding(size, kernel, stride), Is.EqualTo((before, after)));
        var y = F.Conv2dSame(Tensor.Zeros(1, 1, size, size), Tensor.Zeros(1, 1, kernel, kernel), null, stride);
        int outSize = (size + stride - 1) / stride;
        Assert.That(y.Shape, Is.EqualTo(new[] { 1, 1, outSize, outSize }));
    }

    [Test]
    public void BlurKernelIsTheNormalisedOuterProduct()
    {
        Assert.That(F.BinomialTaps(4), Is.EqualTo(new[] { 1f, 3f, 3f, 1f }));
        Assert.That(F.BinomialTaps(5), Is.EqualTo(new[] { 1f, 4f, 6f, 4f, 1f }));
        var k = F.BlurKernel(new[] { 1f, 2f, 1f }).ToArray();
        Assert.That(k, Is.EqualTo(new[] { 1, 2, 1, 2, 4, 2, 1, 2, 1 }.Select(v => v / 16f).ToArray()).Within(1e-7));
    }

    [Test]
    public void ModuleHasTorchNamesInitAndPadding()
    {
        var conv = Conv2dModule.SamePadded(6, 8, 3, stride: 2, rng: new Random(1));
        Assert.That(conv.StateDict().Select(p => p.Name), Is.EqualTo(new[] { "weight", "bias" }));
        Assert.That(conv.Weight.Shape, Is.EqualTo(new[] { 8, 6, 3, 3 }));
        float bound = 1f / MathF.Sqrt(6 * 9);
        Assert.That(conv.Weight.ToArray().Concat(conv.Bias!.ToArray()).Max(MathF.Abs), Is.LessThanOrEqualTo(bound));
        Assert.That(conv.Forward(Tensor.Zeros(1, 6, 7, 9)).Shape, Is.EqualTo(new[] { 1, 8, 4, 5 }));

        var plain = new Conv2dModule(4, 4, 3, padding: 1, bias: false, groups: 2);
        Assert.That(plain.StateDict().Select(p => p.Name), Is.EqualTo(new[] { "weight" }));
        Assert.That(plain.Forward(Tensor.Zeros(2, 4, 5, 6)).Shape, Is.EqualTo(new[] { 2, 4, 5, 6 }));
    }

    // ---- float64 reference ---------------------------------------------------------------------------------

    private static void ForEachTap(Case c, Action<int, int, int> visit)
    {
        // visit(yIndex, xIndex, wIndex) for every (output, tap) pair that reads a real input element.
        int cinG = c.Cin / c.Groups, coutG = c.Cout / c.Groups;
        for (int n = 0; n < c.N; n++)
            for (int co = 0; co < c.Cout; co++)
                for (int oh = 0; oh < c.OH; oh++)
                    for (int ow = 0; ow < c.OW; ow++)
                        for (int ci = 0; ci < cinG; ci++)
                            for (int kh = 0; kh < c.K; kh++)
                                for (int kw = 0; kw < c.KW; kw++)
                                {
                                    int ih = oh * c.Stride + kh - c.Pad.Top, iw = ow * c.Stride + kw - c.Pad.Left;
                                    if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                                    int cIn = co / coutG * cinG + ci;
                                    visit(((n * c.Cout + co) * c.OH + oh) * c.OW + ow, ((n * c.Cin + cIn) * c.H + ih) * c.W + iw,
                                        ((co * cinG + ci) * c.K + kh) * c.KW + kw);
                                }
    }

    internal static double[] ReferenceForward(Case c, double[] x, double[] w, double[]? b)
    {
        var y = new double[c.N * c.Cout * c.OH * c.OW];
        int plane = c.OH * c.OW;
        if (b != null) for (int i = 0; i < y.Length; i++) y[i] = b[i / plane % c.Cout];
        ForEachTap(c, (yi, xi, wi) => y[yi] += x[xi] * w[wi]);
        return y;
    }

    private static (double[] Y, double[] Dx, double[] Dw, double[] Db) ReferenceWithGradients(Case c, double[] x, double[] w, double[]? b, double[] r)
    {
        var y = ReferenceForward(c, x, w, b);
        double[] dx = new double[x.Length], dw = new double[w.Length], db = new double[c.Cout];
        ForEachTap(c, (yi, xi, wi) => { dx[xi] += r[yi] * w[wi]; dw[wi] += r[yi] * x[xi]; });
        int plane = c.OH * c.OW;
        for (int i = 0; i < r.Length; i++) db[i / plane % c.Cout] += r[i];
        return (y, dx, dw, db);
    }

    private static void Expect(float[] actual, double[] expected, string what)
    {
        double err = Compare.ScaledError(actual.Select(v => (double)v).ToArray(), expected);
        Assert.That(err, Is.LessThanOrEqualTo(1e-5), $"{what}: scaled error {err:E2}");
    }

    internal static int Numel(int[] shape) => shape.Aggregate(1, (a, s) => a * s);
    private static float[] ToFloat(double[] v) => v.Select(e => (float)e).ToArray();
}
