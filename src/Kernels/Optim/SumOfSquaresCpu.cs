using System.Buffers;
using System.Numerics.Tensors;

namespace MaskBit.Kernels.Cpu;

// The gradient clipping's squared norm in one read of each gradient: no squared temporary, and the same bits however
// many cores run it (fixed chunks, their sums added in order).
public sealed partial class CpuBackend
{
    /// <summary>Values per chunk: one task's share, and the unit of the fixed summation order.</summary>
    private const int SumOfSquaresChunk = 1 << 16;

    public void SumOfSquares(Buf x, long n, Buf y, bool accumulate)
    {
        int chunks = checked((int)((n + SumOfSquaresChunk - 1) / SumOfSquaresChunk));
        double[] partial = ArrayPool<double>.Shared.Rent(Math.Max(chunks, 1));
        try
        {
            float[] xa = Arr(x);
            int xo = Off(x);
            CpuParallel.For(chunks, (c0, c1) =>
            {
                for (int c = c0; c < c1; c++)
                {
                    int start = c * SumOfSquaresChunk;
                    partial[c] = TensorPrimitives.SumOfSquares(xa.AsSpan(xo + start, (int)Math.Min(SumOfSquaresChunk, n - start)));
                }
            }, costPerItem: SumOfSquaresChunk);
            double total = 0;
            for (int c = 0; c < chunks; c++) total += partial[c];
            float[] ya = Arr(y);
            int yo = Off(y);
            ya[yo] = accumulate ? (float)(ya[yo] + total) : (float)total;
        }
        finally { ArrayPool<double>.Shared.Return(partial); }
    }
}
