using MaskBit.Autograd;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>Pooling and resizing against float64 references, with finite-difference gradients.</summary>
[TestFixture]
public class ResampleTests
{
    [TestCase(2, 3, 7, 9)]
    [TestCase(1, 2, 6, 4)]
    [TestCase(2, 1, 5, 5)]
    public void AvgPool2x2(int n, int c, int h, int w)
    {
        int oh = h / 2, ow = w / 2;
        Check(new[] { n, c, h, w }, F.AvgPool2d2x2, x =>
        {
            var y = new double[n * c * oh * ow];
            for (int p = 0; p < n * c; p++)
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++)
                    {
                        int t = (p * h + 2 * i) * w + 2 * j;
                        y[(p * oh + i) * ow + j] = 0.25 * (x[t] + x[t + 1] + x[t + w] + x[t + w + 1]);
                    }
            return y;
        });
    }

    [TestCase(2, 3, 9, 12, 4, 5)]     // non-divisible bins overlap
    [TestCase(1, 2, 3, 5, 7, 8)]      // upsampling: every input feeds several bins
    [TestCase(2, 2, 8, 8, 4, 4)]
    [TestCase(1, 1, 5, 7, 5, 7)]      // identity
    public void AdaptiveMaxPool(int n, int c, int h, int w, int oh, int ow)
    {
        // Distinct values at least 0.01 apart, so finite differences never flip a maximum.
        var rng = new Random(3);
        int count = n * c * h * w;
        var values = Enumerable.Range(0, count).OrderBy(_ => rng.Next()).Select(i => (i - count / 2) * 0.01).ToArray();
        Check(new[] { n, c, h, w }, x => F.AdaptiveMaxPool2d(x, oh, ow), x =>
        {
            var y = new double[n * c * oh * ow];
            for (int p = 0; p < n * c; p++)
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++)
                    {
                        int h0 = (int)Math.Floor((double)i * h / oh), h1 = (int)Math.Ceiling((double)(i + 1) * h / oh);
                        int w0 = (int)Math.Floor((double)j * w / ow), w1 = (int)Math.Ceiling((double)(j + 1) * w / ow);
                        double m = double.NegativeInfinity;
                        for (int r = h0; r < h1; r++)
                            for (int q = w0; q < w1; q++) m = Math.Max(m, x[(p * h + r) * w + q]);
                        y[(p * oh + i) * ow + j] = m;
                    }
            return y;
        }, values);
    }

    [Test]
    public void AdaptiveMaxPoolGradientGoesToTheFirstMaximum()
    {
        var x = Tensor.FromArray(new float[] { 1, 3, 3, 0, 3, 2 }, 1, 1, 2, 3).RequiresGrad_();
        F.AdaptiveMaxPool2d(x, 1, 1).Sum().Backward();
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(new float[] { 0, 1, 0, 0, 0, 0 }));
    }

    /// <summary>The CPU window max (adaptive and strided) on every ISA against the plain row-major scan, bit for bit in
    /// values and argmax: ties (the first maximum wins), NaNs (the last one wins), −∞ windows, and rows wide enough for
    /// the 8-output vector blocks and their tails.</summary>
    [Test]
    public void WindowMaxMatchesTheRowMajorScanOnEveryIsa()
    {
        var be = MaskBit.Kernels.Cpu.CpuBackend.Instance;
        const int planes = 3;
        (int H, int W, int OH, int OW, int K, int S, int P)[] cases =
        [
            (13, 21, 7, 19, 0, 0, 0),   // adaptive, overlapping bins of varying width
            (8, 8, 16, 16, 0, 0, 0),    // adaptive upsampling (the discriminator's 8² → 16²)
            (17, 35, 9, 18, 3, 2, 1),   // strided 3×3, padded
            (6, 40, 3, 20, 2, 2, 0),    // strided 2×2
        ];
        foreach (var (h, w, oh, ow, k, s, p) in cases)
        {
            var rng = new Random(h * w);
            // Few distinct values (many ties), some NaN and −∞, one all-−∞ plane.
            var x = Enumerable.Range(0, planes * h * w).Select(i => i >= 2 * h * w ? float.NegativeInfinity : rng.Next(12) switch
            {
                0 => float.NaN,
                1 => float.NegativeInfinity,
                var v => (float)(v % 4),
            }).ToArray();
            (int, int) Bin(int i, int size, int outSize) => k == 0
                ? ((int)((long)i * size / outSize), (int)(((long)(i + 1) * size + outSize - 1) / outSize))
                : (Math.Max(i * s - p, 0), Math.Min(i * s - p + k, size));
            var expected = new float[planes * oh * ow];
            var expectedArg = new int[planes * oh * ow];
            for (int pl = 0; pl < planes; pl++)
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++)
                    {
                        var (r0, r1) = Bin(i, h, oh);
                        var (c0, c1) = Bin(j, w, ow);
                        float max = float.NegativeInfinity;
                        int best = r0 * w + c0;
                        for (int r = r0; r < r1; r++)
                            for (int c = c0; c < c1; c++)
                            {
                                float v = x[(pl * h + r) * w + c];
                                if (v > max || float.IsNaN(v)) { max = v; best = r * w + c; }
                            }
                        expected[(pl * oh + i) * ow + j] = max;
                        expectedArg[(pl * oh + i) * ow + j] = best;
                    }
            TestIsas.Each(() =>
            {
                using var xs = be.Allocate(x.Length);
                using var ys = be.Allocate(expected.Length);
                using var args = be.Allocate(expected.Length, MaskBit.Kernels.DType.Int32);
                be.Upload(x, new MaskBit.Kernels.Buf(xs, 0));
                if (k == 0) be.AdaptiveMaxPoolForward(planes, h, w, oh, ow, new(xs, 0), new(ys, 0), new(args, 0));
                else be.MaxPool2dForward(planes, h, w, k, s, p, oh, ow, new(xs, 0), new(ys, 0), new(args, 0));
                string what = $"{h}×{w} → {oh}×{ow} (k {k}) on {MaskBit.Kernels.Cpu.CpuIsa.Name(MaskBit.Kernels.Cpu.CpuIsa.Current)}";
                Assert.That(MaskBit.Kernels.Cpu.CpuBackend.Arr(new(ys, 0))[..expected.Length].Select(BitConverter.SingleToInt32Bits),
                    Is.EqualTo(expected.Select(BitConverter.SingleToInt32Bits)), what);
                Assert.That(MaskBit.Kernels.Cpu.CpuBackend.IntArr(new(args, 0))[..expected.Length], Is.EqualTo(expectedArg), what);
            });
        }
    }

    [TestCase(2, 3, 5, 6)]
    [TestCase(1, 1, 1, 7)]
    public void UpsampleNearest2x(int n, int c, int h, int w)
    {
        Check(new[] { n, c, h, w }, F.UpsampleNearest2x, x =>
        {
            var y = new double[n * c * 4 * h * w];
            for (int p = 0; p < n * c; p++)
                for (int i = 0; i < 2 * h; i++)
                    for (int j = 0; j < 2 * w; j++) y[(p * 2 * h + i) * 2 * w + j] = x[(p * h + i / 2) * w + j / 2];
            return y;
        });
    }

    [TestCase(2, 2, 13, 11, 5, 4)]    // downsampling: widened filter
    [TestCase(1, 2, 5, 6, 9, 11)]     // upsampling: plain triangle
    [TestCase(2, 1, 7, 20, 11, 6)]    // up in one axis, down in the other
    [TestCase(1, 1, 6, 6, 6, 6)]      // identity
    public void BilinearAntialias(int n, int c, int h, int w, int oh, int ow)
    {
        double[,] a = Weights(h, oh), b = Weights(w, ow);
        Check(new[] { n, c, h, w }, x => F.InterpolateBilinearAntialias(x, oh, ow), x =>
        {
            var y = new double[n * c * oh * ow];
            for (int p = 0; p < n * c; p++)
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++)
                    {
                        double s = 0;
                        for (int r = 0; r < h; r++)
                            for (int q = 0; q < w; q++) s += a[i, r] * b[j, q] * x[(p * h + r) * w + q];
                        y[(p * oh + i) * ow + j] = s;
                    }
            return y;
        });
    }

    /// <summary>The antialiased triangle filter in float64: output i centred at s·(i + ½), support max(s, 1),
    /// argument scaled by 1/s when downsampling, taps normalised to sum 1.</summary>
    private static double[,] Weights(int inSize, int outSize)
    {
        double s = (double)inSize / outSize, support = Math.Max(s, 1), inv = s >= 1 ? 1 / s : 1;
        var m = new double[outSize, inSize];
        for (int i = 0; i < outSize; i++)
        {
            double center = s * (i + 0.5), total = 0;
            int lo = Math.Max((int)(center - support + 0.5), 0), hi = Math.Min((int)(center + support + 0.5), inSize);
            for (int j = lo; j < hi; j++) { m[i, j] = Math.Max(0, 1 - Math.Abs((j - center + 0.5) * inv)); total += m[i, j]; }
            for (int j = lo; j < hi; j++) m[i, j] /= total;
        }
        return m;
    }

    private static void Check(int[] shape, Func<Tensor, Tensor> op, Func<double[], double[]> reference, double[]? values = null)
    {
        values ??= GradCheck.RandomValues(new Random(9), shape.Aggregate(1, (a, s) => a * s));
        GradCheck.Check(new[] { (values, shape) }, t => op(t[0]), v => reference(v[0]));
    }
}
