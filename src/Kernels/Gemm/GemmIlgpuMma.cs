using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace MaskBit.Kernels.Ilgpu;

// GEMM versions 4–6 of the kernel lab (src/Kernels/Lab/GemmLab.cs): the tensor cores through inline PTX
// (CudaAsm.EmitRef, mma.sync), which only a CUDA GPU of sm_80 or newer runs. No GPU has run them yet: they compile to
// PTX offline and ptxas (CUDA 11.8) accepts them for sm_80 and sm_90 (PtxCompileTests, bench/ptxas-check.sh), and they
// validate only where the lab runs on CUDA (KernelLabTests on a cuda device, `maskbit lab --device cuda`,
// bench/gpu-check.sh's lab stage). EmitRef gives each mma operand a 4-byte local slot that ptxas keeps (512–1344 bytes
// of stack, local loads and stores around every mma); the conversions use CudaAsm.Emit, whose value inputs need none.
//   A group of 128 threads (4 warps, 2×2) computes a 64×64 tile of C; a warp owns 32×32 of it as 2×4 mma tiles of
//   16×8 (8 fragments of 4 floats per lane). K advances 16 at a time: A and B slices are staged as [row][k] and
//   [column][k] (the "row.col" operand layouts), rows padded to 20 floats so that a fragment load (lane = 4·g + t
//   reads row g, k t) hits 32 distinct banks. No double buffering yet.
//   v4 TF32: m16n8k8, operands rounded to TF32 (cvt.rna), float32 accumulation: ~1e-3 relative error.
//   v5 3×TF32: each operand split into a TF32 head and a TF32 tail (x − head); a_tail·b_head + a_head·b_tail +
//      a_head·b_head, tails first: float32 accuracy for three times the tensor-core work.
//   v6 bf16: m16n8k16 on operands rounded to bf16 (cvt.rn.bf16x2): exact for 16-bit (bf16) operands, which the
//      backend widens to float32 before the GEMM; lossy for float32 operands.
public sealed partial class IlgpuBackend
{
    /// <summary>Geometry of <see cref="MmaTiledKernel{TPrecision, TProduct}"/>.</summary>
    internal static class MmaTile
    {
        public const int Size = 64, Depth = 16, Threads = 128, WarpTile = 32;
        /// <summary>A staged row of 16 k plus 4 of padding (bank-conflict-free fragment loads).</summary>
        public const int RowStride = Depth + 4;
        public const int SliceFloats = Size * RowStride;
    }

    /// <summary>The four accumulators of one 16×8 mma tile held by a lane: (g, 2t), (g, 2t + 1), (g + 8, 2t),
    /// (g + 8, 2t + 1) for g = lane / 4, t = lane % 4.</summary>
    internal struct MmaAccumulator
    {
        public float C0, C1, C2, C3;
    }

    /// <summary>A warp's 32×32 of C: mma tiles (i, j) at rows 16·i and columns 8·j, in named fields (registers).</summary>
    internal struct WarpTile32
    {
        public MmaAccumulator T00, T01, T02, T03, T10, T11, T12, T13;
    }

    /// <summary>How one K step of 16 is multiplied on the tensor cores (TF32, 3×TF32 or bf16).</summary>
    internal interface IMmaPrecision
    {
        /// <summary>acc += A[rows r0 .. r0 + 16)·B[columns c0 .. c0 + 8) over the staged K step, for this lane's
        /// fragments (a: [row][k] slice, b: [column][k] slice).</summary>
        void Step(ref MmaAccumulator acc, ArrayView<float> a, ArrayView<float> b, int r0, int c0, int g, int t);
    }

    /// <summary>TF32 m16n8k8, twice per K step.</summary>
    internal readonly struct MmaTf32 : IMmaPrecision
    {
        public void Step(ref MmaAccumulator acc, ArrayView<float> a, ArrayView<float> b, int r0, int c0, int g, int t)
        {
            for (int k = 0; k < MmaTile.Depth; k += 8)
            {
                int ai = (r0 + g) * MmaTile.RowStride + k + t, bi = (c0 + g) * MmaTile.RowStride + k + t;
                MmaK8(ref acc, Tf32(a[ai]), Tf32(a[ai + 8 * MmaTile.RowStride]), Tf32(a[ai + 4]), Tf32(a[ai + 8 * MmaTile.RowStride + 4]),
                    Tf32(b[bi]), Tf32(b[bi + 4]));
            }
        }
    }

    /// <summary>3×TF32 m16n8k8: float32 accuracy from TF32 heads and tails.</summary>
    internal readonly struct MmaTf32x3 : IMmaPrecision
    {
        public void Step(ref MmaAccumulator acc, ArrayView<float> a, ArrayView<float> b, int r0, int c0, int g, int t)
        {
            for (int k = 0; k < MmaTile.Depth; k += 8)
            {
                int ai = (r0 + g) * MmaTile.RowStride + k + t, bi = (c0 + g) * MmaTile.RowStride + k + t;
                var (a0, a0t) = Split(a[ai]);
                var (a1, a1t) = Split(a[ai + 8 * MmaTile.RowStride]);
                var (a2, a2t) = Split(a[ai + 4]);
                var (a3, a3t) = Split(a[ai + 8 * MmaTile.RowStride + 4]);
                var (b0, b0t) = Split(b[bi]);
                var (b1, b1t) = Split(b[bi + 4]);
                MmaK8(ref acc, a0t, a1t, a2t, a3t, b0, b1);
                MmaK8(ref acc, a0, a1, a2, a3, b0t, b1t);
                MmaK8(ref acc, a0, a1, a2, a3, b0, b1);
            }
        }

        /// <summary>x as a TF32 head and the TF32 rounding of what the head leaves out.</summary>
        private static (uint Head, uint Tail) Split(float x)
        {
            uint head = Tf32(x);
            return (head, Tf32(x - Interop.IntAsFloat(head)));
        }
    }

    /// <summary>bf16 m16n8k16, once per K step: a register holds the bf16 pair (k, k + 1), k in its low half.</summary>
    internal readonly struct MmaBf16 : IMmaPrecision
    {
        public void Step(ref MmaAccumulator acc, ArrayView<float> a, ArrayView<float> b, int r0, int c0, int g, int t)
        {
            int ai = (r0 + g) * MmaTile.RowStride + 2 * t, bi = (c0 + g) * MmaTile.RowStride + 2 * t;
            int below = 8 * MmaTile.RowStride;
            Input<uint> a0 = Bf16Pair(a[ai], a[ai + 1]), a1 = Bf16Pair(a[ai + below], a[ai + below + 1]);
            Input<uint> a2 = Bf16Pair(a[ai + 8], a[ai + 9]), a3 = Bf16Pair(a[ai + below + 8], a[ai + below + 9]);
            Input<uint> b0 = Bf16Pair(b[bi], b[bi + 1]), b1 = Bf16Pair(b[bi + 8], b[bi + 9]);
            Ref<float> d0 = acc.C0, d1 = acc.C1, d2 = acc.C2, d3 = acc.C3;
            CudaAsm.EmitRef("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};",
                ref d0, ref d1, ref d2, ref d3, ref a0, ref a1, ref a2, ref a3, ref b0, ref b1);
            acc = new MmaAccumulator { C0 = d0.Value, C1 = d1.Value, C2 = d2.Value, C3 = d3.Value };
        }

        /// <summary>(low, high) rounded to bf16 (nearest even) in one register, low in bits 0–15.</summary>
        private static uint Bf16Pair(float low, float high)
        {
            CudaAsm.Emit("cvt.rn.bf16x2.f32 %0, %1, %2;", out uint pair, high, low);
            return pair;
        }
    }

    /// <summary>acc += A·B for one m16n8k8 TF32 tile: a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4);
    /// b0 (k t, column g), b1 (k t + 4, column g).</summary>
    private static void MmaK8(ref MmaAccumulator acc, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1)
    {
        Input<uint> ia0 = a0, ia1 = a1, ia2 = a2, ia3 = a3, ib0 = b0, ib1 = b1;
        Ref<float> d0 = acc.C0, d1 = acc.C1, d2 = acc.C2, d3 = acc.C3;
        CudaAsm.EmitRef("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};",
            ref d0, ref d1, ref d2, ref d3, ref ia0, ref ia1, ref ia2, ref ia3, ref ib0, ref ib1);
        acc = new MmaAccumulator { C0 = d0.Value, C1 = d1.Value, C2 = d2.Value, C3 = d3.Value };
    }

    /// <summary>float32 → TF32 bits, rounded to nearest (ties away), as the tensor cores read them.</summary>
    private static uint Tf32(float value)
    {
        CudaAsm.Emit("cvt.rna.tf32.f32 %0, %1;", out uint bits, value);
        return bits;
    }

    /// <summary>GEMM v4–v6 (see the top of this file). Groups stride over the 64×64 tiles of all items.</summary>
    internal static void MmaTiledKernel<TPrecision, TProduct>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> extra, TProduct p) where TPrecision : struct, IMmaPrecision where TProduct : struct, ITiledProduct
    {
        var aSlice = SharedMemory.Allocate<float>(MmaTile.SliceFloats);   // [row][k]
        var bSlice = SharedMemory.Allocate<float>(MmaTile.SliceFloats);   // [column][k]
        var precision = default(TPrecision);
        int tid = Group.IdxX, lane = tid % 32, warp = tid / 32, g = lane / 4, t = lane % 4;
        int warpRow = warp / 2 * MmaTile.WarpTile, warpColumn = warp % 2 * MmaTile.WarpTile;
        int m = p.M, n = p.N, kTotal = p.K;
        bool aAlongK = p.AAlongK, bAlongK = p.BAlongK;
        int tilesN = (n + MmaTile.Size - 1) / MmaTile.Size, tilesPerItem = ((m + MmaTile.Size - 1) / MmaTile.Size) * tilesN;
        for (int tile = Grid.IdxX; tile < tilesPerItem * p.Items; tile += Grid.DimX)
        {
            int item = tile / tilesPerItem, tileInItem = tile - item * tilesPerItem, tileRow = tileInItem / tilesN;
            int row0 = tileRow * MmaTile.Size, col0 = (tileInItem - tileRow * tilesN) * MmaTile.Size;
            var acc = default(WarpTile32);
            for (int k0 = 0; k0 < kTotal; k0 += MmaTile.Depth)
            {
                // Consecutive threads take consecutive k where the operand's k are the closer addresses, else
                // consecutive rows (coalesced global reads either way).
                for (int e = tid; e < MmaTile.Size * MmaTile.Depth; e += MmaTile.Threads)
                {
                    int row = aAlongK ? e / MmaTile.Depth : e % MmaTile.Size, k = aAlongK ? e % MmaTile.Depth : e / MmaTile.Size;
                    aSlice[row * MmaTile.RowStride + k] = LoadAOrZero(a, p, item, row0 + row, k0 + k);
                    int column = bAlongK ? e / MmaTile.Depth : e % MmaTile.Size, kb = bAlongK ? e % MmaTile.Depth : e / MmaTile.Size;
                    bSlice[column * MmaTile.RowStride + kb] = LoadBOrZero(b, p, item, k0 + kb, col0 + column);
                }
                Group.Barrier();
                precision.Step(ref acc.T00, aSlice, bSlice, warpRow, warpColumn, g, t);
                precision.Step(ref acc.T01, aSlice, bSlice, warpRow, warpColumn + 8, g, t);
                precision.Step(ref acc.T02, aSlice, bSlice, warpRow, warpColumn + 16, g, t);
                precision.Step(ref acc.T03, aSlice, bSlice, warpRow, warpColumn + 24, g, t);
                precision.Step(ref acc.T10, aSlice, bSlice, warpRow + 16, warpColumn, g, t);
                precision.Step(ref acc.T11, aSlice, bSlice, warpRow + 16, warpColumn + 8, g, t);
                precision.Step(ref acc.T12, aSlice, bSlice, warpRow + 16, warpColumn + 16, g, t);
                precision.Step(ref acc.T13, aSlice, bSlice, warpRow + 16, warpColumn + 24, g, t);
                Group.Barrier();   // the slices are overwritten next step
            }
            int r = row0 + warpRow + g, col = col0 + warpColumn + 2 * t;
            StoreMma(c, extra, p, item, r, col, acc.T00);
            StoreMma(c, extra, p, item, r, col + 8, acc.T01);
            StoreMma(c, extra, p, item, r, col + 16, acc.T02);
            StoreMma(c, extra, p, item, r, col + 24, acc.T03);
            StoreMma(c, extra, p, item, r + 16, col, acc.T10);
            StoreMma(c, extra, p, item, r + 16, col + 8, acc.T11);
            StoreMma(c, extra, p, item, r + 16, col + 16, acc.T12);
            StoreMma(c, extra, p, item, r + 16, col + 24, acc.T13);
        }
    }

    /// <summary>Stores a lane's four values of an mma tile: (i, j), (i, j + 1), (i + 8, j), (i + 8, j + 1).</summary>
    private static void StoreMma<TProduct>(ArrayView<float> c, ArrayView<float> extra, TProduct p, int item, int i, int j, MmaAccumulator v)
        where TProduct : struct, ITiledProduct
    {
        int m = p.M, n = p.N;
        if (i < m && j < n) p.Store(c, extra, item, i, j, v.C0);
        if (i < m && j + 1 < n) p.Store(c, extra, item, i, j + 1, v.C1);
        if (i + 8 < m && j < n) p.Store(c, extra, item, i + 8, j, v.C2);
        if (i + 8 < m && j + 1 < n) p.Store(c, extra, item, i + 8, j + 1, v.C3);
    }

    /// <summary>The tensor-core kernels of one product type (listed for the offline PTX check).</summary>
    internal static class TensorCoreKernels<TProduct> where TProduct : struct, ITiledProduct
    {
        public static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, TProduct> Tf32Entry =
            MmaTiledKernel<MmaTf32, TProduct>;
        public static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, TProduct> Tf32x3Entry =
            MmaTiledKernel<MmaTf32x3, TProduct>;
        public static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, TProduct> Bf16Entry =
            MmaTiledKernel<MmaBf16, TProduct>;
    }

    /// <summary>Why this accelerator cannot run the tensor-core GEMM versions, or null where it can (CUDA, sm_80+:
    /// TF32 and bf16 mma.sync).</summary>
    internal string? TensorCoreProblem() =>
        _accelerator is not CudaAccelerator cuda ? $"{_accelerator.Name} is not a CUDA GPU (mma.sync runs only there)"
        : cuda.Architecture.Major < 8 ? $"{cuda.Name} is sm_{cuda.Architecture.Major}{cuda.Architecture.Minor}; TF32/bf16 mma.sync needs sm_80 or newer"
        : null;

    /// <summary>GEMM v4 (TF32), v5 (3×TF32) or v6 (bf16) on the tensor cores.</summary>
    private void RunTensorCore<TProduct>(int version, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> extra, TProduct p)
        where TProduct : struct, ITiledProduct
    {
        if (TensorCoreProblem() is string problem) throw new NotSupportedException($"GEMM v{version}: {problem}");
        long tiles = TileCount(p, MmaTile.Size);
        if (tiles > int.MaxValue) throw new NotSupportedException($"{typeof(TProduct).Name} ({p.M}×{p.N}×{p.K}, {p.Items} items) has too many tiles for one launch");
        if (tiles == 0) return;
        var entry = version switch
        {
            4 => TensorCoreKernels<TProduct>.Tf32Entry,
            5 => TensorCoreKernels<TProduct>.Tf32x3Entry,
            _ => TensorCoreKernels<TProduct>.Bf16Entry,
        };
        Kernel(entry)(new KernelConfig((int)tiles, MmaTile.Threads), a, b, c, extra, p);
    }
}
