using System.Numerics.Tensors;

namespace MaskBit.Kernels.Cpu;

// Embedding lookup (row gather) and its gradient (row scatter-add), and LFQBert's bit expansion of token groups.
// Indices are checked here, before any work (IndexFault).
public sealed partial class CpuBackend
{
    public void EmbeddingForward(int count, int dim, int rows, Buf weight, Buf indices, Buf y)
    {
        float[] wa = Arr(weight), ya = Arr(y); int[] ia = IntArr(indices);
        int wo = Off(weight), yo = Off(y), io = Off(indices);
        IndexFault.Check(ia.AsSpan(io, count), rows, IndexedOp.Embedding);
        CpuParallel.For(count, (i0, i1) =>
        {
            for (int i = i0; i < i1; i++) wa.AsSpan(wo + ia[io + i] * dim, dim).CopyTo(ya.AsSpan(yo + i * dim, dim));
        }, costPerItem: dim);
    }

    public void EmbeddingBackward(int count, int dim, int rows, Buf dy, Buf indices, Buf dweight)
    {
        float[] ga = Arr(dy), wa = Arr(dweight); int[] ia = IntArr(indices);
        int go = Off(dy), wo = Off(dweight), io = Off(indices);
        // Threads split the embedding dim, not the indices: each walks every index in order over its own
        // columns, so repeated indices accumulate without races and in a fixed (deterministic) order.
        const int MinColumns = 32;
        int slices = Math.Clamp(dim / MinColumns, 1, CpuParallel.Workers);
        CpuParallel.For(slices, (s0, s1) =>
        {
            int c0 = (int)((long)dim * s0 / slices), width = (int)((long)dim * s1 / slices) - c0;
            for (int i = 0; i < count; i++)
            {
                var dst = wa.AsSpan(wo + ia[io + i] * dim + c0, width);
                TensorPrimitives.Add(dst, ga.AsSpan(go + i * dim + c0, width), dst);
            }
        }, costPerItem: (double)count * dim / slices);
    }

    public void TokenBits(int count, int bits, int maskToken, Buf tokens, Buf y)
    {
        float[] ya = Arr(y); int[] ta = IntArr(tokens);
        int yo = Off(y), to = Off(tokens);
        IndexFault.Check(ta.AsSpan(to, count), TokenBitValue.Count(bits, maskToken), IndexedOp.TokenBits);
        CpuParallel.For(count, (i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
                for (int k = 0; k < bits; k++) ya[yo + i * bits + k] = TokenBitValue.Of(ta[to + i], k, maskToken);
        }, costPerItem: bits);
    }

    public void BitsToIndices(int count, int bits, Buf values, Buf indices)
    {
        float[] va = Arr(values); int[] ia = IntArr(indices);
        int vo = Off(values), io = Off(indices);
        var rows = new HostFloats(va);
        CpuParallel.For(count, (i0, i1) =>
        {
            for (int i = i0; i < i1; i++) ia[io + i] = TokenBitValue.Index(rows, vo + (long)i * bits, bits);
        }, costPerItem: bits);
    }

    public void SplitTokenGroups(int count, int splits, int shift, Buf tokens, Buf groups)
    {
        int[] ta = IntArr(tokens), ga = IntArr(groups);
        int to = Off(tokens), go = Off(groups);
        IndexFault.Check(ta.AsSpan(to, count), 1 << splits * shift, IndexedOp.TokenGroups);
        int groupMask = (1 << shift) - 1;
        CpuParallel.For(count, (t0, t1) =>
        {
            for (int t = t0; t < t1; t++)
                for (int i = 0; i < splits; i++) ga[go + t * splits + i] = ta[to + t] >> i * shift & groupMask;
        }, costPerItem: splits);
    }

    public void CombineTokenGroups(int count, int splits, int shift, Buf groups, Buf tokens)
    {
        int[] ga = IntArr(groups), ta = IntArr(tokens);
        int go = Off(groups), to = Off(tokens);
        IndexFault.Check(ga.AsSpan(go, count * splits), 1 << shift, IndexedOp.TokenGroups);
        CpuParallel.For(count, (t0, t1) =>
        {
            for (int t = t0; t < t1; t++)
            {
                int token = 0;
                for (int i = 0; i < splits; i++) token |= ga[go + t * splits + i] << i * shift;
                ta[to + t] = token;
            }
        }, costPerItem: splits);
    }
}

/// <summary>Bit k of a token group as ±1, or 0 for the mask token (the CPU and ILGPU kernels share it).</summary>
internal static class TokenBitValue
{
    public static float Of(int token, int k, int maskToken) => token == maskToken ? 0f : (token >> k & 1) != 0 ? 1f : -1f;

    /// <summary>How many values are valid: 0 … maskToken, or all of <paramref name="bits"/> bits without a mask token.</summary>
    public static int Count(int bits, int maskToken) => maskToken >= 0 ? maskToken + 1 : 1 << bits;

    /// <summary>The index whose bits are the signs of values [start, start + bits): bit k set where value k &gt; 0.</summary>
    public static int Index<TValues>(TValues values, long start, int bits) where TValues : struct, IFloatSequence
    {
        int index = 0;
        for (int k = 0; k < bits; k++) if (values[start + k] > 0f) index |= 1 << k;
        return index;
    }
}
