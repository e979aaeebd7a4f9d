using MaskBit.Autograd;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Tokenizer;

/// <summary>The streamed LFQ entropy kernel against the reference formula evaluated by brute force in float64
/// (softmax over all 2^K codes, clamp_log at 1e-5): values and gradients, up to the 18-bit codebooks.</summary>
[NonParallelizable]
public class LfqEntropyTests
{
    /// <summary>The reference's entropy_loss_fn on the LFQ affinity 2·z·c over every code c ∈ {−1, 1}^K, in
    /// float64: the per-sample entropy (mean over positions), the entropy of the mean distribution, the gradient
    /// of upstream[0]·perSample + upstream[1]·average with respect to z (B, K, HW), and the share of
    /// probabilities (per-sample and mean) below the clamp.</summary>
    private sealed record Reference(double PerSample, double Average, double[] Grad, double ClampedShare)
    {
        private const double Eps = 9.99999974737875e-06; // float32(1e-5), as torch.clamp compares in float32

        private static double ClampLog(double p) => Math.Log(Math.Max(p, Eps));

        /// <summary>d(p·clamp_log p)/dp: the clamp passes no gradient below eps.</summary>
        private static double EntropyTermGrad(double p) => p >= Eps ? Math.Log(p) + 1 : Math.Log(Eps);

        public static Reference Of(double[] z, int batch, int bits, int hw, double temperature, double[]? upstream = null)
        {
            int n = batch * hw, codes = 1 << bits;
            double Z(int pos, int k) => z[(pos / hw * bits + k) * hw + pos % hw];
            double Sign(int code, int k) => (code >> k & 1) != 0 ? 1 : -1;

            var p = new double[n][];
            var avg = new double[codes];
            double perSample = 0;
            long clamped = 0;
            for (int pos = 0; pos < n; pos++)
            {
                var logits = p[pos] = new double[codes];
                double max = double.NegativeInfinity;
                for (int c = 0; c < codes; c++)
                {
                    double a = 0;
                    for (int k = 0; k < bits; k++) a += 2 * Z(pos, k) * Sign(c, k);
                    logits[c] = a / temperature;
                    max = Math.Max(max, logits[c]);
                }
                double sum = 0;
                for (int c = 0; c < codes; c++) sum += Math.Exp(logits[c] - max);
                for (int c = 0; c < codes; c++)
                {
                    double pc = logits[c] = Math.Exp(logits[c] - max) / sum;
                    perSample -= pc * ClampLog(pc);
                    avg[c] += pc / n;
                    if (pc < Eps) clamped++;
                }
            }
            double average = 0;
            foreach (var pc in avg)
            {
                average -= pc * ClampLog(pc);
                if (pc < Eps) clamped++;
            }

            // Backward: w_c = ∂L/∂p_c per position, through the softmax to the logits, then dlogit_c/dz_k = 2·s_ck/T.
            var grad = new double[z.Length];
            if (upstream != null)
            {
                var w = new double[codes];
                for (int pos = 0; pos < n; pos++)
                {
                    double mean = 0;
                    for (int c = 0; c < codes; c++)
                    {
                        w[c] = -(upstream[0] * EntropyTermGrad(p[pos][c]) + upstream[1] * EntropyTermGrad(avg[c])) / n;
                        mean += p[pos][c] * w[c];
                    }
                    for (int c = 0; c < codes; c++)
                    {
                        double dLogit = p[pos][c] * (w[c] - mean) * 2 / temperature;
                        for (int k = 0; k < bits; k++) grad[(pos / hw * bits + k) * hw + pos % hw] += dLogit * Sign(c, k);
                    }
                }
            }
            return new Reference(perSample / n, average, grad, clamped / (double)((n + 1L) * codes));
        }
    }

    [TestCase(2, 5, 3, 0.5)]
    [TestCase(1, 7, 4, 1.0)]
    [TestCase(2, 1, 2, 0.3)]
    [TestCase(1, 4, 1, 0.01)]
    public void MatchesDenseReferenceAndFiniteDifferences(int batch, int bits, int hw, double temperature)
    {
        var rng = new Random(bits * 31 + hw);
        var z = GradCheck.RandomValues(rng, batch * bits * hw, temperature < 0.1 ? 0.02 : 0.5);
        GradCheck.Check(new[] { (z, new[] { batch, bits, hw, 1 }) },
            t => F.LfqEntropy(t[0], (float)temperature),
            x => Values(Reference.Of(x[0], batch, bits, hw, temperature)),
            forwardTol: 2e-5, gradTol: 2e-3, h: temperature < 0.1 ? 1e-5 : 1e-4);
    }

    [Test]
    public void ReferenceGradientMatchesFiniteDifferences()
    {
        // The analytic float64 gradient stands in for finite differences at 10–18 bits, where those are too slow;
        // here it is checked against them, at a scale where the clamp bites.
        const int batch = 1, bits = 6, hw = 3;
        const double temperature = 0.01, h = 1e-7;
        double[] upstream = [0.7, -1.3];
        var z = Latents(batch * bits * hw, 0.01, seed: 5);
        var reference = Reference.Of(z, batch, bits, hw, temperature, upstream);
        Assert.That(reference.ClampedShare, Is.GreaterThan(0.1), "the case should exercise the clamp");
        var numeric = new double[z.Length];
        for (int i = 0; i < z.Length; i++)
        {
            double keep = z[i];
            z[i] = keep + h; var plus = Reference.Of(z, batch, bits, hw, temperature);
            z[i] = keep - h; var minus = Reference.Of(z, batch, bits, hw, temperature);
            z[i] = keep;
            numeric[i] = (upstream[0] * (plus.PerSample - minus.PerSample) + upstream[1] * (plus.Average - minus.Average)) / (2 * h);
        }
        Assert.That(Compare.ScaledError(reference.Grad, numeric), Is.LessThanOrEqualTo(1e-5));
    }

    /// <summary>K = 10 … 18 at the reference's temperature 0.01 on normal latents (2, K, 4, 4) of standard deviation
    /// 0.003 … 1, one latent exactly 0 (small latents spread the distribution over many codes, most of them below the
    /// clamp; large ones put nearly all mass on one code, where the two terms' gradients cancel to ~1e-4 of their
    /// size), on every device.</summary>
    private static IEnumerable<TestCaseData> LargeCodebookCases()
    {
        foreach (var device in TestDevices.Names)
            foreach (int bits in new[] { 10, 11, 12, 13, 14, 15, 16, 17, 18 })
                foreach (double scale in bits % 2 == 0 ? new[] { 0.003, 0.05, 1.0 } : new[] { 0.01, 0.2 })
                    yield return new TestCaseData(device, bits, scale).SetName($"LargeCodebook({device},K={bits},scale={scale})");
    }

    /// <summary>The float64 brute force of a case, shared by the devices.</summary>
    private static readonly Dictionary<(int Bits, double Scale), (double[] Z, Reference Reference)> BruteForce = new();

    /// <summary>The entropy loss's upstream gradient: per_sample_entropy − avg_entropy (LookupFreeQuantizer).</summary>
    private static readonly double[] EntropyLossUpstream = [1.0, -1.0];

    [TestCaseSource(nameof(LargeCodebookCases))]
    public void LargeCodebookMatchesBruteForce(string device, int bits, double scale)
    {
        const int batch = 2, hw = 16;
        const double temperature = 0.01;
        (double[] z, Reference reference) BruteForceCase()
        {
            var z = Latents(batch * bits * hw, scale, seed: bits * 100 + (int)(1 / scale));
            z[5] = 0;
            return (z, Reference.Of(z, batch, bits, hw, temperature, EntropyLossUpstream));
        }
        (double[] z, Reference reference) cached;
        lock (BruteForce)
            if (!BruteForce.TryGetValue((bits, scale), out cached)) BruteForce[(bits, scale)] = cached = BruteForceCase();
        var (z, reference) = cached;
        TestContext.Out.WriteLine($"per-sample {reference.PerSample:G6}, average {reference.Average:G6}, clamped {reference.ClampedShare:P1}");

        var zt = Tensor.FromArray(z.Select(v => (float)v).ToArray(), [batch, bits, hw, 1], TestDevices.Get(device)).RequiresGrad_();
        var terms = F.LfqEntropy(zt, (float)temperature);
        terms.Mul(Tensor.FromArray(EntropyLossUpstream.Select(v => (float)v).ToArray(), [2], zt.Device)).Sum().Backward();
        var values = terms.ToArray().Select(v => (double)v).ToArray();
        double valueError = Compare.ScaledError(values, [reference.PerSample, reference.Average]);
        double gradError = Compare.ScaledError(zt.Grad!.ToArray().Select(v => (double)v).ToArray(), reference.Grad);
        TestContext.Out.WriteLine($"values scaled error {valueError:E1}, gradient scaled error {gradError:E1}");
        Assert.That(valueError, Is.LessThanOrEqualTo(1e-4), "per-sample entropy and entropy of the mean distribution (scaled)");
        Assert.That(gradError, Is.LessThanOrEqualTo(1e-4), "gradient (scaled error)");
    }

    [Test]
    public void EighteenBitsAtBatchEightRunsInBoundedMemory()
    {
        // 8 × 18 × 16×16 (the peer's lfq18_b8 rows): 2048 positions × 262144 codes, where one dense N×2^K float
        // matrix would be 2 GiB (PyTorch peaks at 12.9 GB); the streamed kernels need O(2^K) scratch.
        var z = Tensor.FromArray(Latents(8 * 18 * 256, 1.0, seed: 3).Select(v => (float)v).ToArray(), 8, 18, 16, 16).RequiresGrad_();
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var terms = F.LfqEntropy(z, 0.01f);
        terms.Sum().Backward();
        var v = terms.ToArray();
        double allocatedMb = (GC.GetTotalAllocatedBytes(precise: true) - before) / 1e6;
        TestContext.Out.WriteLine($"allocated {allocatedMb:F1} MB");
        Assert.That(allocatedMb, Is.LessThan(64), "managed allocation of a forward and backward");
        Assert.That(v[0], Is.GreaterThanOrEqualTo(0f));
        Assert.That(v[1], Is.GreaterThan(0f).And.LessThanOrEqualTo(18 * MathF.Log(2) + 1e-3f));
        Assert.That(z.Grad!.ToArray().All(float.IsFinite), Is.True);
    }

    private static double[] Values(Reference r) => [r.PerSample, r.Average];

    /// <summary>Normal latents of standard deviation <paramref name="scale"/>, rounded to float32 (what both sides see).</summary>
    private static double[] Latents(int n, double scale, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ =>
        {
            double u = 1 - rng.NextDouble(), v = rng.NextDouble();
            return (double)(float)(scale * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
        }).ToArray();
    }
}
