using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Integer conversions between a token, its factorized groups and its bit vector, on the tensors' device (no
// gradients): so that tokens made on a device never visit the host on their way to the next model.
public static partial class F
{
    /// <summary>Bit vectors (…, K) of any sign → Int32 indices (…) with bit k set where value k &gt; 0.</summary>
    public static Tensor BitsToIndices(Tensor bits)
    {
        bits.RequireDType(DType.Float32);
        if (bits.Rank < 1) throw new ArgumentException("bits_to_indices: expected at least one axis (…, bits)");
        int k = bits.Shape[^1];
        if (k is < 1 or > 31) throw new ArgumentException($"bits_to_indices: {k} bits do not fit an Int32 index");
        var indices = Tensor.Empty(bits.Shape[..^1], bits.Device, DType.Int32);
        bits.Device.ModelOps.BitsToIndices((int)indices.Numel, k, bits.Buf, indices.Buf);
        return indices;
    }

    /// <summary>Int32 tokens (…) of splits·shift bits → their groups (…, splits), group 0 least significant.</summary>
    public static Tensor SplitTokenGroups(Tensor tokens, int splits, int shift)
    {
        tokens.RequireDType(DType.Int32);
        RequireTokenBits(splits, shift, "split_token_groups");
        var groups = Tensor.Empty(tokens.Shape.Append(splits).ToArray(), tokens.Device, DType.Int32);
        tokens.Device.ModelOps.SplitTokenGroups((int)tokens.Numel, splits, shift, tokens.Buf, groups.Buf);
        return groups;
    }

    /// <summary>Int32 groups (…, splits) of <paramref name="shift"/> bits → tokens (…).</summary>
    public static Tensor CombineTokenGroups(Tensor groups, int splits, int shift)
    {
        groups.RequireDType(DType.Int32);
        RequireTokenBits(splits, shift, "combine_token_groups");
        if (groups.Rank < 1 || groups.Shape[^1] != splits)
            throw new ArgumentException($"combine_token_groups: expected {splits} groups on the last axis, got {ShapeUtil.Format(groups.Shape)}");
        var tokens = Tensor.Empty(groups.Shape[..^1], groups.Device, DType.Int32);
        groups.Device.ModelOps.CombineTokenGroups((int)tokens.Numel, splits, shift, groups.Buf, tokens.Buf);
        return tokens;
    }

    /// <summary>Training's masking (<see cref="IModelOps.MaskTokenGroups"/>): Int32 groups (B, …) and per-sample Int32
    /// thresholds (B) → (masked groups, mask), both shaped as the groups; group i of the flattened groups is masked
    /// where draw position + i of the stream seeded with <paramref name="seed"/> falls below its sample's threshold.</summary>
    public static (Tensor Masked, Tensor Mask) MaskTokenGroups(Tensor groups, Tensor thresholds, int maskToken, ulong seed, long position)
    {
        groups.RequireDType(DType.Int32);
        thresholds.RequireDType(DType.Int32);
        if (groups.Rank < 1 || thresholds.Rank != 1 || thresholds.Shape[0] != groups.Shape[0])
            throw new ArgumentException($"mask_token_groups: thresholds {ShapeUtil.Format(thresholds.Shape)} do not give one per sample of groups {ShapeUtil.Format(groups.Shape)}");
        var masked = Tensor.Empty(groups.Shape, groups.Device, DType.Int32);
        var mask = Tensor.Empty(groups.Shape, groups.Device, DType.Int32);
        int count = (int)groups.Numel, samples = groups.Shape[0];
        if (count > 0)
            groups.Device.ModelOps.MaskTokenGroups(count, count / samples, maskToken, seed, position, groups.Buf, thresholds.Buf, masked.Buf, mask.Buf);
        return (masked, mask);
    }

    private static void RequireTokenBits(int splits, int shift, string op)
    {
        if (splits < 1 || shift < 1 || (long)splits * shift > 30)
            throw new ArgumentException($"{op}: {splits} groups of {shift} bits do not fit a non-negative Int32 token");
    }
}
