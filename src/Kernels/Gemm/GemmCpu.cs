namespace MaskBit.Kernels.Cpu;

// Batched GEMM on the CPU: the work is cut into (batch item, C region) pieces, one sequential packed SGEMM
// (see Sgemm) per piece, spread over the cores.
public sealed partial class CpuBackend
{
    public unsafe void Gemm(in GemmDesc d, Buf a, Buf b, Buf c, float alpha = 1f, float beta = 0f)
    {
        if (d.M <= 0 || d.N <= 0 || d.Batch <= 0) return;
        var desc = d;
        float[] arrA = Arr(a), arrB = Arr(b), arrC = Arr(c);
        long offA = a.Offset, offB = b.Offset, offC = c.Offset;

        // Each batch item is cut into `splits` independent column (or row) ranges of C so that both cores get work
        // even for batch 1; with enough batch items each core takes whole items instead.
        // The caller's ISA, handed to the workers explicitly (see Sgemm.Run).
        var isa = CpuIsa.Current;
        var blocking = Sgemm.BlockingFor(isa);
        int workers = CpuParallel.Workers;
        int splits = desc.Batch % workers == 0 || desc.Batch >= 4 * workers ? 1 : workers;
        bool splitColumns = desc.N >= desc.M;
        int splitUnit = splitColumns ? blocking.NR : Sgemm.MR;
        splits = Math.Max(1, Math.Min(splits, (splitColumns ? desc.N : desc.M) / splitUnit));
        bool packed = isa != Isa.Scalar && (long)desc.M * desc.N * desc.K >= Sgemm.SmallMacs;

        CpuParallel.For(desc.Batch * splits, (start, end) =>
        {
            float[]? scratchA = packed ? BufferPool<float>.Shared.Rent(blocking.PackedALength) : null;
            float[]? scratchB = packed ? BufferPool<float>.Shared.Rent(blocking.PackedBLength) : null;
            try
            {
                fixed (float* pa = arrA, pb = arrB, pc = arrC, packA = scratchA, packB = scratchB)
                {
                    for (int item = start; item < end; item++)
                    {
                        int bt = item / splits, s = item % splits;
                        int extent = splitColumns ? desc.N : desc.M;
                        int lo = SplitPoint(extent, s, splits, splitUnit), hi = SplitPoint(extent, s + 1, splits, splitUnit);
                        if (lo >= hi) continue;
                        var va = new MatrixView(pa + offA + bt * desc.StrideA, desc.TransA ? desc.M : desc.K, desc.TransA);
                        var vb = new MatrixView(pb + offB + bt * desc.StrideB, desc.TransB ? desc.K : desc.N, desc.TransB);
                        float* cItem = pc + offC + bt * desc.StrideC;
                        if (splitColumns)
                            Sgemm.Run(isa, desc.M, hi - lo, desc.K, va, vb.At(0, lo), cItem + lo, desc.N, alpha, beta, packA, packB);
                        else
                            Sgemm.Run(isa, hi - lo, desc.N, desc.K, va.At(lo, 0), vb, cItem + (long)lo * desc.N, desc.N, alpha, beta, packA, packB);
                    }
                }
            }
            finally
            {
                if (scratchA != null) BufferPool<float>.Shared.Return(scratchA);
                if (scratchB != null) BufferPool<float>.Shared.Return(scratchB);
            }
        }, costPerItem: 2.0 * desc.M * desc.N * desc.K / splits);
    }

    /// <summary>Boundary s of `parts` near-equal ranges over [0, extent), rounded to multiples of unit.</summary>
    private static int SplitPoint(int extent, int s, int parts, int unit) =>
        s >= parts ? extent : Math.Min(extent, (int)((long)extent * s / parts / unit * unit));
}
