using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// GEMM versions 2 and 3 of the kernel lab (src/Kernels/Lab/README.md): the tiled product kernel redesigned for a
// GPU multiprocessor. Version 1 is TiledProductKernel (Gemm/GemmIlgpu.cs).
//   v2: 128×128 block tile, K step 8, 256 threads with an 8×8 micro-tile each; the slices are staged in shared memory
//       as [k][row] with rows padded to 132 floats (conflict-free stores from either staging direction, 16-byte
//       aligned rows, so a thread reads its 4+4 rows and 4+4 columns as four 128-bit loads per k); the next K step is
//       prefetched into registers while the current one is computed, into the other of two shared buffers (one
//       barrier per K step).
//   v3: v2 with split-K: when the output has too few tiles to fill the GPU, the reduction is cut into slices that
//       write partial products, summed in slice order by a second kernel (deterministic, no atomics).
public sealed partial class IlgpuBackend
{
    /// <summary>Geometry of <see cref="Tiled128Kernel{TProduct}"/>.</summary>
    internal static class Tile128
    {
        public const int Size = 128, Depth = 8, Threads = 256, Side = 16;
        /// <summary>A staged row of 128 values plus 4 of padding, in 16-byte units.</summary>
        public const int RowVectors = (Size + 4) / 4;
        public const int StageVectors = Depth * RowVectors;
    }

    /// <summary>A thread's 8×8 block of C: rows r and r + 64 (r = 4·ty + 0..3) by columns c and c + 64
    /// (c = 4·tx + 0..3), as 16 named 4-wide fields so that it stays in registers.</summary>
    internal struct Block8x8
    {
        public Float4 R0L, R0H, R1L, R1H, R2L, R2H, R3L, R3H, R4L, R4H, R5L, R5H, R6L, R6H, R7L, R7H;

        /// <summary>this += a ⊗ b for a = (aLow, aHigh) (rows) and b = (bLow, bHigh) (columns).</summary>
        public void AddOuter(Float4 aLow, Float4 aHigh, Float4 bLow, Float4 bHigh)
        {
            AddRow(ref R0L, ref R0H, aLow.X, bLow, bHigh);
            AddRow(ref R1L, ref R1H, aLow.Y, bLow, bHigh);
            AddRow(ref R2L, ref R2H, aLow.Z, bLow, bHigh);
            AddRow(ref R3L, ref R3H, aLow.W, bLow, bHigh);
            AddRow(ref R4L, ref R4H, aHigh.X, bLow, bHigh);
            AddRow(ref R5L, ref R5H, aHigh.Y, bLow, bHigh);
            AddRow(ref R6L, ref R6H, aHigh.Z, bLow, bHigh);
            AddRow(ref R7L, ref R7H, aHigh.W, bLow, bHigh);
        }

        private static void AddRow(ref Float4 low, ref Float4 high, float a, Float4 bLow, Float4 bHigh)
        {
            low.X += a * bLow.X; low.Y += a * bLow.Y; low.Z += a * bLow.Z; low.W += a * bLow.W;
            high.X += a * bHigh.X; high.Y += a * bHigh.Y; high.Z += a * bHigh.Z; high.W += a * bHigh.W;
        }

        public readonly Float4 Row(int r, bool high) => (r, high) switch
        {
            (0, false) => R0L,
            (0, true) => R0H,
            (1, false) => R1L,
            (1, true) => R1H,
            (2, false) => R2L,
            (2, true) => R2H,
            (3, false) => R3L,
            (3, true) => R3H,
            (4, false) => R4L,
            (4, true) => R4H,
            (5, false) => R5L,
            (5, true) => R5H,
            (6, false) => R6L,
            (6, true) => R6H,
            (7, false) => R7L,
            _ => R7H,
        };
    }

    /// <summary>Where a thread stages its 4 values of an operand per K step: along K (4 consecutive k of one row,
    /// for operands whose k are the closer addresses) or across (4 consecutive rows at one k).</summary>
    private readonly struct StagingSlot
    {
        public readonly int Row, K;
        public readonly bool AlongK;

        public StagingSlot(int thread, bool alongK)
        {
            AlongK = alongK;
            // Along K: 2 threads per row (k 0–3, 4–7), 128 rows. Across: 32 threads per k (4 rows each), 8 k.
            Row = alongK ? thread >> 1 : (thread & 31) * 4;
            K = alongK ? (thread & 1) * 4 : thread >> 5;
        }

        public int RowOf(int e) => AlongK ? Row : Row + e;
        public int KOf(int e) => AlongK ? K + e : K;
    }

    private static Float4 StageA<TProduct>(ArrayView<float> a, TProduct p, int item, int row0, int k0, StagingSlot s)
        where TProduct : struct, ITiledProduct => new()
        {
            X = LoadAOrZero(a, p, item, row0 + s.RowOf(0), k0 + s.KOf(0)),
            Y = LoadAOrZero(a, p, item, row0 + s.RowOf(1), k0 + s.KOf(1)),
            Z = LoadAOrZero(a, p, item, row0 + s.RowOf(2), k0 + s.KOf(2)),
            W = LoadAOrZero(a, p, item, row0 + s.RowOf(3), k0 + s.KOf(3)),
        };

    private static Float4 StageB<TProduct>(ArrayView<float> b, TProduct p, int item, int col0, int k0, StagingSlot s)
        where TProduct : struct, ITiledProduct => new()
        {
            X = LoadBOrZero(b, p, item, k0 + s.KOf(0), col0 + s.RowOf(0)),
            Y = LoadBOrZero(b, p, item, k0 + s.KOf(1), col0 + s.RowOf(1)),
            Z = LoadBOrZero(b, p, item, k0 + s.KOf(2), col0 + s.RowOf(2)),
            W = LoadBOrZero(b, p, item, k0 + s.KOf(3), col0 + s.RowOf(3)),
        };

    private static float LoadAOrZero<TProduct>(ArrayView<float> a, TProduct p, int item, int i, int k)
        where TProduct : struct, ITiledProduct => i < p.M && k < p.K ? p.LoadA(a, item, i, k) : 0f;

    private static float LoadBOrZero<TProduct>(ArrayView<float> b, TProduct p, int item, int k, int j)
        where TProduct : struct, ITiledProduct => j < p.N && k < p.K ? p.LoadB(b, item, k, j) : 0f;

    /// <summary>Writes a staged Float4 into a [k][row] slice: one 128-bit store across, four 32-bit stores along K
    /// (rows padded to 132 floats: the 32 threads of a warp hit 32 distinct banks either way).</summary>
    private static void StoreStaged(ArrayView<Float4> slice, ArrayView<float> sliceWords, int stage, StagingSlot s, Float4 v)
    {
        int first = stage * Tile128.StageVectors;
        if (!s.AlongK)
        {
            slice[first + s.K * Tile128.RowVectors + (s.Row >> 2)] = v;
            return;
        }
        int word = 4 * (first + s.K * Tile128.RowVectors) + s.Row;
        sliceWords[word] = v.X;
        sliceWords[word + 4 * Tile128.RowVectors] = v.Y;
        sliceWords[word + 8 * Tile128.RowVectors] = v.Z;
        sliceWords[word + 12 * Tile128.RowVectors] = v.W;
    }

    /// <summary>GEMM v2 (see the top of this file). Groups stride over the 128×128 tiles of all items.</summary>
    internal static void Tiled128Kernel<TProduct>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> extra, TProduct p) where TProduct : struct, ITiledProduct
    {
        var aSlices = SharedMemory.Allocate<Float4>(2 * Tile128.StageVectors);   // [stage][k][row]
        var bSlices = SharedMemory.Allocate<Float4>(2 * Tile128.StageVectors);   // [stage][k][column]
        var aWords = aSlices.Cast<float>();
        var bWords = bSlices.Cast<float>();
        int tid = Group.IdxX, tx = tid % Tile128.Side, ty = tid / Tile128.Side;
        var aSlot = new StagingSlot(tid, p.AAlongK);
        var bSlot = new StagingSlot(tid, p.BAlongK);
        int m = p.M, n = p.N, kTotal = p.K;
        int tilesN = (n + Tile128.Size - 1) / Tile128.Size, tilesPerItem = ((m + Tile128.Size - 1) / Tile128.Size) * tilesN;
        for (int t = Grid.IdxX; t < tilesPerItem * p.Items; t += Grid.DimX)
        {
            int item = t / tilesPerItem, tileInItem = t - item * tilesPerItem, tileRow = tileInItem / tilesN;
            int row0 = tileRow * Tile128.Size, col0 = (tileInItem - tileRow * tilesN) * Tile128.Size;
            var acc = default(Block8x8);

            // The previous tile's K loop ended with a barrier: its slices are consumed.
            StoreStaged(aSlices, aWords, 0, aSlot, StageA(a, p, item, row0, 0, aSlot));
            StoreStaged(bSlices, bWords, 0, bSlot, StageB(b, p, item, col0, 0, bSlot));
            Group.Barrier();
            int stage = 0;
            for (int k0 = 0; k0 < kTotal; k0 += Tile128.Depth)
            {
                // Prefetch the next K step into registers: its global loads overlap this step's FMAs.
                bool more = k0 + Tile128.Depth < kTotal;
                var nextA = more ? StageA(a, p, item, row0, k0 + Tile128.Depth, aSlot) : default;
                var nextB = more ? StageB(b, p, item, col0, k0 + Tile128.Depth, bSlot) : default;
                int first = stage * Tile128.StageVectors;
                for (int kk = 0; kk < Tile128.Depth; kk++)
                {
                    int rowVectors = first + kk * Tile128.RowVectors;
                    acc.AddOuter(aSlices[rowVectors + ty], aSlices[rowVectors + Tile128.Side + ty],
                        bSlices[rowVectors + tx], bSlices[rowVectors + Tile128.Side + tx]);
                }
                if (more)
                {
                    // The other buffer was last read in the previous step, which every thread finished before
                    // the barrier that ended it.
                    StoreStaged(aSlices, aWords, stage ^ 1, aSlot, nextA);
                    StoreStaged(bSlices, bWords, stage ^ 1, bSlot, nextB);
                }
                Group.Barrier();
                stage ^= 1;
            }

            for (int r = 0; r < 8; r++)
            {
                int gi = row0 + (r < 4 ? 4 * ty + r : Tile128.Size / 2 + 4 * ty + r - 4);
                if (gi >= m) continue;
                StoreRowQuarter(c, extra, p, item, gi, col0 + 4 * tx, acc.Row(r, false));
                StoreRowQuarter(c, extra, p, item, gi, col0 + Tile128.Size / 2 + 4 * tx, acc.Row(r, true));
            }
        }
    }

    private static void StoreRowQuarter<TProduct>(ArrayView<float> c, ArrayView<float> extra, TProduct p, int item, int gi, int gj, Float4 v)
        where TProduct : struct, ITiledProduct
    {
        int n = p.N;
        if (gj < n) p.Store(c, extra, item, gi, gj, v.X);
        if (gj + 1 < n) p.Store(c, extra, item, gi, gj + 1, v.Y);
        if (gj + 2 < n) p.Store(c, extra, item, gi, gj + 2, v.Z);
        if (gj + 3 < n) p.Store(c, extra, item, gi, gj + 3, v.W);
    }

    /// <summary>A tiled product cut along K into <see cref="Slices"/> slices of <see cref="SliceLength"/>: item
    /// s·Inner.Items + i is slice s of the inner item i, and writes its partial C densely to
    /// partials[(item·M + i)·N + j]; <see cref="SplitKSumKernel{TProduct}"/> then stores the sums through the inner
    /// product (so alpha/beta, a bias or a convolution's layout apply once, to the total).</summary>
    public struct SplitK<TProduct> : ITiledProduct where TProduct : struct, ITiledProduct
    {
        public TProduct Inner;
        public int Slices, SliceLength;

        public readonly int M => Inner.M;
        public readonly int N => Inner.N;
        public readonly int K => SliceLength;
        public readonly int Items => Inner.Items * Slices;
        public readonly bool AAlongK => Inner.AAlongK;
        public readonly bool BAlongK => Inner.BAlongK;

        public readonly float LoadA(ArrayView<float> a, int item, int i, int k)
        {
            int slice = item / Inner.Items, gk = slice * SliceLength + k;
            return gk < Inner.K ? Inner.LoadA(a, item - slice * Inner.Items, i, gk) : 0f;
        }

        public readonly float LoadB(ArrayView<float> b, int item, int k, int j)
        {
            int slice = item / Inner.Items, gk = slice * SliceLength + k;
            return gk < Inner.K ? Inner.LoadB(b, item - slice * Inner.Items, gk, j) : 0f;
        }

        public readonly void Store(ArrayView<float> partials, ArrayView<float> unused, int item, int i, int j, float value) =>
            partials[((long)item * M + i) * N + j] = value;
    }

    /// <summary>Split-K's second pass: C(item, i, j) = Σ_slices partial, summed in slice order, stored through
    /// the inner product.</summary>
    internal static void SplitKSumKernel<TProduct>(ArrayView<float> partials, ArrayView<float> c, ArrayView<float> extra,
        TProduct p, int slices) where TProduct : struct, ITiledProduct
    {
        int m = p.M, n = p.N, perItem = m * n, total = perItem * p.Items;
        long sliceStride = (long)total;
        for (int e = Grid.GlobalIndex.X; e < total; e = GridStrideNext(e, total, GridStrideStep))
        {
            float sum = 0f;
            for (int s = 0; s < slices; s++) sum += partials[s * sliceStride + e];
            int item = e / perItem, rest = e - item * perItem, i = rest / n;
            p.Store(c, extra, item, i, rest - i * n, sum);
        }
    }

    /// <summary>The split-K launchers of one product type (listed for the offline PTX check).</summary>
    internal static class SplitKKernels<TProduct> where TProduct : struct, ITiledProduct
    {
        public static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, SplitK<TProduct>> Entry =
            Tiled128Kernel<SplitK<TProduct>>;
        public static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, TProduct, int> SumEntry =
            SplitKSumKernel<TProduct>;
    }

    /// <summary>Runs <paramref name="p"/> with the v2 kernel, or v3 (split-K) when <paramref name="splitK"/> and
    /// the output has fewer tiles than the GPU has room for groups and K is long enough to cut.</summary>
    private void RunTiled128<TProduct>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> extra,
        TProduct p, bool splitK) where TProduct : struct, ITiledProduct
    {
        long tiles = TileCount(p, Tile128.Size);
        if (tiles > int.MaxValue) throw new NotSupportedException($"{typeof(TProduct).Name} ({p.M}×{p.N}×{p.K}, {p.Items} items) has too many tiles for one launch");
        if (tiles == 0) return;
        int slices = splitK ? SplitKSlices(tiles, p.K, (long)p.M * p.N * p.Items) : 1;
        if (slices == 1)
        {
            Kernel(TiledKernels<TProduct>.Large128Entry)(new KernelConfig((int)tiles, Tile128.Threads), a, b, c, extra, p);
            return;
        }
        int sliceLength = (p.K + slices - 1) / slices;
        sliceLength = (sliceLength + Tile128.Depth - 1) / Tile128.Depth * Tile128.Depth;
        slices = (p.K + sliceLength - 1) / sliceLength;
        var split = new SplitK<TProduct> { Inner = p, Slices = slices, SliceLength = sliceLength };
        long partialLength = (long)slices * p.Items * p.M * p.N;
        using var partials = Allocate(partialLength, DType.Float32, zero: false);
        var pv = F(new Buf(partials, 0), partialLength);
        Kernel(SplitKKernels<TProduct>.Entry)(new KernelConfig((int)(tiles * slices), Tile128.Threads), a, b, pv, pv, split);
        Kernel(SplitKKernels<TProduct>.SumEntry)(GridStride((long)p.M * p.N * p.Items, Sizes.ElementGroup), pv, c, extra, p, slices);
    }

    /// <summary>Slices for split-K: enough groups for two waves of <see cref="GroupsPerWave"/>, each slice keeping at
    /// least 8 K steps, and partial sums no larger than 64 Mi floats.</summary>
    internal int SplitKSlices(long tiles, int k, long outputs)
    {
        long wanted = Math.Max(1, 2L * GroupsPerWave / tiles);
        long byDepth = Math.Max(1, k / (8 * Tile128.Depth));
        long byMemory = Math.Max(1, (64L << 20) / Math.Max(1, outputs));
        return (int)Math.Min(Math.Min(wanted, byDepth), Math.Min(byMemory, 64));
    }

    /// <summary>256-thread groups the device runs at once (two per multiprocessor for the 128×128 tile: its
    /// registers, 64 accumulators per thread, allow no more).</summary>
    private int GroupsPerWave => Math.Max(1, _accelerator.NumMultiprocessors * 2);
}
