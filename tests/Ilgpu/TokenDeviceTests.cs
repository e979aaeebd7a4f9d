using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Generator;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>The integer ops that keep a sampler's tokens on the device — bits → indices, token factorization,
/// argmax/argmin along the last axis — and the seeded random draws made on the device, on every test device
/// against host oracles (all results exact).</summary>
public sealed class TokenDeviceTests : DeviceTestBase
{
    private static IEnumerable<TestCaseData> Devices() => OnDevices([[]]);

    [TestCaseSource(nameof(Devices))]
    public void BitsToIndicesReadsSigns(string device)
    {
        const int bits = 6, count = 37;
        var values = RandomValues(count * bits, 3);
        values[5] = 0f;   // zero counts as a clear bit, like −1
        var expected = new int[count];
        for (int i = 0; i < count; i++)
            for (int k = 0; k < bits; k++) if (values[i * bits + k] > 0f) expected[i] |= 1 << k;
        var dev = TestDevices.Get(device);
        var indices = F.BitsToIndices(Tensor.FromArray(values, [count, bits], dev));
        Assert.That(indices.Shape, Is.EqualTo(new[] { count }));
        Assert.That(indices.ToIntArray(), Is.EqualTo(expected));
    }

    [TestCaseSource(nameof(Devices))]
    public void TokenGroupsRoundTrip(string device)
    {
        const int codebook = 1 << 12, splits = 3;
        var tokens = Enumerable.Range(0, 50).Select(i => i * 977 % codebook).Append(codebook - 1).ToArray();
        var dev = TestDevices.Get(device);
        var groups = Factorization.Split(Tensor.FromInts(tokens, [3, 17], dev), codebook, splits);
        Assert.That(groups.Shape, Is.EqualTo(new[] { 3, 17, splits }));
        Assert.That(groups.ToIntArray(), Is.EqualTo(Factorization.Split(tokens, codebook, splits)), "the host's factorization");
        Assert.That(Factorization.Combine(groups, codebook, splits).ToIntArray(), Is.EqualTo(tokens));
    }

    [TestCaseSource(nameof(Devices))]
    public void ArgExtremeTakesTheFirstAndSkipsNaN(string device)
    {
        const int rows = 9, cols = 13;
        var rng = new Random(7);
        var scores = Enumerable.Range(0, rows * cols).Select(_ => (float)rng.Next(5)).ToArray();   // ties
        scores[0] = float.NaN;            // row 0: a NaN first value keeps index 0
        scores[cols + 4] = float.NaN;     // row 1: a later NaN never wins
        int Oracle(int r, bool min)
        {
            int best = 0;
            for (int c = 1; c < cols; c++)
            {
                float x = scores[r * cols + c], b = scores[r * cols + best];
                if (min ? x < b : x > b) best = c;
            }
            return best;
        }
        var dev = TestDevices.Get(device);
        var t = Tensor.FromArray(scores, [rows, cols], dev);
        Assert.That(t.ArgMaxLastAxis().ToIntArray(), Is.EqualTo(Enumerable.Range(0, rows).Select(r => Oracle(r, false))));
        Assert.That(t.ArgMinLastAxis().ToIntArray(), Is.EqualTo(Enumerable.Range(0, rows).Select(r => Oracle(r, true))));
        Assert.That(t.ArgMaxLastAxis().ToIntArray()[0], Is.Zero);
    }

    [TestCaseSource(nameof(Devices))]
    public void SeededDrawsOnTheDeviceAreTheHostDraws(string device)
    {
        const int n = 5000;
        var host = new SeededRandomSource(42);
        float[] uniform = new float[n], gumbel = new float[n];
        host.CategoricalUniform(uniform);
        host.Gumbel(gumbel);

        IRandomSource onDevice = new SeededRandomSource(42);
        var dev = TestDevices.Get(device);
        Assert.Multiple(() =>
        {
            Assert.That(onDevice.CategoricalUniform([50, 100], dev).ToArray(), Is.EqualTo(uniform), "bit-identical unit draws");
            Assert.That(onDevice.Gumbel([n], dev).ToArray(), Is.EqualTo(gumbel), "bit-identical Gumbel draws, continuing the stream");
        });
        Assert.That(uniform, Is.All.InRange(0f, 1f - 1f / (1 << 24)));
        Assert.That(gumbel.All(float.IsFinite));
    }

    /// <summary>Training's masking on the device (<see cref="Masking.MaskBatch"/>) gives the masks the host's
    /// get_mask_tokens draws from the same seeded stream, at every schedule.</summary>
    [TestCaseSource(nameof(Devices))]
    public void DeviceMaskingIsTheHostsGetMaskTokens(string device)
    {
        const int batch = 3, perSample = 17, codebook = 1 << 10, splits = 2, maskToken = 1 << 5;
        var tokens = Enumerable.Range(0, batch * perSample).Select(i => i * 613 % codebook).ToArray();
        var groups = Factorization.Split(tokens, codebook, splits);
        var dev = TestDevices.Get(device);
        foreach (var mode in new[] { MaskSchedule.Arccos, MaskSchedule.Cosine, MaskSchedule.Linear, MaskSchedule.Square })
        {
            var host = Masking.GetMaskTokens(groups, batch, maskToken, mode, 0.1, new SeededRandomSource(7));

            var random = new SeededRandomSource(7);
            var (_, probabilities) = Masking.MaskProbabilities(batch, mode, 0.1, random);
            var draws = random.UniformStream(groups.Length);
            var thresholds = Tensor.FromInts(probabilities.Select(CounterRandom.UnitThreshold).ToArray(), [batch], dev);
            var masked = Masking.MaskBatch(Tensor.FromInts(tokens, [batch, perSample], dev), thresholds, codebook, splits, maskToken, draws);
            Assert.That(masked.Tokens.Shape, Is.EqualTo(new[] { batch, perSample, splits }));
            Assert.That(masked.Targets.ToIntArray(), Is.EqualTo(groups), $"{mode}: targets");
            Assert.That(masked.Tokens.ToIntArray(), Is.EqualTo(host.Tokens), $"{mode}: masked tokens");
            Assert.That(masked.Mask.ToIntArray(), Is.EqualTo(host.Mask.Select(m => m ? 1 : 0)), $"{mode}: mask");
            Assert.That(host.Mask.Distinct().Count(), Is.EqualTo(2), $"{mode}: some groups masked, some not");
        }
    }

    /// <summary>The integer comparison the masking kernels make is the float comparison of the unit draw, also at
    /// probabilities on and between the draws' 2⁻²⁴ grid.</summary>
    [Test]
    public void UnitThresholdComparesAsTheFloatDraws()
    {
        float[] probabilities = [0f, 1f, 0.5f, 0.49999997f, 1e-7f, 3f / (1 << 24), 0.7853982f, 1f - 1f / (1 << 24), -0.25f, 1.5f];
        foreach (float p in probabilities)
        {
            int t = CounterRandom.UnitThreshold(p);
            long center = (long)Math.Floor(p * (double)(1 << 24));
            for (long k = Math.Max(0, center - 2); k <= Math.Min((1 << 24) - 1, center + 2); k++)
                Assert.That(k < t, Is.EqualTo(k * (1f / (1 << 24)) < p), $"draw {k}·2⁻²⁴ against {p:R}");
        }
    }
}
