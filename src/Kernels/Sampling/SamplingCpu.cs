namespace MaskBit.Kernels.Cpu;

// The per-step work of the MaskGIT sampler after the softmax: a categorical draw and a confidence per group, then
// per sample the re-masking of the least confident groups. The arithmetic is SamplerMath's, shared with the ILGPU
// kernels; the threshold is found by rank counting there (O(n²) per sample, a fraction of a millisecond at the
// models' 256–1024 groups), not by sorting, so that both devices pick it by one definition.
public sealed partial class CpuBackend
{
    public void RandomDraws(long count, ulong seed, long position, RandomDrawKind kind, Buf y)
    {
        float[] ya = Arr(y);
        int yo = Off(y);
        CpuParallel.For(checked((int)count), (i0, i1) =>
        {
            for (int i = i0; i < i1; i++) ya[yo + i] = CounterRandom.Draw(seed, position + i, kind);
        }, costPerItem: kind == RandomDrawKind.Gumbel ? 40 : 4);
    }

    public void MaskTokenGroups(int count, int perSample, int maskToken, ulong seed, long position, Buf groups, Buf thresholds, Buf masked, Buf mask)
    {
        int[] ga = IntArr(groups), ta = IntArr(thresholds), ka = IntArr(masked), ma = IntArr(mask);
        int go = Off(groups), to = Off(thresholds), ko = Off(masked), mo = Off(mask);
        CpuParallel.For(count, (i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
            {
                bool hidden = CounterRandom.UnitBits(seed, position + i) < ta[to + i / perSample];
                ka[ko + i] = hidden ? maskToken : ga[go + i];
                ma[mo + i] = hidden ? 1 : 0;
            }
        }, costPerItem: 4);
    }

    public void SampleMaskedGroups(int groups, int classes, float noiseScale, float fade, Buf probabilities, Buf uniform, Buf gumbel,
        Buf mask, Buf tokens, Buf sampled, Buf predicted, Buf confidence)
    {
        float[] pa = Arr(probabilities), ua = Arr(uniform), ga = Arr(gumbel), ca = Arr(confidence);
        var p = new HostFloats(pa);
        int[] ma = IntArr(mask), ta = IntArr(tokens), sa = IntArr(sampled), da = IntArr(predicted);
        int po = Off(probabilities), uo = Off(uniform), go = Off(gumbel), mo = Off(mask), to = Off(tokens),
            so = Off(sampled), dO = Off(predicted), co = Off(confidence);
        CpuParallel.For(groups, (g0, g1) =>
        {
            for (int g = g0; g < g1; g++)
            {
                long row = po + (long)g * classes;
                int draw = SamplerMath.InverseCdf(p, row, classes, ua[uo + g]);
                sa[so + g] = draw;
                bool masked = ma[mo + g] != 0;
                da[dO + g] = masked ? draw : ta[to + g];
                ca[co + g] = masked ? MathF.Log(pa[row + draw]) + SamplerMath.Noise(ga[go + g], noiseScale, fade) : float.PositiveInfinity;
            }
        }, costPerItem: 2 * classes);
    }

    public void RemaskLeastConfident(int batch, int perSample, float maskLen, int maskToken, Buf confidence, Buf predicted,
        Buf mask, Buf newMask, Buf tokens, Buf threshold, Buf counts)
    {
        float[] ca = Arr(confidence), ha = Arr(threshold);
        int[] pa = IntArr(predicted), ma = IntArr(mask), na = IntArr(newMask), ta = IntArr(tokens), ka = IntArr(counts);
        int co = Off(confidence), ho = Off(threshold), po = Off(predicted), mo = Off(mask), no = Off(newMask), to = Off(tokens), ko = Off(counts);
        var conf = new HostFloats(ca);
        int numMasked = 0;
        for (int j = 0; j < perSample; j++) if (ma[mo + j] != 0) numMasked++;
        int toMask = SamplerMath.TokensToMask(maskLen, numMasked), rank = SamplerMath.ThresholdRank(toMask, perSample);
        ka[ko] = numMasked;
        ka[ko + 1] = toMask;
        CpuParallel.For(batch, (b0, b1) =>
        {
            for (int b = b0; b < b1; b++)
            {
                long start = co + (long)b * perSample;
                float t = float.NaN;
                for (int j = 0; j < perSample; j++)
                    if (SamplerMath.HasRank(conf, start, perSample, j, rank)) { t = ca[start + j]; break; }
                ha[ho + b] = t;
                for (int j = 0; j < perSample; j++)
                {
                    int g = b * perSample + j;
                    bool remask = ca[co + g] <= t;
                    na[no + g] = remask ? 1 : 0;
                    ta[to + g] = remask ? maskToken : pa[po + g];
                }
            }
        }, costPerItem: (double)perSample * perSample);
    }
}
