namespace MaskBit.Kernels;

/// <summary>Read access to floats (a host array or a device view), so that the sampler's per-group arithmetic in
/// <see cref="SamplerMath"/> is written once for the CPU and the ILGPU kernels.</summary>
public interface IFloatSequence
{
    float this[long index] { get; }
}

/// <summary>A host array as an <see cref="IFloatSequence"/>.</summary>
public readonly struct HostFloats(float[] values) : IFloatSequence
{
    public float this[long index] => values[index];
}

/// <summary>
/// The arithmetic of one MaskGIT sampling step that both sampler kernels share (Sampling/SamplingCpu.cs,
/// Sampling/SamplingIlgpu.cs), so that a device draws exactly the tokens the CPU does.
/// </summary>
public static class SamplerMath
{
    /// <summary>The categorical draw of row [start, start + count) for uniform <paramref name="u"/>: the first k with
    /// u·total &lt; cdf_k (sums in double); the last category with mass if rounding leaves u above the total.
    /// Zero-probability categories are never drawn.</summary>
    public static int InverseCdf<TRow>(TRow probabilities, long start, int count, float u) where TRow : struct, IFloatSequence
    {
        double total = 0;
        for (int k = 0; k < count; k++) total += probabilities[start + k];
        double threshold = u * total, cumulative = 0;
        int last = 0;
        for (int k = 0; k < count; k++)
        {
            float p = probabilities[start + k];
            if (p <= 0) continue;
            cumulative += p;
            last = k;
            if (threshold < cumulative) return k;
        }
        return last;
    }

    /// <summary><see cref="InverseCdf{TRow}"/> over a whole host row.</summary>
    public static int InverseCdf(float[] probabilities, float u) => InverseCdf(new HostFloats(probabilities), 0, probabilities.Length, u);

    /// <summary>The Gumbel noise added to a log-confidence: gumbel · scale · fade, in this order (float32).</summary>
    public static float Noise(float gumbel, float scale, float fade) => gumbel * scale * fade;

    /// <summary>The reference's number of groups to re-mask: floor(ratio·n) (passed in as
    /// <paramref name="maskLen"/>) clamped to [1, numMasked − 1]; it is ≤ 0 when at most one group was masked.</summary>
    public static int TokensToMask(float maskLen, int numMasked)
    {
        float atLeastOne = maskLen < 1f ? 1f : maskLen, limit = numMasked - 1;
        return (int)(atLeastOne < limit ? atLeastOne : limit);
    }

    /// <summary>The index into a sample's ascending confidences whose value is the re-masking threshold: count − 1,
    /// wrapped from the end when negative as Python indexing does.</summary>
    public static int ThresholdRank(int tokensToMask, int perSample) =>
        tokensToMask - 1 < 0 ? tokensToMask - 1 + perSample : tokensToMask - 1;

    /// <summary>Whether element j of [start, start + n) is the <paramref name="rank"/>-th smallest (0-based) of the
    /// row's non-NaN values: fewer than rank + 1 values are below it and more than rank are at most it. Ties all
    /// qualify; a NaN never does.</summary>
    public static bool HasRank<TRow>(TRow values, long start, int n, int j, int rank) where TRow : struct, IFloatSequence
    {
        float x = values[start + j];
        int below = 0, atMost = 0;
        for (int i = 0; i < n; i++)
        {
            float v = values[start + i];
            if (v < x) below++;
            if (v <= x) atMost++;
        }
        return below <= rank && rank < atMost;
    }
}
