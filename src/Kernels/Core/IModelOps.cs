namespace MaskBit.Kernels;

/// <summary>
/// The fused kernels that belong to the MaskBit models rather than to the engine: lookup-free quantization, bit
/// tokens, the MaskGIT sampler's per-step work and the MLM loss's prediction tally. Each exists because the
/// composition of engine ops would be slow (LFQ's entropy over 2^K codes) or would read the device every step
/// (the sampler). A backend hands them out through <see cref="IBackend.ModelOps"/>; the conventions are those of
/// <see cref="IBackend"/> (buffers and sizes, outputs overwritten, shapes validated by the autograd layer).
/// </summary>
public interface IModelOps
{
    // ---- bit tokens (Embedding/) --------------------------------------------------------------------------------
    /// <summary>Each of <paramref name="count"/> Int32 values as <paramref name="bits"/> values ±1 (bit k, least
    /// significant first): LFQBert's input, where a value equal to <paramref name="maskToken"/> gives zeros and values
    /// lie in 0 … maskToken, and LFQ codebook entries (maskToken &lt; 0: no mask token, values in 0 … 2^bits − 1).
    /// Values are checked (<see cref="IndexFault"/>).</summary>
    void TokenBits(int count, int bits, int maskToken, Buf tokens, Buf y);
    /// <summary>The inverse of <see cref="TokenBits"/> without a mask token: each of <paramref name="count"/> rows of
    /// <paramref name="bits"/> floats (bit k least significant first) → the Int32 index Σ_k (value &gt; 0)·2^k.</summary>
    void BitsToIndices(int count, int bits, Buf values, Buf indices);
    /// <summary>Token factorization: each of <paramref name="count"/> Int32 tokens of splits·shift bits → splits
    /// groups of <paramref name="shift"/> bits (group i = bits i·shift …, group 0 least significant), (count, splits).
    /// Tokens are checked (<see cref="IndexFault"/>).</summary>
    void SplitTokenGroups(int count, int splits, int shift, Buf tokens, Buf groups);
    /// <summary>The inverse of <see cref="SplitTokenGroups"/>: (count, splits) groups → count tokens. Group values
    /// are checked (<see cref="IndexFault"/>).</summary>
    void CombineTokenGroups(int count, int splits, int shift, Buf groups, Buf tokens);

    // ---- lookup-free quantization (Lfq/) --------------------------------------------------------------------
    /// <summary>z (B, K, HW) → zq = ±1 (z &gt; 0 → +1, else −1), indices (B, HW) Int32 with channel k worth 2^k,
    /// commitmentSum[0] = Σ (zq − z)².</summary>
    void LfqQuantize(int batch, int bits, int hw, Buf z, Buf zq, Buf indices, Buf commitmentSum);
    /// <summary>Entropy terms of p = softmax(2·z·codebookᵀ·invTemperature) over all 2^K codes, streamed (no N×2^K
    /// buffer): result[0] = mean over positions of −Σ_c p·log(max(p, 1e-5)), result[1] = −Σ_c p̄·log(max(p̄, 1e-5))
    /// with p̄ the mean distribution, written to avgProbs (2^K) for the backward.</summary>
    void LfqEntropyForward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf result);
    /// <summary>dz (overwritten) = ∂(dResult[0]·result[0] + dResult[1]·result[1]) / ∂z.</summary>
    void LfqEntropyBackward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf dResult, Buf dz);

    // ---- classification statistics (Classification/) ---------------------------------------------------------
    /// <summary>Per row r of (rows, cols) scores, with Int32 targets and mask: hit = 1 when the row's first maximum
    /// sits at targets[r] (0 otherwise; a NaN first score never loses its place), m = 1 when mask[r] ≠ 0. Writes
    /// tally (4, rows) = [m, m ? loss[r] : 0, hit, m·hit] (so an unmasked NaN loss stays out of the sums).</summary>
    void PredictionTally(int rows, int cols, Buf scores, Buf targets, Buf mask, Buf loss, Buf tally);
    /// <summary>indices[r] (Int32) = the column of the first maximum (or minimum) of row r of (rows, cols) scores,
    /// as <see cref="ClassificationMath.ArgExtreme{TRow}"/>.</summary>
    void ArgExtremeRows(int rows, int cols, bool min, Buf scores, Buf indices);

    // ---- MaskGIT sampling (Sampling/) --------------------------------------------------------------------------
    /// <summary>y[i] = <see cref="CounterRandom.Draw"/>(seed, position + i, kind) for i &lt; count: a seeded stream's
    /// draws made where they are used, bit for bit those of the host.</summary>
    void RandomDraws(long count, ulong seed, long position, RandomDrawKind kind, Buf y);
    /// <summary>Training's masking of token groups: group i &lt; count of the Int32 groups, in samples of
    /// <paramref name="perSample"/>, is masked where its unit draw (draw position + i of the seeded stream,
    /// <see cref="CounterRandom.Draw"/>) is below its sample's masking probability, compared exactly as
    /// <see cref="CounterRandom.UnitBits"/> &lt; thresholds[i / perSample] (Int32, <see cref="CounterRandom.UnitThreshold"/>);
    /// there masked[i] = maskToken and mask[i] = 1, elsewhere masked[i] = groups[i] and mask[i] = 0.</summary>
    void MaskTokenGroups(int count, int perSample, int maskToken, ulong seed, long position, Buf groups, Buf thresholds, Buf masked, Buf mask);
    /// <summary>Each group g of (groups, classes) probabilities draws sampled[g] = <see cref="SamplerMath.InverseCdf{TRow}"/>
    /// at uniform[g]. Where mask[g] ≠ 0 (Int32), predicted[g] = sampled[g] and confidence[g] = log p[g, sampled[g]] +
    /// <see cref="SamplerMath.Noise"/>(gumbel[g], noiseScale, fade); elsewhere predicted[g] = tokens[g] and the
    /// confidence is +∞.</summary>
    void SampleMaskedGroups(int groups, int classes, float noiseScale, float fade, Buf probabilities, Buf uniform, Buf gumbel,
        Buf mask, Buf tokens, Buf sampled, Buf predicted, Buf confidence);
    /// <summary>Re-masks the least confident groups of <paramref name="batch"/> samples of <paramref name="perSample"/>
    /// groups: numMasked = the mask count of sample 0 (the reference's), k = <see cref="SamplerMath.TokensToMask"/>,
    /// threshold[b] = sample b's confidence of <see cref="SamplerMath.ThresholdRank"/> in ascending order (NaN when it
    /// has fewer non-NaN values); newMask = confidence ≤ threshold, tokens = newMask ? maskToken : predicted,
    /// counts = [numMasked, k] (Int32). mask and newMask must not overlap.</summary>
    void RemaskLeastConfident(int batch, int perSample, float maskLen, int maskToken, Buf confidence, Buf predicted,
        Buf mask, Buf newMask, Buf tokens, Buf threshold, Buf counts);
}
