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
