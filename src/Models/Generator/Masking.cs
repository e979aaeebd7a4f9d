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
    /// get_mask_tokens: masks each group of each sample independently with a per-sample probability drawn from
    /// the schedule. Consumes exactly two uniform draws, in the reference's order: r (<paramref name="batch"/>),
    /// then one value per group of <paramref name="tokens"/>; a group is masked where its draw is strictly below
    /// the sample's probability. <paramref name="tokens"/> holds the batch's samples one after another.
    /// </summary>
    public static MaskedTokens GetMaskTokens(ReadOnlySpan<int> tokens, int batch, int maskToken, MaskSchedule mode, double minMaskingRatio,
        IRandomSource random)
    {
        if (mode == MaskSchedule.Root) throw new ArgumentException("the root schedule is not supported for training masking (linear, square, cosine, arccos)");
        if (batch < 0 || (batch == 0 ? tokens.Length != 0 : tokens.Length % batch != 0))
            throw new ArgumentException($"{tokens.Length} tokens do not split into {batch} samples");
        int perSample = batch == 0 ? 0 : tokens.Length / batch;
        var r = new float[batch];
        random.Uniform(r);
        float scale = (float)(1 - minMaskingRatio);
        var valueToMask = new float[batch];
        for (int b = 0; b < batch; b++)
        {
            r[b] *= scale;
            valueToMask[b] = Schedule(r[b], mode);   // no clamp here, unlike the sampler's ratio
        }

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
    /// A training step's integers: the batch's (B, n) <paramref name="tokens"/> split into groups (the loss's
    /// targets), masked by <see cref="GetMaskTokens"/> (the model's input), and the mask (1 where masked), each
    /// (B, n, splits) Int32. All three are made on the host, where the batch's tokens are, and reach
    /// <paramref name="device"/> in one upload.
    /// </summary>
    public static MaskedBatch MaskBatch(ReadOnlySpan<int> tokens, int batch, int codebookSize, int splits, int maskToken, MaskSchedule mode,
        double minMaskingRatio, IRandomSource random, IBackend device)
    {
        var groups = Factorization.Split(tokens, codebookSize, splits);
        var masked = GetMaskTokens(groups, batch, maskToken, mode, minMaskingRatio, random);
        int n = groups.Length;
        var packed = new int[3 * n];
        groups.CopyTo(packed, 0);
        masked.Tokens.CopyTo(packed, n);
        for (int i = 0; i < n; i++) packed[2 * n + i] = masked.Mask[i] ? 1 : 0;
        int seqLen = batch == 0 ? 0 : tokens.Length / batch;
        var all = Tensor.FromInts(packed, [3, batch, seqLen, splits], device);
        return new MaskedBatch(all.Select0(0), all.Select0(1), all.Select0(2));
    }
}
