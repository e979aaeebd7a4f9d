using System.Numerics.Tensors;

namespace MaskBit.Kernels.Cpu;

// Embedding lookup (row gather) and its gradient (row scatter-add). Indices were validated by the caller.
public sealed partial class CpuBackend
{
    public void EmbeddingForward(int count, int dim, Buf weight, Buf indices, Buf y)
    {
        float[] wa = Arr(weight), ya = Arr(y); int[] ia = IntArr(indices);
        int wo = Off(weight), yo = Off(y), io = Off(indices);
        CpuParallel.For(count, (i0, i1) =>
        {
            for (int i = i0; i < i1; i++) wa.AsSpan(wo + ia[io + i] * dim, dim).CopyTo(ya.AsSpan(yo + i * dim, dim));
        }, costPerItem: dim);
    }

    public void EmbeddingBackward(int count, int dim, Buf dy, Buf indices, Buf dweight)
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
}
