using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// The sampler's per-step work on an ILGPU accelerator, with the CPU kernels' arithmetic (SamplerMath), so that a
// sampling step never brings logits or probabilities to the host: a thread per group for the categorical draw and
// the confidence; a group per sample for the re-masking, its threads counting ranks to find the threshold.
public sealed partial class IlgpuBackend
{
    /// <summary>A device view as an <see cref="IFloatSequence"/> for <see cref="SamplerMath"/>.</summary>
    internal readonly struct DeviceFloats(ArrayView<float> values) : IFloatSequence
    {
        public float this[long index] => values[index];
    }

    public struct SamplingArgs
    {
        public int Groups, Classes, Batch, PerSample, MaskToken;
        public float NoiseScale, Fade, MaskLen;
    }

    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>,
        ArrayView<int>, ArrayView<int>, ArrayView<float>, SamplingArgs> SampleMaskedGroupsEntry = SampleMaskedGroupsKernel;
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
        ArrayView<float>, ArrayView<int>, SamplingArgs> RemaskEntry = RemaskLeastConfidentKernel;

    private static readonly Action<ArrayView<float>, RandomArgs> RandomDrawsEntry = RandomDrawsKernel;
    private static readonly Action<ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, RandomArgs, SamplingArgs> MaskTokenGroupsEntry = MaskTokenGroupsKernel;

    public struct RandomArgs
    {
        public long Count, Position;
        public ulong Seed;
        public RandomDrawKind Kind;
    }

    public void RandomDraws(long count, ulong seed, long position, RandomDrawKind kind, Buf y)
    {
        if (count == 0) return;
        Kernel(RandomDrawsEntry)(GridStride(count, Sizes.ElementGroup), F(y, count),
            new RandomArgs { Count = count, Seed = seed, Position = position, Kind = kind });
    }

    public void MaskTokenGroups(int count, int perSample, int maskToken, ulong seed, long position, Buf groups, Buf thresholds, Buf masked, Buf mask)
    {
        if (count == 0) return;
        Kernel(MaskTokenGroupsEntry)(GridStride(count, Sizes.ElementGroup), I(groups, count), I(thresholds, (count + perSample - 1) / perSample),
            I(masked, count), I(mask, count), new RandomArgs { Count = count, Seed = seed, Position = position },
            new SamplingArgs { PerSample = perSample, MaskToken = maskToken });
    }

    public void SampleMaskedGroups(int groups, int classes, float noiseScale, float fade, Buf probabilities, Buf uniform, Buf gumbel,
        Buf mask, Buf tokens, Buf sampled, Buf predicted, Buf confidence)
    {
        if (groups == 0) return;
        var args = new SamplingArgs { Groups = groups, Classes = classes, NoiseScale = noiseScale, Fade = fade };
        Kernel(SampleMaskedGroupsEntry)(GridStride(groups, Sizes.ElementGroup),
            F(probabilities, (long)groups * classes), F(uniform, groups), F(gumbel, groups), I(mask, groups), I(tokens, groups),
            I(sampled, groups), I(predicted, groups), F(confidence, groups), args);
    }

    public void RemaskLeastConfident(int batch, int perSample, float maskLen, int maskToken, Buf confidence, Buf predicted,
        Buf mask, Buf newMask, Buf tokens, Buf threshold, Buf counts)
    {
        if (batch == 0 || perSample == 0) return;
        long n = (long)batch * perSample;
        var args = new SamplingArgs { Batch = batch, PerSample = perSample, MaskLen = maskLen, MaskToken = maskToken };
        Kernel(RemaskEntry)(new KernelConfig(batch, Sizes.ReduceGroup),
            F(confidence, n), I(predicted, n), I(mask, n), I(newMask, n), I(tokens, n), F(threshold, batch), I(counts, 2), args);
    }

    /// <summary>A thread per value: draw Position + i of the stream (CounterRandom, the host's arithmetic).</summary>
    internal static void RandomDrawsKernel(ArrayView<float> y, RandomArgs a)
    {
        for (long i = Grid.GlobalIndex.X; i < a.Count; i += GridStrideStep) y[i] = CounterRandom.Draw(a.Seed, a.Position + i, a.Kind);
    }

    /// <summary>A thread per group: its draw against its sample's threshold (the CPU kernel's comparison).</summary>
    internal static void MaskTokenGroupsKernel(ArrayView<int> groups, ArrayView<int> thresholds, ArrayView<int> masked, ArrayView<int> mask,
        RandomArgs random, SamplingArgs a)
    {
        int count = (int)random.Count;
        for (int i = Grid.GlobalIndex.X; i < count; i = GridStrideNext(i, count, GridStrideStep))
        {
            bool hidden = CounterRandom.UnitBits(random.Seed, random.Position + i) < thresholds[i / a.PerSample];
            masked[i] = hidden ? a.MaskToken : groups[i];
            mask[i] = hidden ? 1 : 0;
        }
    }

    /// <summary>A thread per group: the inverse-CDF draw over its row, then the prediction and its confidence.</summary>
    internal static void SampleMaskedGroupsKernel(ArrayView<float> probabilities, ArrayView<float> uniform, ArrayView<float> gumbel,
        ArrayView<int> mask, ArrayView<int> tokens, ArrayView<int> sampled, ArrayView<int> predicted, ArrayView<float> confidence, SamplingArgs a)
    {
        var rows = new DeviceFloats(probabilities);
        for (int g = Grid.GlobalIndex.X; g < a.Groups; g = GridStrideNext(g, a.Groups, GridStrideStep))
        {
            long row = (long)g * a.Classes;
            int draw = SamplerMath.InverseCdf(rows, row, a.Classes, uniform[g]);
            sampled[g] = draw;
            bool masked = mask[g] != 0;
            predicted[g] = masked ? draw : tokens[g];
            confidence[g] = masked
                ? XMath.Log(probabilities[row + draw]) + SamplerMath.Noise(gumbel[g], a.NoiseScale, a.Fade)
                : float.PositiveInfinity;
        }
    }

    /// <summary>A group per sample: every thread counts sample 0's masked groups (the count the reference takes
    /// for the whole batch); the threads test their groups for the threshold's rank (ties write the same value),
    /// then re-mask.</summary>
    internal static void RemaskLeastConfidentKernel(ArrayView<float> confidence, ArrayView<int> predicted, ArrayView<int> mask,
        ArrayView<int> newMask, ArrayView<int> tokens, ArrayView<float> threshold, ArrayView<int> counts, SamplingArgs a)
    {
        var found = SharedMemory.Allocate<float>(1);
        int numMasked = 0;
        for (int j = 0; j < a.PerSample; j++) if (mask[j] != 0) numMasked++;
        int toMask = SamplerMath.TokensToMask(a.MaskLen, numMasked), rank = SamplerMath.ThresholdRank(toMask, a.PerSample);
        if (Grid.IdxX == 0 && Group.IdxX == 0)
        {
            counts[0] = numMasked;
            counts[1] = toMask;
        }
        var values = new DeviceFloats(confidence);
        for (int b = Grid.IdxX; b < a.Batch; b += Grid.DimX)
        {
            long start = (long)b * a.PerSample;
            if (Group.IdxX == 0) found[0] = float.NaN;
            Group.Barrier();
            for (int j = Group.IdxX; j < a.PerSample; j += Group.DimX)
                if (SamplerMath.HasRank(values, start, a.PerSample, j, rank)) found[0] = confidence[start + j];
            Group.Barrier();
            float t = found[0];
            if (Group.IdxX == 0) threshold[b] = t;
            for (int j = Group.IdxX; j < a.PerSample; j += Group.DimX)
            {
                long g = start + j;
                bool remask = confidence[g] <= t;
                newMask[g] = remask ? 1 : 0;
                tokens[g] = remask ? a.MaskToken : predicted[g];
            }
            Group.Barrier();   // found is reset for the next sample
        }
    }
}
