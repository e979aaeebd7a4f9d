using MaskBit.Autograd;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Tokenizer;

/// <summary>The streamed LFQ entropy kernel against the reference formula evaluated densely in float64
/// (softmax over all 2^K codes, clamp_log at 1e-5), values and finite-difference gradients.</summary>
public class LfqEntropyTests
{
    private static double[] Dense(double[] z, int batch, int bits, int hw, double temperature)
    {
        int n = batch * hw, codes = 1 << bits;
        const double eps = 9.99999974737875e-06; // float32(1e-5)
        double ClampLog(double p) => Math.Log(Math.Max(p, eps));
        var avg = new double[codes];
        double perSample = 0;
        var logits = new double[codes];
        for (int pos = 0; pos < n; pos++)
        {
            int b = pos / hw, s = pos % hw;
            double max = double.NegativeInfinity;
            for (int c = 0; c < codes; c++)
            {
                double a = 0;
                for (int k = 0; k < bits; k++) a += 2 * z[(b * bits + k) * hw + s] * ((c >> k & 1) != 0 ? 1 : -1);
                logits[c] = a / temperature;
                max = Math.Max(max, logits[c]);
            }
            double sum = 0;
            for (int c = 0; c < codes; c++) sum += Math.Exp(logits[c] - max);
            for (int c = 0; c < codes; c++)
            {
                double p = Math.Exp(logits[c] - max) / sum;
                perSample -= p * ClampLog(p);
                avg[c] += p / n;
            }
        }
        double avgEntropy = 0;
        foreach (var p in avg) avgEntropy -= p * ClampLog(p);
        return new[] { perSample / n, avgEntropy };
    }

    [TestCase(2, 5, 3, 0.5)]
    [TestCase(1, 7, 4, 1.0)]
    [TestCase(2, 1, 2, 0.3)]
    [TestCase(1, 4, 1, 0.01)]
    public void MatchesDenseReference(int batch, int bits, int hw, double temperature)
    {
        var rng = new Random(bits * 31 + hw);
        var z = GradCheck.RandomValues(rng, batch * bits * hw, temperature < 0.1 ? 0.02 : 0.5);
        GradCheck.Check(new[] { (z, new[] { batch, bits, hw, 1 }) },
            t => F.LfqEntropy(t[0], (float)temperature),
            x => Dense(x[0], batch, bits, hw, temperature),
            forwardTol: 2e-5, gradTol: 2e-3, h: temperature < 0.1 ? 1e-5 : 1e-4);
    }

    [Test]
    public void EighteenBitsRunsWithoutTheDenseMatrix()
    {
        // 2 × 18 × 4×4 = 32 positions × 262144 codes: the dense matrix would be 32 MB; the kernel keeps O(2^K).
        var z = Tensor.FromArray(GradCheck.RandomValues(new Random(3), 2 * 18 * 16, 1.0).Select(v => (float)v).ToArray(), 2, 18, 4, 4).RequiresGrad_();
        var terms = F.LfqEntropy(z, 0.01f);
        terms.Sum().Backward();
        var v = terms.ToArray();
        Assert.That(v[0], Is.GreaterThanOrEqualTo(0f));
        Assert.That(v[1], Is.GreaterThan(0f).And.LessThanOrEqualTo(18 * MathF.Log(2) + 1e-3f));
        Assert.That(z.Grad!.ToArray().All(float.IsFinite), Is.True);
    }
}
