using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Batched GEMM on an ILGPU accelerator: shared-memory tiles with register blocking.
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

    /// <summary>64 threads (8×8): small groups for the CPU accelerator.</summary>
    internal readonly struct GemmTile32 : IGemmTile
    {
        public int Size => 32;
        public int Depth => 32;
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

    /// <summary>A(i, k) = a[item·StrideA + i·ARow + k·ACol], B(k, j) = b[item·StrideB + k·BRow + j·BCol]:
    /// the transposes are only different strides.</summary>
    public struct GemmArgs
    {
        public int M, N, K, Batch;
        public long StrideA, StrideB, StrideC;
        public int ARow, ACol, BRow, BCol;
        public float Alpha, Beta;
    }

    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs> GemmSmallEntry = GemmKernel<GemmTile32>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs> GemmLargeEntry = GemmKernel<GemmTile64>;

    private static IEnumerable<MethodInfo> GemmEntryPoints => [GemmSmallEntry.Method, GemmLargeEntry.Method];

    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmArgs>? _gemmSmall, _gemmLarge;

    /// <summary>Threads per group of <see cref="GemmKernel{TTile}"/>.</summary>
    internal static int GemmThreads<TTile>() where TTile : struct, IGemmTile
    {
        int side = default(TTile).Size / Micro;
        return side * side;
    }

    public void Gemm(in GemmDesc d, Buf a, Buf b, Buf c, float alpha = 1f, float beta = 0f)
    {
        if (d.M == 0 || d.N == 0 || d.Batch == 0) return;
        var args = new GemmArgs
        {
            M = d.M, N = d.N, K = d.K, Batch = d.Batch,
            StrideA = d.StrideA, StrideB = d.StrideB, StrideC = d.StrideC,
            ARow = d.TransA ? 1 : d.K, ACol = d.TransA ? d.M : 1,
            BRow = d.TransB ? 1 : d.N, BCol = d.TransB ? d.K : 1,
            Alpha = alpha, Beta = beta,
        };
        var (kernel, size, threads) = Sizes.LargeGemmTile
            ? (Kernel(ref _gemmLarge, static acc => acc.LoadStreamKernel(GemmLargeEntry)), default(GemmTile64).Size, GemmThreads<GemmTile64>())
            : (Kernel(ref _gemmSmall, static acc => acc.LoadStreamKernel(GemmSmallEntry)), default(GemmTile32).Size, GemmThreads<GemmTile32>());
        long tiles = (long)d.Batch * ((d.M + size - 1) / size) * ((d.N + size - 1) / size);
        if (tiles > int.MaxValue) throw new NotSupportedException($"GEMM {d} has too many tiles for one launch");
        kernel(new KernelConfig((int)tiles, threads),
            F(a, BatchedExtent(d.Batch, d.StrideA, (long)d.M * d.K)),
            F(b, BatchedExtent(d.Batch, d.StrideB, (long)d.K * d.N)),
            F(c, BatchedExtent(d.Batch, d.StrideC, (long)d.M * d.N)), args);
    }

    private static long BatchedExtent(int batch, long stride, long itemSize) => itemSize == 0 ? 0 : (batch - 1) * stride + itemSize;

    /// <summary>Groups stride over the tiles of all batch items. Per K step the group stages a Depth×Size slice
    /// of op(A) and of op(B) in shared memory (zero-padded at the edges, loaded so that consecutive threads read
    /// consecutive addresses for either transpose), then each thread accumulates its 4×4 block from 4 values of
    /// each slice per k. A thread's rows and columns are Size/4 apart, so a warp reads consecutive
    /// shared-memory words.</summary>
    internal static void GemmKernel<TTile>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmArgs p)
        where TTile : struct, IGemmTile
    {
        var tile = default(TTile);
        int size = tile.Size, depth = tile.Depth;
        int side = size / Micro, threads = side * side;
        var aSlice = SharedMemory.Allocate<float>(tile.Depth * tile.Size);   // [k][i]
        var bSlice = SharedMemory.Allocate<float>(tile.Depth * tile.Size);   // [k][j]

        int tid = Group.IdxX, tx = tid % side, ty = tid / side;
        int tilesN = (p.N + size - 1) / size, tilesPerItem = ((p.M + size - 1) / size) * tilesN;
        bool aAlongK = p.ACol == 1, bAlongK = p.BRow == 1;   // which axis is contiguous in memory
        for (int t = Grid.IdxX; t < tilesPerItem * p.Batch; t += Grid.DimX)
        {
            int item = t / tilesPerItem, tileInItem = t - item * tilesPerItem, tileRow = tileInItem / tilesN;
            int row0 = tileRow * size, col0 = (tileInItem - tileRow * tilesN) * size;
            long aItem = item * p.StrideA, bItem = item * p.StrideB, cItem = item * p.StrideC;
            var acc = default(Block4x4);

            for (int k0 = 0; k0 < p.K; k0 += depth)
            {
                for (int e = tid; e < depth * size; e += threads)
                {
                    int outer = aAlongK ? e / depth : e / size;
                    int kk = aAlongK ? e - outer * depth : outer, i = aAlongK ? outer : e - outer * size;
                    int gi = row0 + i, gk = k0 + kk;
                    aSlice[kk * size + i] = gi < p.M && gk < p.K ? a[aItem + (long)gi * p.ARow + (long)gk * p.ACol] : 0f;

                    outer = bAlongK ? e / depth : e / size;
                    kk = bAlongK ? e - outer * depth : outer;
                    int j = bAlongK ? outer : e - outer * size;
                    int gj = col0 + j;
                    gk = k0 + kk;
                    bSlice[kk * size + j] = gj < p.N && gk < p.K ? b[bItem + (long)gk * p.BRow + (long)gj * p.BCol] : 0f;
                }
                Group.Barrier();
                for (int kk = 0; kk < depth; kk++)
                    acc.AddOuter(Float4.Load(aSlice, kk * size + ty, side), Float4.Load(bSlice, kk * size + tx, side));
                Group.Barrier();   // the slices are overwritten next step
            }

            for (int r = 0; r < Micro; r++)
            {
                int gi = row0 + ty + r * side;
                if (gi >= p.M) continue;
                var row = acc[r];
                for (int s = 0; s < Micro; s++)
                {
                    int gj = col0 + tx + s * side;
                    if (gj >= p.N) continue;
                    long ci = cItem + (long)gi * p.N + gj;
                    // beta = 0 never reads C (it may hold NaN garbage), as BLAS.
                    c[ci] = p.Beta == 0f ? p.Alpha * row[s] : p.Alpha * row[s] + p.Beta * c[ci];
                }
            }
        }
    }
}
