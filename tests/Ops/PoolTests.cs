using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>General max / average pooling and eval-mode BatchNorm against float64 references, with
/// finite-difference gradients.</summary>
[TestFixture]
public class PoolTests
{
    [TestCase(2, 3, 9, 11, 3, 2, 1)]     // ResNet stem: overlapping windows, padded border
    [TestCase(1, 2, 10, 7, 3, 2, 0)]     // Inception: no padding, odd remainder dropped
    [TestCase(2, 2, 8, 6, 2, 2, 0)]      // VGG
    [TestCase(1, 1, 5, 5, 3, 1, 1)]      // stride 1: every input in several windows
    public void MaxPool(int n, int c, int h, int w, int k, int s, int p)
    {
        // Distinct values at least 0.01 apart, so finite differences never flip a maximum.
        var rng = new Random(5);
        int count = n * c * h * w;
        var values = Enumerable.Range(0, count).OrderBy(_ => rng.Next()).Select(i => (i - count / 2) * 0.01).ToArray();
        Check(new[] { n, c, h, w }, x => F.MaxPool2d(x, k, s, p),
            x => Pool(x, n * c, h, w, k, s, p, (window, _) => window.Max()), values);
    }

    [TestCase(2, 3, 7, 9, 3, 1, 1, false)]   // Inception branch pool
    [TestCase(2, 3, 7, 9, 3, 1, 1, true)]
    [TestCase(1, 2, 11, 8, 3, 2, 1, false)]  // strided, padded
    [TestCase(1, 2, 11, 8, 4, 3, 2, true)]
    [TestCase(2, 1, 6, 5, 2, 2, 0, true)]    // plain 2×2
    public void AvgPool(int n, int c, int h, int w, int k, int s, int p, bool countIncludePad)
    {
        Check(new[] { n, c, h, w }, x => F.AvgPool2d(x, k, s, p, countIncludePad),
            x => Pool(x, n * c, h, w, k, s, p, (window, _) => window.Sum() / (countIncludePad ? k * k : window.Count)));
    }

    [Test]
    public void MaxPoolGradientGoesToTheFirstMaximum()
    {
        var x = Tensor.FromArray(new float[] { 1, 3, 3, 0, 3, 2 }, 1, 1, 2, 3).RequiresGrad_();
        F.MaxPool2d(x, 3, 1, 1).Sum().Backward();
        // Every 3×3 window holds (0,1), the first of the tied 3s in row-major order, so all six outputs pick it.
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(new float[] { 0, 6, 0, 0, 0, 0 }));
    }

    [Test]
    public void GlobalAvgPoolIsTheSpatialMean()
    {
        var x = Tensor.FromArray(Enumerable.Range(0, 2 * 3 * 4 * 5).Select(i => (float)i).ToArray(), 2, 3, 4, 5);
        var y = F.GlobalAvgPool2d(x).ToArray();
        Assert.That(y, Has.Length.EqualTo(6));
        for (int p = 0; p < 6; p++) Assert.That(y[p], Is.EqualTo(p * 20 + 9.5f).Within(1e-4));
    }

    [Test]
    public void BatchNormEvalIsThePerChannelAffineOfTheRunningStatistics()
    {
        int n = 2, c = 3, h = 4, w = 5;
        var rng = new Random(11);
        var stats = new[] { GradCheck.RandomValues(rng, c), GradCheck.RandomValues(rng, c).Select(v => 1.5 + v).ToArray(),
            GradCheck.RandomValues(rng, c).Select(v => 1 + 0.5 * v).ToArray(), GradCheck.RandomValues(rng, c) };
        var bn = new BatchNorm2d(c, eps: 1e-3f);
        bn.RunningMean.CopyFrom_(stats[0].Select(v => (float)v).ToArray());
        bn.RunningVar.CopyFrom_(stats[1].Select(v => (float)v).ToArray());
        bn.Eval();
        Assert.Throws<NotSupportedException>(() => new BatchNorm2d(c).ScaleShift(), "folding needs eval mode");
        GradCheck.Check(new[]
        {
            (GradCheck.RandomValues(rng, n * c * h * w), new[] { n, c, h, w }),
            (stats[2], new[] { c }), (stats[3], new[] { c }),
        }, t =>
        {
            bn.Weight.CopyFrom_(t[1]);
            bn.Bias.CopyFrom_(t[2]);
            return bn.Forward(t[0]);
        }, x =>
        {
            var y = new double[n * c * h * w];
            for (int i = 0; i < y.Length; i++)
            {
                int ch = i / (h * w) % c;
                y[i] = (x[0][i] - (float)stats[0][ch]) / Math.Sqrt((float)stats[1][ch] + (double)1e-3f) * x[1][ch] + x[2][ch];
            }
            return y;
        }, forwardTol: 2e-5, differentiable: new[] { true, false, false });
    }

    /// <summary>Floor-mode pooling of each plane in float64; <paramref name="reduce"/> gets the window's
    /// values inside the input.</summary>
    private static double[] Pool(double[] x, int planes, int h, int w, int k, int s, int p, Func<List<double>, int, double> reduce)
    {
        int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
        var y = new double[planes * oh * ow];
        for (int q = 0; q < planes; q++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    var window = new List<double>();
                    for (int r = i * s - p; r < i * s - p + k; r++)
                        for (int c = j * s - p; c < j * s - p + k; c++)
                            if (r >= 0 && r < h && c >= 0 && c < w) window.Add(x[(q * h + r) * w + c]);
                    y[(q * oh + i) * ow + j] = reduce(window, k);
                }
        return y;
    }

    private static void Check(int[] shape, Func<Tensor, Tensor> op, Func<double[], double[]> reference, double[]? values = null)
    {
        values ??= GradCheck.RandomValues(new Random(9), shape.Aggregate(1, (a, s) => a * s));
        GradCheck.Check(new[] { (values, shape) }, t => op(t[0]), v => reference(v[0]));
    }
}
