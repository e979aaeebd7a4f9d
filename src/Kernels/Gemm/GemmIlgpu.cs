using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Batched GEMM on an ILGPU accelerator: shared-memory tiles with register blocking. The tiled kernel is generic
// over the problem, so convolutions (Conv/ConvIlgpu.cs) run through it as implicit GEMMs. The kernels read float32:
// 16-bit operands are widened into temporaries first.
public sealed partial class IlgpuBackend
{
    /// <summary>GEMM tile geometry as compile-time constants (a generic struct argument, because shared memory
    /// must be sized by a constant for offline PTX). A group computes a Size×Size block of C, each of its
    /// (Size/4)² threads a 4×4 register block (<see cref="Block4x4"/>); K advances Depth at a time through
    /// shared memory.</summary>
    internal interface IGemmTile
    {
        int Size { get; }
        int Depth { get; }
    }

    /// <summary>64 threads (8×8): small groups for the CPU accelerator, which pays for each barrier in every
    /// thread, hence few deep K steps (16 KB of shared memory per slice pair).</summary>
    internal readonly struct GemmTile32 : IGemmTile
    {
        public int Size => 32;
        public int Depth => 128;
    }

    /// <summary>256 threads (16×16), 8 KB of shared memory: for GPUs.</summary>
    internal readonly struct GemmTile64 : IGemmTile
    {
        public int Size => 64;
        public int Depth => 16;
    }

    /// <summary>Rows and columns of C per thread.</summary>
    private const int Micro = 4;

    internal struct Float4
    {
        public float X, Y, Z, W;

        public readonly float this[int i] => i switch { 0 => X, 1 => Y, 2 => Z, _ => W };

        /// <summary>view[first], view[first + step], view[first + 2·step], view[first + 3·step].</summary>
        public static Float4 Load(ArrayView<float> view, int first, int step) =>
            new() { X = view[first], Y = view[first + step], Z = view[first + 2 * step], W = view[first + 3 * step] };
    }

    /// <summary>A thread's 4×4 block of C in named fields, so that it stays in registers (an array would be
    /// indexed dynamically and live in local memory).</summary>
    internal struct Block4x4
    {
        public Float4 R0, R1, R2, R3;

        public readonly Float4 this[int row] => row switch { 0 => R0, 1 => R1, 2 => R2, _ => R3 };

        /// <summary>this += a ⊗ b (outer product of a column of A and a row of B).</summary>
        public void AddOuter(Float4 a, Float4 b)
        {
            R0.X += a.X * b.X; R0.Y += a.X * b.Y; R0.Z += a.X * b.Z; R0.W += a.X * b.W;
            R1.X += a.Y * b.X; R1.Y += a.Y * b.Y; R1.Z += a.Y * b.Z; R1.W += a.Y * b.W;
            R2.X += a.Z * b.X; R2.Y += a.Z * b.Y; R2.Z += a.Z * b.Z; R2.W += a.Z * b.W;
            R3.X += a.W * b.X; R3.Y += a.W * b.Y; R3.Z += a.W * b.Z; R3.W += a.W * b.W;
        }
    }

    /// <summary>A product C = A·B computed tile by tile by <see cref="TiledProductKernel{TTile, TProduct}"/>: the
    /// problem says how its operands are read and its result written (a strided GEMM, or a convolution read as an
    /// implicit GEMM straight from the NCHW tensors), the kernel does the tiling. Items are independent products
    /// (batch items, convolution groups, split-K slices). Loads are only asked for i &lt; M, j &lt; N, k &lt; K.</summary>
    public interface ITiledProduct
    {
        int M { get; }
        int N { get; }
        int K { get; }
        int Items { get; }
        /// <summary>Whether consecutive k of A (of B) are the closer addresses: the tile is staged along that axis
        /// so that consecutive threads read neighbouring addresses.</summary>
        bool AAlongK { get; }
        bool BAlongK { get; }
        float LoadA(ArrayView<float> a, int item, int i, int k);
        float LoadB(ArrayView<float> b, int item, int k, int j);
        /// <summary>Writes C(i, j) of an item; <paramref name="extra"/> is the problem's fourth buffer (a bias).</summary>
        void Store(ArrayView<float> c, ArrayView<float> extra, int item, int i, int j, float value);
    }

    /// <summary>A strided GEMM: A(i, k) = a[item·StrideA + i·ARow + k·ACol], B(k, j) = b[item·StrideB + k·BRow +
    /// j·BCol] (the transposes are only different strides), C = alpha·A·B + beta·C.</summary>
    public struct GemmArgs : ITiledProduct
    {
        public int Rows, Columns, Depth, Batch;
        public long StrideA, StrideB, StrideC;
        public int ARow, ACol, BRow, BCol;
        public float Alpha, Beta;

        public readonly int M => Rows;
        public readonly int N => Columns;
        public readonly int K => Depth;
        public readonly int Items => Batch;
        public readonly bool AAlongK => ACol == 1;
        public readonly bool BAlongK => BRow == 1;
        public readonly float LoadA(ArrayView<float> a, int item, int i, int k) => a[item * StrideA + (long)i * ARow + (long)k * ACol];
        public readonly float LoadB(ArrayView<float> b, int item, int k, int j) => b[item * StrideB + (long)k * BRow + (long)j * BCol];

        public readonly void Store(ArrayView<float> c, ArrayView<float> extra, int item, int i, int j, float value)
        {
            long ci = item * StrideC + (long)i * Columns + j;
            // beta = 0 never reads C (it may hold NaN garbage), as BLAS.
            c[ci] = Beta == 0f ? Alpha * value : Alpha * value + Beta * c[ci];
        }
    }

    /// <summary>The variants of the tiled kernel for one problem type: v1 with the CPU-accelerator and the GPU
    /// tile, and v2 (<see cref="Tiled128Kernel{TProduct}"/>, Gemm/GemmIlgpuV2.cs).</summary>
    internal static class TiledKernels<TProduct> where TProduct : struct, ITiledProduct
    {
        public static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, TProduct> SmallEntry =
            TiledProductKernel<GemmTile32, TProduct>;
        public static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, TProduct> LargeEntry =
            TiledProductKernel<GemmTile64, TProduct>;
        public static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, TProduct> Large128Entry =
            Tiled128Kernel<TProduct>;
    }

    /// <summary>Threads per group of <see cref="TiledProductKernel{TTile, TProduct}"/>.</summary>
    internal static int GemmThreads<TTile>() where TTile : struct, IGemmTile
    {
        int side = default(TTile).Size / Micro;
        return side * side;
    }

    public void Gemm(in GemmDesc d, Buf a, Buf b, Buf c, float alpha = 1f, float beta = 0f) =>
        GemmVersion(Sizes.GemmVersion, d, a, b, c, alpha, beta);

    /// <summary>The GEMM with kernel version <paramref name="version"/> of the lab (src/Kernels/Lab/GemmLab.cs): 1 =
    /// <see cref="TiledProductKernel{TTile, TProduct}"/> with this backend's tile, 2 = <see cref="Tiled128Kernel{TProduct}"/>,
    /// 3 = 2 with split-K, 4–6 = the tensor cores (Gemm/GemmIlgpuMma.cs: TF32, 3×TF32, bf16; CUDA only).</summary>
    internal void GemmVersion(int version, in GemmDesc d, Buf a, Buf b, Buf c, float alpha, float beta)
    {
        if (d.M == 0 || d.N == 0 || d.Batch == 0) return;
        using var wideA = Float32Copy(ref a, BatchedExtent(d.Batch, d.StrideA, (long)d.M * d.K));
        using var wideB = Float32Copy(ref b, BatchedExtent(d.Batch, d.StrideB, (long)d.K * d.N));
        var args = new GemmArgs
        {
            Rows = d.M, Columns = d.N, Depth = d.K, Batch = d.Batch,
            StrideA = d.StrideA, StrideB = d.StrideB, StrideC = d.StrideC,
            ARow = d.TransA ? 1 : d.K, ACol = d.TransA ? d.M : 1,
            BRow = d.TransB ? 1 : d.N, BCol = d.TransB ? d.K : 1,
            Alpha = alpha, Beta = beta,
        };
        var cView = F(c, BatchedExtent(d.Batch, d.StrideC, (long)d.M * d.N));
        var aView = F(a, BatchedExtent(d.Batch, d.StrideA, (long)d.M * d.K));
        var bView = F(b, BatchedExtent(d.Batch, d.StrideB, (long)d.K * d.N));
        RunTiled(version, aView, bView, cView, cView, args);
    }

    /// <summary>Runs a tiled product (a GEMM or an implicit-GEMM convolution) with this backend's GEMM version.</summary>
    private void RunTiled<TProduct>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> extra, TProduct p) where TProduct : struct, ITiledProduct =>
        RunTiled(Sizes.GemmVersion, a, b, c, extra, p);

    private void RunTiled<TProduct>(int version, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> extra, TProduct p) where TProduct : struct, ITiledProduct
    {
        switch (version)
        {
            case 1: RunTiledV1(a, b, c, extra, p); break;
            case 2 or 3: RunTiled128(a, b, c, extra, p, splitK: version == 3); break;
            case 4 or 5 or 6: RunTensorCore(version, a, b, c, extra, p); break;
            default: throw new ArgumentOutOfRangeException(nameof(version), version, "GEMM versions are 1 to 6");
        }
    }

    /// <summary>GEMM v1: one group per output tile of every item, with the tile size of <see cref="Sizes"/>.</summary>
    private void RunTiledV1<TProduct>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> extra, TProduct p) where TProduct : struct, ITiledProduct
    {
        var (kernel, size, threads) = Sizes.LargeGemmTile
            ? (Kernel(TiledKernels<TProduct>.LargeEntry), default(GemmTile64).Size, GemmThreads<GemmTile64>())
            : (Kernel(TiledKernels<TProduct>.SmallEntry), default(GemmTile32).Size, GemmThreads<GemmTile32>());
        long tiles = TileCount(p, size);
        if (tiles > int.MaxValue) throw new NotSupportedException($"{typeof(TProduct).Name} ({p.M}×{p.N}×{p.K}, {p.Items} items) has too many tiles for one launch");
        if (tiles == 0) return;
        kernel(new KernelConfig((int)tiles, threads), a, b, c, extra, p);
    }

    private static long TileCount<TProduct>(TProduct p, int size) where TProduct : struct, ITiledProduct =>
        (long)p.Items * ((p.M + size - 1) / size) * ((p.N + size - 1) / size);

    /// <summary>Output tile edge of the tiled kernels on this backend.</summary>
    private int TileSize => Sizes.GemmVersion > 1 ? Tile128.Size : Sizes.LargeGemmTile ? default(GemmTile64).Size : default(GemmTile32).Size;

    private static long BatchedExtent(int batch, long stride, long itemSize) => itemSize == 0 ? 0 : (batch - 1) * stride + itemSize;

    /// <summary>Groups stride over the tiles of all items. Per K step the group stages a Depth×Size slice of A
    /// and of B in shared memory (zero-padded at the edges, loaded so that consecutive threads read the
    /// problem's neighbouring addresses), then each thread accumulates its 4×4 block from 4 values of each slice
    /// per k. A thread's rows and columns are Size/4 apart, so a warp reads consecutive shared-memory words.</summary>
    internal static void TiledProductKernel<TTile, TProduct>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> extra, TProduct p)
        where TTile : struct, IGemmTile where TProduct : struct, ITiledProduct
    {
        var tile = default(TTile);
        int size = tile.Size, depth = tile.Depth;
        int side = size / Micro, threads = side * side;
        var aSlice = SharedMemory.Allocate<float>(tile.Depth * tile.Size);   // [k][i]
        var bSlice = SharedMemory.Allocate<float>(tile.Depth * tile.Size);   // [k][j]

        int tid = Group.IdxX, tx = tid % side, ty = tid / side;
        int m = p.M, n = p.N, kTotal = p.K;
        int tilesN = (n + size - 1) / size, tilesPerItem = ((m + size - 1) / size) * tilesN;
        bool aAlongK = p.AAlongK, bAlongK = p.BAlongK;
        for (int t = Grid.IdxX; t < tilesPerItem * p.Items; t += Grid.DimX)
        {
            int item = t / tilesPerItem, tileInItem = t - item * tilesPerItem, tileRow = tileInItem / tilesN;
            int row0 = tileRow * size, col0 = (tileInItem - tileRow * tilesN) * size;
            var acc = default(Block4x4);

            for (int k0 = 0; k0 < kTotal; k0 += depth)
            {
                for (int e = tid; e < depth * size; e += threads)
                {
                    int outer = aAlongK ? e / depth : e / size;
                    int kk = aAlongK ? e - outer * depth : outer, i = aAlongK ? outer : e - outer * size;
                    int gi = row0 + i, gk = k0 + kk;
                    aSlice[kk * size + i] = gi < m && gk < kTotal ? p.LoadA(a, item, gi, gk) : 0f;

                    outer = bAlongK ? e / depth : e / size;
                    kk = bAlongK ? e - outer * depth : outer;
                    int j = bAlongK ? outer : e - outer * size;
                    int gj = col0 + j;
                    gk = k0 + kk;
                    bSlice[kk * size + j] = gj < n && gk < kTotal ? p.LoadB(b, item, gk, gj) : 0f;
                }
                Group.Barrier();
                for (int kk = 0; kk < depth; kk++)
                    acc.AddOuter(Float4.Load(aSlice, kk * size + ty, side), Float4.Load(bSlice, kk * size + tx, side));
                Group.Barrier();   // the slices are overwritten next step
            }

            for (int r = 0; r < Micro; r++)
            {
                int gi = row0 + ty + r * side;
                if (gi >= m) continue;
                var row = acc[r];
                for (int s = 0; s < Micro; s++)
                {
                    int gj = col0 + tx + s * side;
                    if (gj < n) p.Store(c, extra, item, gi, gj, row[s]);
                }
            }
        }
    }
}
