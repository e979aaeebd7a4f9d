using MaskBit.Autograd;

namespace MaskBit.Models.Generator;

/// <summary>
/// Token factorization (modeling/modules/factorization.py): a token of log2(codebookSize) bits is split into
/// <c>splits</c> groups of equal width, group i holding bits i·shift … i·shift + shift − 1 (group 0 least
/// significant). The generator predicts groups; the tokenizer decodes combined tokens.
/// </summary>
public static class Factorization
{
    /// <summary>Bits per group. The reference floors silently (dropping top bits); uneven splits are rejected here.</summary>
    public static int BitsPerGroup(int codebookSize, int splits)
    {
        if (codebookSize < 2 || (codebookSize & (codebookSize - 1)) != 0)
            throw new ArgumentException($"codebook size {codebookSize} is not a power of two");
        int bits = System.Numerics.BitOperations.Log2((uint)codebookSize);
        if (splits < 1 || bits % splits != 0)
            throw new ArgumentException($"{bits} token bits cannot be split into {splits} equal groups");
        return bits / splits;
    }

    /// <summary>split_factorized_tokens: (…, n) Int32 tokens → (…, n, splits) group values, on the tokens' device.</summary>
    public static Tensor Split(Tensor tokens, int codebookSize, int splits) =>
        F.SplitTokenGroups(tokens, splits, BitsPerGroup(codebookSize, splits));

    public static int[] Split(ReadOnlySpan<int> tokens, int codebookSize, int splits)
    {
        int shift = BitsPerGroup(codebookSize, splits), groupMask = (1 << shift) - 1;
        var groups = new int[tokens.Length * splits];
        for (int t = 0; t < tokens.Length; t++)
        {
            if ((uint)tokens[t] >= (uint)codebookSize) throw new ArgumentException($"token {tokens[t]} outside 0…{codebookSize - 1}");
            for (int i = 0; i < splits; i++) groups[t * splits + i] = tokens[t] >> (i * shift) & groupMask;
        }
        return groups;
    }

    /// <summary>combine_factorized_tokens: (…, n, splits) group values → (…, n) Int32 tokens, on the groups' device.
    /// (The reference returns float32 holding the same exact integers.)</summary>
    public static Tensor Combine(Tensor groups, int codebookSize, int splits) =>
        F.CombineTokenGroups(groups, splits, BitsPerGroup(codebookSize, splits));
}
