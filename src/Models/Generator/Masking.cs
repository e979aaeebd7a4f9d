using MaskBit.Autograd;
using MaskBit.Kernels;

namespace MaskBit.Models.Generator;

/// <summary>Masking schedules of the reference (modeling/modules/masking.py): the fraction of token groups that
/// stays masked as a function of progress in [0, 1].</summary>
public enum MaskSchedule { Root, Square, Cosine, Arccos, Linear }

/// <summary>The groups a training step masked: tokens with the mask token in place, the mask, and the per-sample
/// draws behind them (r, and the masking probability derived from it).</summary>
public sealed record MaskedTokens(int[] Tokens, bool[] Mask, float[] R, float[] ValueToMask);

/// <summary>A training batch on the device (see <see cref="Masking.MaskBatch"/>): the target groups, the masked
/// input and the Int32 mask, (B, n, splits) each.</summary>
public sealed record MaskedBatch(Tensor Targets, Tensor Tokens, Tensor Mask);

/// <summary>
/// Masking for training (<see cref="GetMaskTokens"/>) and the sampler's re-masking schedule
/// (<see cref="GetMaskingRatio"/>, <see cref="TokensToMask"/>). Everything is evaluated in float32 operation by
/// operation as the reference does, because the schedule is floored: at cosine(2/3) float32 gives 0.49999997 and
/// so one group fewer than float64 would. Transcendentals go through double and are rounded once, which is a
/// correctly rounded float32 result (torch's own float32 cos/acos may differ by an ulp; no tabulated mask count
/// depends on that).
/// </summary>
public static class Masking
{
    private const float HalfPi = (float)(Math.PI * 0.5);

    public static MaskSchedule ParseSchedule(string name) => name switch
    {
        "root" => MaskSchedule.Root,
        "square" => MaskSchedule.Square,
        "cosine" => MaskSchedule.Cosine,
        "arccos" => MaskSchedule.Arccos,
        "linear" => MaskSchedule.Linear,
        _ => throw new ArgumentException($"unknown mask schedule '{name}' (root, square, cosine, arccos, linear)"),
    };

    /// <summary>get_masking_ratio: the schedule at <paramref name="progress"/> (rounded to float32 first),
    /// clamped to [1e-6, 1].</summary>
    public static float GetMaskingRatio(double progress, MaskSchedule mode)
    {
        float r = (float)progress;
        float ratio = mode == MaskSchedule.Root ? 1f - MathF.Sqrt(r) : Schedule(r, mode);
        return Math.Clamp(ratio, 1e-6f, 1f);
    }

    /// <summary>The schedules shared by training masking and sampling, float32 step by step:
    /// cos((r·π)·0.5) and acos(r) / (π·0.5) with π rounded to float32 as torch does with a Python scalar.</summary>
    private static float Schedule(float r, MaskSchedule mode) => mode switch
    {
        MaskSchedule.Linear => 1f - r,
        MaskSchedule.Square => 1f - r * r,
        MaskSchedule.Cosine => (float)Math.Cos(r * (float)Math.PI * 0.5f),
        MaskSchedule.Arccos => (float)Math.Acos(r) / HalfPi,
        _ => throw new ArgumentException($"mask schedule {mode} is not available here"),
    };

    /// <summary>
    /// The sampler's count of groups to re-mask after a step: <c>mask_len = floor(ratio · numMaskable)</c> in
    /// float32, then torch.clamp(mask_len, 1, numMasked − 1). Like torch.clamp, an upper bound below the lower one
    /// wins, so the count is ≤ 0 once sample 0 has at most one masked group left (schedules with more steps than
    /// groups); the sampler then follows the reference's wrap-around indexing.
    /// </summary>
    public static (float MaskLen, int Count) TokensToMask(float maskRatio, int numMaskable, int numMasked)
    {
        float maskLen = MaskLen(maskRatio, numMaskable);
        return (maskLen, MaskBit.Kernels.SamplerMath.TokensToMask(maskLen, numMasked));
    }

    /// <summary>mask_len = floor(ratio · numMaskable) in float32, before the clamp of <see cref="TokensToMask"/>.</summary>
    public static float MaskLen(float maskRatio, int numMaskable) => MathF.Floor(maskRatio * numMaskable);

    /// <summary>
    /// get_mask_tokens' per-sample draws: r, one uniform draw per sample (the reference's first draw), scaled by
    /// 1 − <paramref name="minMaskingRatio"/>, and the probability of masking each group of the sample, the schedule
    /// at r (no clamp here, unlike the sampler's ratio).
    /// </summary>
    public static (float[] R, float[] ValueToMask) MaskProbabilities(int batch, MaskSchedule mode, double minMaskingRatio, IRandomSource random)
    {
        if (mode == MaskSchedule.Root) throw new ArgumentException("the root schedule is not supported for training masking (linear, square, cosine, arccos)");
        var r = new float[batch];
        random.Uniform(r);
        float scale = (float)(1 - minMaskingRatio);
        var valueToMask = new float[batch];
        for (int b = 0; b < batch; b++)
        {
            r[b] *= scale;
            valueToMask[b] = Schedule(r[b], mode);
        }
        return (r, valueToMask);
    }

    /// <summary>
    /// get_mask_tokens on the host: masks each group of each sample independently with a per-sample probability drawn
    /// from the schedule. Consumes exactly two uniform draws, in the reference's order: r (<paramref name="batch"/>,
    /// <see cref="MaskProbabilities"/>), then one value per group of <paramref name="tokens"/>; a group is masked where
    /// its draw is strictly below the sample's probability. <paramref name="tokens"/> holds the batch's samples one
    /// after another. (Training masks on the device, <see cref="MaskBatch"/>, with the same comparison.)
    /// </summary>
    public static MaskedTokens GetMaskTokens(ReadOnlySpan<int> tokens, int batch, int maskToken, MaskSchedule mode, double minMaskingRatio,
        IRandomSource random)
    {
        if (batch < 0 || (batch == 0 ? tokens.Length != 0 : tokens.Length % batch != 0))
            throw new ArgumentException($"{tokens.Length} tokens do not split into {batch} samples");
        int perSample = batch == 0 ? 0 : tokens.Length / batch;
        var (r, valueToMask) = MaskProbabilities(batch, mode, minMaskingRatio, random);
        var draws = new float[tokens.Length];
        random.Uniform(draws);
        var values = tokens.ToArray();
        var mask = new bool[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            mask[i] = draws[i] < valueToMask[i / perSample];
            if (mask[i]) values[i] = maskToken;
        }
        return new MaskedTokens(values, mask, r, valueToMask);
    }

    /// <summary>
    /// A training step's integers, made on the tokens' device: the batch's (B, n) Int32 <paramref name="tokens"/>
    /// split into groups (the loss's targets), masked as <see cref="GetMaskTokens"/> masks them (the model's input),
    /// and the mask (1 where masked), each (B, n, splits) Int32. The groups' draws are <paramref name="groupDraws"/>,
    /// made by the kernel; <paramref name="thresholds"/> (B, Int32) holds each sample's probability as
    /// <see cref="CounterRandom.UnitThreshold"/>, so that the comparison is exactly the host's.
    /// </summary>
    public static MaskedBatch MaskBatch(Tensor tokens, Tensor thresholds, int codebookSize, int splits, int maskToken, CounterStream groupDraws)
    {
        var groups = Factorization.Split(tokens, codebookSize, splits);
        var (masked, mask) = F.MaskTokenGroups(groups, thresholds, maskToken, groupDraws.Seed, groupDraws.Position);
        return new MaskedBatch(groups, masked, mask);
    }
}
