using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>Train-mode BatchNorm: batch statistics with finite-difference gradients, and the running-statistics
/// update by hand. (Eval mode: <see cref="PoolTests"/>.)</summary>
public class BatchNormTests
{
    [TestCase(2, 3, 4, 5)]
    [TestCase(3, 2, 1, 1)]   // one value per sample: the statistics run over the batch only
    public void TrainModeGradientsMatchFiniteDifferences(int n, int c, int h, int w)
    {
        var rng = new Random(4);
        const float eps = 1e-5f;
        GradCheck.Check(new[]
        {
            (GradCheck.RandomValues(rng, n * c * h * w, 2.0), new[] { n, c, h, w }),
            (GradCheck.RandomValues(rng, c).Select(v => 1 + 0.5 * v).ToArray(), new[] { c }),
            (GradCheck.RandomValues(rng, c), new[] { c }),
        }, t => F.BatchNorm(t[0], null, null, t[1], t[2], training: true, eps: eps), x =>
        {
            int plane = h * w, count = n * plane;
            var y = new double[x[0].Length];
            for (int ch = 0; ch < c; ch++)
            {
                IEnumerable<int> Indices() => Enumerable.Range(0, n).SelectMany(b => Enumerable.Range((b * c + ch) * plane, plane));
                double mean = Indices().Sum(i => x[0][i]) / count;
                double variance = Indices().Sum(i => (x[0][i] - mean) * (x[0][i] - mean)) / count;
                foreach (int i in Indices()) y[i] = (x[0][i] - mean) / Math.Sqrt(variance + eps) * x[1][ch] + x[2][ch];
            }
            return y;
        }, forwardTol: 2e-5, gradTol: 2e-3);
    }

    [Test]
    public void TrainModeUpdatesTheRunningStatisticsWithTheUnbiasedVariance()
    {
        // Channel 0 holds 1, 2, 3, 6 (mean 3, biased variance 3.5, unbiased 14/3); channel 1 is constant 5.
        var x = Tensor.FromArray(new float[] { 1, 2, 5, 5, 3, 6, 5, 5 }, 2, 2, 1, 2);
        var bn = new BatchNorm2d(2);
        var y = bn.Forward(x).ToArray();
        float s = 1f / MathF.Sqrt(3.5f + 1e-5f);
        Assert.That(y, Is.EqualTo(new[] { -2 * s, -s, 0, 0, 0, 3 * s, 0, 0 }).Within(1e-5));
        Assert.That(bn.RunningMean.ToArray(), Is.EqualTo(new[] { 0.3f, 0.5f }).Within(1e-6));
        Assert.That(bn.RunningVar.ToArray(), Is.EqualTo(new[] { 0.9f + 0.1f * 14 / 3f, 0.9f }).Within(1e-6));
        Assert.That(bn.NumBatchesTracked.ToIntArray(), Is.EqualTo(new[] { 1 }));

        bn.Forward(x);
        Assert.That(bn.RunningMean.ToArray(), Is.EqualTo(new[] { 0.57f, 0.95f }).Within(1e-6));
        Assert.That(bn.RunningVar.ToArray(), Is.EqualTo(new[] { 0.9f * (0.9f + 0.1f * 14 / 3f) + 0.1f * 14 / 3f, 0.81f }).Within(1e-6));
        Assert.That(bn.NumBatchesTracked.ToIntArray(), Is.EqualTo(new[] { 2 }));

        // Eval mode normalises with the running statistics and leaves them alone.
        bn.Eval();
        var evaluated = bn.Forward(x).ToArray();
        Assert.That(evaluated[0], Is.EqualTo((1 - 0.57f) / MathF.Sqrt(bn.RunningVar.ToArray()[0] + 1e-5f)).Within(1e-5));
        Assert.That(bn.NumBatchesTracked.ToIntArray(), Is.EqualTo(new[] { 2 }));
        Assert.That(bn.RunningMean.ToArray(), Is.EqualTo(new[] { 0.57f, 0.95f }).Within(1e-6));
    }

    [Test]
    public void TrainModeNeedsMoreThanOneValuePerChannel()
    {
        var bn = new BatchNorm2d(3);
        var e = Assert.Throws<ArgumentException>(() => bn.Forward(Tensor.Zeros(1, 3, 1, 1)));
        Assert.That(e!.Message, Does.Contain("more than one value per channel"));
        Assert.That(bn.NumBatchesTracked.ToIntArray(), Is.EqualTo(new[] { 0 }));
    }
}
