namespace MaskBit.Kernels.Cpu;

// Batched GEMM on the CPU: the work is cut into (batch item, C region) pieces, one sequential packed SGEMM
// (see Sgemm) per piece, spread over the cores. A and B may be float32, bfloat16 or float16 storages: the packing
// widens 16-bit operands (OperandElements), C is float32.
public sealed partial class CpuBackend
{
    public void Gemm(in GemmDesc d, Buf a, Buf b, Buf c, float alpha = 1f, float beta = 0f)
    {
        if (d.M <= 0 || d.N <= 0 || d.Batch <= 0) return;
        var body = new GemmBody(d, c, alpha, beta);
        OperandPair.Run(a, b, ref body);
    }

    private readonly unsafe struct GemmBody(GemmDesc desc, Buf c, float alpha, float beta) : IOperandPairBody
    {
        public void Run<TA, TB>(TA* pa, TB* pb) where TA : unmanaged where TB : unmanaged
        {
            var d = desc;
            float al = alpha, be = beta;
            nint aAddr = (nint)pa, bAddr = (nint)pb;
            float[] arrC = Arr(c);
            long offC = c.Offset;

            // Each batch item is cut into `splits` independent column (or row) ranges of C so that both cores get work
            // even for batch 1; with enough batch items each core takes whole items instead.
            // The caller's ISA, handed to the workers explicitly (see Sgemm.Run).
            var isa = CpuIsa.Current;
            var blocking = Sgemm.BlockingFor(isa);
            int workers = CpuParallel.Workers;
            int splits = d.Batch % workers == 0 || d.Batch >= 4 * workers ? 1 : workers;
            bool splitColumns = d.N >= d.M;
            int splitUnit = splitColumns ? blocking.NR : Sgemm.MR;
            splits = Math.Max(1, Math.Min(splits, (splitColumns ? d.N : d.M) / splitUnit));
            bool packed = isa != Isa.Scalar && (long)d.M * d.N * d.K >= Sgemm.SmallMacs;

            CpuParallel.For(d.Batch * splits, (start, end) =>
            {
                float[]? scratchA = packed ? BufferPool<float>.Shared.Rent(blocking.PackedALength) : null;
                float[]? scratchB = packed ? BufferPool<float>.Shared.Rent(blocking.PackedBLength) : null;
                try
                {
                    fixed (float* pc = arrC, packA = scratchA, packB = scratchB)
                    {
                        for (int item = start; item < end; item++)
                        {
                            int bt = item / splits, s = item % splits;
                            int extent = splitColumns ? d.N : d.M;
                            int lo = SplitPoint(extent, s, splits, splitUnit), hi = SplitPoint(extent, s + 1, splits, splitUnit);
                            if (lo >= hi) continue;
                            var va = new MatrixView<TA>((TA*)aAddr + bt * d.StrideA, d.TransA ? d.M : d.K, d.TransA);
                            var vb = new MatrixView<TB>((TB*)bAddr + bt * d.StrideB, d.TransB ? d.K : d.N, d.TransB);
                            float* cItem = pc + offC + bt * d.StrideC;
                            if (splitColumns)
                                Sgemm.Run(isa, d.M, hi - lo, d.K, va, vb.At(0, lo), cItem + lo, d.N, al, be, packA, packB);
                            else
                                Sgemm.Run(isa, hi - lo, d.N, d.K, va.At(lo, 0), vb, cItem + (long)lo * d.N, d.N, al, be, packA, packB);
                        }
                    }
                }
                finally
                {
                    if (scratchA != null) BufferPool<float>.Shared.Return(scratchA);
                    if (scratchB != null) BufferPool<float>.Shared.Return(scratchB);
                }
            }, costPerItem: 2.0 * d.M * d.N * d.K / splits);
        }
    }

    /// <summary>Boundary s of `parts` near-equal ranges over [0, extent), rounded to multiples of unit.</summary>
    private static int SplitPoint(int extent, int s, int parts, int unit) =>
        s >= parts ? extent : Math.Min(extent, (int)((long)extent * s / parts / unit * unit));
}
