using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

/// <summary>What a quantizer reports besides the quantized latents (the reference's result dict).</summary>
public sealed record QuantizerResult(
    Tensor QuantizerLoss, Tensor CommitmentLoss, Tensor EntropyLoss, Tensor PerSampleEntropy, Tensor AvgEntropy,
    Tensor MinEncodingIndices, Tensor? CodebookLoss = null);

/// <summary>
/// The lookup-free quantizer (reference: modeling/quantizer/lookup_free.py). Each latent channel is one bit:
/// z &gt; 0 → +1 else −1; the token index is Σ bit_k·2^k. Train mode adds the entropy terms (per-sample entropy
/// minus gamma × entropy of the mean code distribution), computed by a streaming kernel that never materialises
/// the N×2^K probability matrix. Buffers `bits_to_indices` (int32) and `codebook` (2^K × K of ±1) are kept for
/// state-dict compatibility with official checkpoints.
/// </summary>
public sealed class LookupFreeQuantizer : Module
{
    public int TokenBits { get; }
    public int CodebookSize => 1 << TokenBits;
    public float CommitmentCost { get; }
    public float EntropyLossWeight { get; }
    public float EntropyLossTemperature { get; }
    public float EntropyGamma { get; }

    public LookupFreeQuantizer(int tokenBits = 10, float commitmentCost = 0.25f, float entropyLossWeight = 0.1f,
        float entropyLossTemperature = 0.01f, float entropyGamma = 1.0f)
    {
        if (tokenBits is < 1 or > 24) throw new ArgumentOutOfRangeException(nameof(tokenBits), $"token bits {tokenBits} outside 1…24");
        TokenBits = tokenBits; CommitmentCost = commitmentCost; EntropyLossWeight = entropyLossWeight;
        EntropyLossTemperature = entropyLossTemperature; EntropyGamma = entropyGamma;
        Buffer("bits_to_indices", Tensor.FromInts(Enumerable.Range(0, tokenBits).Select(k => 1 << k).ToArray(), tokenBits));
        Buffer("codebook", Tensor.FromArray(CodebookEntries(Enumerable.Range(0, CodebookSize).ToArray(), tokenBits), CodebookSize, tokenBits));
    }

    public (Tensor Quantized, QuantizerResult Result) Forward(Tensor z)
    {
        if (z.Rank != 4 || z.Shape[1] != TokenBits)
            throw new ArgumentException($"LFQ with {TokenBits} bits expects (B, {TokenBits}, H, W) latents, got {ShapeUtil.Format(z.Shape)}");
        var (quantized, indices, mse) = F.LfqQuantize(z);
        var commitment = mse.MulScalar(CommitmentCost);
        var zero = Tensor.Scalar(0f, z.Device);
        Tensor entropyLoss = zero, perSample = zero, avg = zero;
        if (EntropyLossWeight != 0f && Training)
        {
            var terms = F.LfqEntropy(z, EntropyLossTemperature);
            perSample = terms.Narrow(0, 0, 1).Reshape();
            avg = terms.Narrow(0, 1, 1).Reshape().MulScalar(EntropyGamma);
            entropyLoss = perSample.Sub(avg).MulScalar(EntropyLossWeight);
        }
        var loss = commitment.Add(entropyLoss);
        return (quantized, new QuantizerResult(loss, commitment, entropyLoss, perSample, avg, indices));
    }

    /// <summary>±1 bit vectors of token indices (any shape) → shape + (K).</summary>
    public Tensor GetCodebookEntry(Tensor indices) => F.TokenBits(indices.Reshape([.. indices.Shape, 1]), TokenBits, maskToken: -1);

    /// <summary>Token indices of ±1 (or any sign) bit vectors along the last axis, on their device.</summary>
    public static Tensor BitsToIndices(Tensor bits) => F.BitsToIndices(bits);

    private static float[] CodebookEntries(int[] indices, int bits)
    {
        var e = new float[indices.Length * bits];
        for (int i = 0; i < indices.Length; i++)
            for (int k = 0; k < bits; k++) e[i * bits + k] = (indices[i] >> k & 1) != 0 ? 1f : -1f;
        return e;
    }
}
