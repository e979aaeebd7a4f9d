using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>The sampler's per-step kernels on every test device against the CPU backend (draws, tokens, masks and
/// counts exact; confidences within float rounding of the log), and the CPU backend against plain host oracles:
/// an inverse CDF by cumulative sums and the threshold as the rank-th of the sorted non-NaN confidences.</summary>
public sealed class SamplingDeviceTests : DeviceTestBase
{
    private static IEnumerable<TestCaseData> DrawCases() => OnDevices([[37, 5], [19, 64], [6, 300]]);

    [TestCaseSource(nameof(DrawCases))]
    public void SampleMaskedGroups(string device, int groups, int classes)
    {
        var rng = new Random(groups * 1000 + classes);
        var probabilities = new float[groups * classes];
        for (int g = 0; g < groups; g++)
        {
            var row = probabilities.AsSpan(g * classes, classes);
            for (int k = 0; k < classes; k++) row[k] = rng.Next(4) == 0 ? 0f : MathF.Exp(3 * rng.NextSingle());   // exact zeros are never drawn
            float sum = 0;
            foreach (var p in row) sum += p;
            for (int k = 0; k < classes; k++) row[k] /= sum;
        }
        var uniform = Enumerable.Range(0, groups).Select(g => g == 0 ? 0f : g == 1 ? 0.99999994f : rng.NextSingle()).ToArray();
        var gumbel = RandomValues(groups, 7, -2f, 5f);
        var mask = Enumerable.Range(0, groups).Select(g => g % 3 == 2 ? 0 : 1).ToArray();
        var tokens = Enumerable.Range(0, groups).Select(g => mask[g] == 0 ? g % classes : classes).ToArray();

        (int[] Sampled, int[] Predicted, float[] Confidence) Run(IBackend dev)
        {
            Buf sampled = PutInts(dev, new int[groups]), predicted = PutInts(dev, new int[groups]);
            Buf confidence = Put(dev, Enumerable.Repeat(float.NaN, groups).ToArray());
            dev.ModelOps.SampleMaskedGroups(groups, classes, 4.5f, 0.75f, Put(dev, probabilities), Put(dev, uniform), Put(dev, gumbel),
                PutInts(dev, mask), PutInts(dev, tokens), sampled, predicted, confidence);
            return (ReadInts(dev, sampled, groups), ReadInts(dev, predicted, groups), Read(dev, confidence, groups));
        }
        var expected = Run(Reference);
        var actual = Run(TestDevices.Get(device));
        Assert.That(actual.Sampled, Is.EqualTo(expected.Sampled), "sampled");
        Assert.That(actual.Predicted, Is.EqualTo(expected.Predicted), "predicted");
        AssertAbsolute(actual.Confidence.Select(Finite).ToArray(), expected.Confidence.Select(Finite).ToArray(), 1e-5, "confidence");
        Assert.That(actual.Confidence.Select(float.IsPositiveInfinity), Is.EqualTo(mask.Select(m => m == 0)), "+inf exactly where fixed");

        for (int g = 0; g < groups; g++)
        {
            var row = probabilities.AsSpan(g * classes, classes);
            int draw = expected.Sampled[g];
            Assert.That(row[draw], Is.GreaterThan(0f), $"group {g} drew a zero-probability class");
            double below = 0;
            for (int k = 0; k < draw; k++) below += row[k];
            Assert.That(below, Is.LessThanOrEqualTo(uniform[g] + 1e-6), $"group {g}: the draw is the first class whose CDF passes u");
            Assert.That(expected.Predicted[g], Is.EqualTo(mask[g] != 0 ? draw : tokens[g]));
            if (mask[g] != 0)
                Assert.That(expected.Confidence[g], Is.EqualTo(MathF.Log(row[draw]) + gumbel[g] * 4.5f * 0.75f).Within(1e-6));
        }
    }

    private static float Finite(float x) => float.IsPositiveInfinity(x) ? 1e30f : x;

    /// <summary>(perSample, maskLen, masked in sample 0): a plain step, ties at the threshold, and the
    /// reference's wrap-around when sample 0 has one or no masked group left.</summary>
    private static IEnumerable<TestCaseData> RemaskCases() => OnDevices([[7, 3f, 5], [300, 120f, 200], [300, 1f, 1], [40, 0f, 0]]);

    [TestCaseSource(nameof(RemaskCases))]
    public void RemaskLeastConfident(string device, int perSample, float maskLen, int maskedInSample0)
    {
        const int batch = 3, maskToken = 99;
        int n = batch * perSample;
        var rng = new Random(perSample);
        var mask = new int[n];
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < perSample; j++)
                mask[b * perSample + j] = b == 0 ? (j < maskedInSample0 ? 1 : 0) : rng.Next(2);
        // Coarse values make ties; fixed groups are +inf; one NaN and one −inf in sample 1.
        var confidence = Enumerable.Range(0, n).Select(g => mask[g] == 0 ? float.PositiveInfinity : MathF.Round(-4 * rng.NextSingle(), 1)).ToArray();
        confidence[perSample] = float.NaN;
        confidence[perSample + 1] = float.NegativeInfinity;
        var predicted = Enumerable.Range(0, n).Select(g => g % 50).ToArray();

        (int[] Tokens, int[] Mask, float[] Threshold, int[] Counts) Run(IBackend dev)
        {
            Buf newMask = PutInts(dev, new int[n]), tokens = PutInts(dev, new int[n]), counts = PutInts(dev, new int[2]);
            Buf threshold = Put(dev, new float[batch]);
            dev.ModelOps.RemaskLeastConfident(batch, perSample, maskLen, maskToken, Put(dev, confidence), PutInts(dev, predicted), PutInts(dev, mask),
                newMask, tokens, threshold, counts);
            return (ReadInts(dev, tokens, n), ReadInts(dev, newMask, n), Read(dev, threshold, batch), ReadInts(dev, counts, 2));
        }
        var expected = Run(Reference);
        var actual = Run(TestDevices.Get(device));
        Assert.That(actual.Counts, Is.EqualTo(expected.Counts), "counts");
        Assert.That(actual.Threshold, Is.EqualTo(expected.Threshold), "threshold");
        Assert.That(actual.Mask, Is.EqualTo(expected.Mask), "mask");
        Assert.That(actual.Tokens, Is.EqualTo(expected.Tokens), "tokens");

        int toMask = SamplerMath.TokensToMask(maskLen, maskedInSample0), rank = SamplerMath.ThresholdRank(toMask, perSample);
        Assert.That(expected.Counts, Is.EqualTo(new[] { maskedInSample0, toMask }));
        for (int b = 0; b < batch; b++)
        {
            var sorted = confidence.Skip(b * perSample).Take(perSample).Where(c => !float.IsNaN(c)).Order().ToArray();
            Assert.That(expected.Threshold[b], Is.EqualTo(rank < sorted.Length ? sorted[rank] : float.NaN), $"sample {b}'s threshold");
            for (int j = 0; j < perSample; j++)
            {
                int g = b * perSample + j;
                bool remask = confidence[g] <= expected.Threshold[b];
                Assert.That(expected.Mask[g], Is.EqualTo(remask ? 1 : 0));
                Assert.That(expected.Tokens[g], Is.EqualTo(remask ? maskToken : predicted[g]));
            }
        }
    }

    private static int[] ReadInts(IBackend device, Buf b, int n)
    {
        var r = new int[n];
        device.Download(b, r);
        return r;
    }
}
