using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Attention backward version 2 of the kernel lab (src/Kernels/Lab/AttentionLab.cs, family attention_backward):
// FlashAttention-2's backward on the forward v2's tiles (64 threads as 8×8, blocks of 64 rows, the 8×8 register
// micro-tile Block8x8 with 128-bit shared loads). Version 1 is AttentionIlgpu.cs's warp per row.
// P = e^(Q̃·Kᵀ − lse) is recomputed from the forward's log-sum-exp; D = rowsum(dO ∘ O) comes from RowDotKernel;
// with the dropout factors Z (the forward's mask stream): P̃ = P∘Z, dS = P∘(Z∘(dO·Vᵀ) − D).
// Two passes, so that every output element has one owner and no float atomics are needed (deterministic):
//   - key-block-outer (FlashKeyValueGradKernel): a group owns 64 keys, keeps K as [d][key] in shared memory and
//     streams the query tiles: dP = dO·Vᵀ, S = Q̃·Kᵀ → P̃ and dS, then dV += P̃ᵀ·dO and dK += dSᵀ·Q̃ into the two
//     8×8 accumulators it holds for the whole block (Q̃ is pre-scaled, so Σ dS·q̃ is already scale·Σ dS·q).
//   - query-block-outer (FlashQueryGradKernel): a group owns 64 queries, keeps Q̃ as [d][query] and streams the key
//     tiles: dP and S again, dS, then dQ += dS·K (scaled when stored).
// Each pass has three 64×64 float tiles of shared memory (48 KB, CUDA's static limit); a product needs both operands
// with its reduction axis outermost, so the tiles that are not resident are restaged per tile in the layout the next
// product wants (from L2: K, V, Q and dO are each read by many groups).
// Head dims up to 64 (zero-padded); no warp-size assumption (no shuffles). The launcher falls back to version 1.
public sealed partial class IlgpuBackend
{
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> FlashKeyValueGradEntry = FlashKeyValueGradKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> FlashQueryGradEntry = FlashQueryGradKernel;

    /// <summary>Whether attention backward version 2 runs this head dim.</summary>
    private static bool FlashBackwardFits(int headDim) => headDim <= FlashTile.Size;

    /// <summary>The two passes of backward v2 (see the top of this file), after <paramref name="rowDot"/> = D.</summary>
    private void AttentionBackwardV2(AttentionArgs args, long n, Buf q, Buf k, Buf v, Buf lse, Buf dOutput, ArrayView<float> rowDot, Buf dq, Buf dk, Buf dv)
    {
        if (!FlashBackwardFits(args.Dim))
            throw new NotSupportedException($"attention backward v2 needs a head dim ≤ {FlashTile.Size} (head dim {args.Dim})");
        long blocks = (long)args.BatchHeads * ((args.Seq + FlashTile.Size - 1) / FlashTile.Size);
        if (blocks > int.MaxValue) throw new NotSupportedException($"attention over {args.BatchHeads} heads of {args.Seq} rows exceeds one ILGPU launch");
        var launch = new KernelConfig((int)Math.Min(blocks, GroupsPerWave * 4L), FlashTile.Threads);
        var (qv, kv, vv, dov, lsev) = (F(q, n), F(k, n), F(v, n), F(dOutput, n), F(lse, (long)args.BatchHeads * args.Seq));
        Kernel(FlashKeyValueGradEntry)(launch, qv, kv, vv, dov, lsev, rowDot, F(dk, n), F(dv, n), args);
        Kernel(FlashQueryGradEntry)(launch, qv, kv, vv, dov, lsev, rowDot, F(dq, n), args);
    }

    /// <summary>dK and dV of backward v2: groups stride over the (batch·head, key block) items. Per query tile, in
    /// three shared tiles (K resident; "stage" and "grid" reused):
    /// 1. dP = dO·Vᵀ from dO as [d][query] (grid) and V as [d][key] (stage); dP then goes to grid as [query][key];
    /// 2. S = Q̃·Kᵀ from Q̃ as [d][query] (stage); each thread turns its 8×8 block into dS (registers) and P̃ (grid,
    ///    over its own dP);
    /// 3. dV += P̃ᵀ·dO with dO as [query][d] (stage), a thread's accumulator rows being keys 4·ty + 0..3, 32 + 4·ty + 0..3;
    /// 4. dS to grid, Q̃ as [query][d] (stage), dK += dSᵀ·Q̃.
    /// At most 192 accumulators live at once (dK, dV and one S-sized block).</summary>
    internal static void FlashKeyValueGradKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> dOutput,
        ArrayView<float> lse, ArrayView<float> rowDot, ArrayView<float> dk, ArrayView<float> dv, AttentionArgs a)
    {
        var kTile = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);   // K as [d][key], the whole item
        var stage = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);   // V [d][key]; Q̃ [d][query]; dO, Q̃ [query][d]
        var grid = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);    // dO [d][query]; then dP, P̃, dS as [query][key]
        var kWords = kTile.Cast<float>();
        var stageWords = stage.Cast<float>();
        var gridWords = grid.Cast<float>();
        const int Half = FlashTile.RowVectors / 2;
        int tid = Group.IdxX, tx = tid % FlashTile.Side, ty = tid / FlashTile.Side;
        int blocks = (a.Seq + FlashTile.Size - 1) / FlashTile.Size;
        for (int item = Grid.IdxX; item < a.BatchHeads * blocks; item += Grid.DimX)
        {
            int bh = item / blocks, key0 = (item - bh * blocks) * FlashTile.Size;
            long head = a.Head(bh);
            // The previous item ended with a barrier after its last reads of the tiles.
            StageTransposed(k, head, key0, a, 1f, kWords, tid);
            var dkAcc = default(Block8x8);
            var dvAcc = default(Block8x8);
            for (int query0 = 0; query0 < a.Seq; query0 += FlashTile.Size)
            {
                StageTransposed(dOutput, head, query0, a, 1f, gridWords, tid);
                StageTransposed(v, head, key0, a, 1f, stageWords, tid);
                Group.Barrier();
                var s = default(Block8x8);   // dP, then S and dS: rows are queries 4·ty + …, columns keys 4·tx + …
                for (int d = 0; d < a.Dim; d++)
                {
                    int at = d * FlashTile.RowVectors;
                    s.AddOuter(grid[at + ty], grid[at + Half + ty], stage[at + tx], stage[at + Half + tx]);
                }
                Group.Barrier();   // dO and V are consumed

                StoreBlockRows(grid, tx, ty, s);
                StageTransposed(q, head, query0, a, a.Scale, stageWords, tid);
                Group.Barrier();
                s = default;
                for (int d = 0; d < a.Dim; d++)
                {
                    int at = d * FlashTile.RowVectors;
                    s.AddOuter(stage[at + ty], stage[at + Half + ty], kTile[at + tx], kTile[at + Half + tx]);
                }
                int queryLow = query0 + 4 * ty, keyLow = key0 + 4 * tx;
                ScoreGradients(grid, tx, 4 * ty, ref s.R0L, ref s.R0H, lse, rowDot, a, bh, queryLow, keyLow);
                ScoreGradients(grid, tx, 4 * ty + 1, ref s.R1L, ref s.R1H, lse, rowDot, a, bh, queryLow + 1, keyLow);
                ScoreGradients(grid, tx, 4 * ty + 2, ref s.R2L, ref s.R2H, lse, rowDot, a, bh, queryLow + 2, keyLow);
                ScoreGradients(grid, tx, 4 * ty + 3, ref s.R3L, ref s.R3H, lse, rowDot, a, bh, queryLow + 3, keyLow);
                ScoreGradients(grid, tx, 32 + 4 * ty, ref s.R4L, ref s.R4H, lse, rowDot, a, bh, queryLow + 32, keyLow);
                ScoreGradients(grid, tx, 33 + 4 * ty, ref s.R5L, ref s.R5H, lse, rowDot, a, bh, queryLow + 33, keyLow);
                ScoreGradients(grid, tx, 34 + 4 * ty, ref s.R6L, ref s.R6H, lse, rowDot, a, bh, queryLow + 34, keyLow);
                ScoreGradients(grid, tx, 35 + 4 * ty, ref s.R7L, ref s.R7H, lse, rowDot, a, bh, queryLow + 35, keyLow);
                Group.Barrier();   // Q̃ is consumed; P̃ is complete

                int queries = XMath.Min(FlashTile.Size, a.Seq - query0);
                StageRows(dOutput, head, query0, a, 1f, stageWords, tid);
                Group.Barrier();
                for (int r = 0; r < queries; r++)
                {
                    int at = r * FlashTile.RowVectors;
                    dvAcc.AddOuter(grid[at + ty], grid[at + Half + ty], stage[at + tx], stage[at + Half + tx]);
                }
                Group.Barrier();   // P̃ and dO are consumed

                StoreBlockRows(grid, tx, ty, s);
                StageRows(q, head, query0, a, a.Scale, stageWords, tid);
                Group.Barrier();
                for (int r = 0; r < queries; r++)
                {
                    int at = r * FlashTile.RowVectors;
                    dkAcc.AddOuter(grid[at + ty], grid[at + Half + ty], stage[at + tx], stage[at + Half + tx]);
                }
                Group.Barrier();   // dS and Q̃ are consumed before the next tile is staged
            }
            StoreBlock(dk, head, a, key0, tx, ty, dkAcc, 1f);
            StoreBlock(dv, head, a, key0, tx, ty, dvAcc, 1f);
        }
    }

    /// <summary>dQ of backward v2: groups stride over the (batch·head, query block) items; Q̃ stays as [d][query].
    /// Per key tile: dP = dO·Vᵀ (dO as [d][query] in "other", V as [d][key] in "keys"), S = Q̃·Kᵀ (K as [d][key]),
    /// dS in registers; then dS as [key][query] (over dO, swizzled as the forward's P) and K as [key][d]:
    /// dQ += dS·K.</summary>
    internal static void FlashQueryGradKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> dOutput,
        ArrayView<float> lse, ArrayView<float> rowDot, ArrayView<float> dq, AttentionArgs a)
    {
        var qTile = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);   // Q̃ as [d][query], the whole item
        var other = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);   // dO [d][query]; then dS as [key][query], swizzled
        var keys = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);    // V [d][key]; K [d][key]; K [key][d]
        var qWords = qTile.Cast<float>();
        var otherWords = other.Cast<float>();
        var keyWords = keys.Cast<float>();
        const int Half = FlashTile.RowVectors / 2;
        int tid = Group.IdxX, tx = tid % FlashTile.Side, ty = tid / FlashTile.Side;
        int blocks = (a.Seq + FlashTile.Size - 1) / FlashTile.Size;
        for (int item = Grid.IdxX; item < a.BatchHeads * blocks; item += Grid.DimX)
        {
            int bh = item / blocks, query0 = (item - bh * blocks) * FlashTile.Size;
            long head = a.Head(bh);
            StageTransposed(q, head, query0, a, a.Scale, qWords, tid);
            var dqAcc = default(Block8x8);
            for (int key0 = 0; key0 < a.Seq; key0 += FlashTile.Size)
            {
                StageTransposed(dOutput, head, query0, a, 1f, otherWords, tid);
                StageTransposed(v, head, key0, a, 1f, keyWords, tid);
                Group.Barrier();
                var dp = default(Block8x8);
                for (int d = 0; d < a.Dim; d++)
                {
                    int at = d * FlashTile.RowVectors;
                    dp.AddOuter(other[at + ty], other[at + Half + ty], keys[at + tx], keys[at + Half + tx]);
                }
                Group.Barrier();   // V is consumed

                StageTransposed(k, head, key0, a, 1f, keyWords, tid);
                Group.Barrier();
                var s = default(Block8x8);
                for (int d = 0; d < a.Dim; d++)
                {
                    int at = d * FlashTile.RowVectors;
                    s.AddOuter(qTile[at + ty], qTile[at + Half + ty], keys[at + tx], keys[at + Half + tx]);
                }
                int queryLow = query0 + 4 * ty, keyLow = key0 + 4 * tx;
                ScoreGradients(ref s.R0L, ref s.R0H, dp.R0L, dp.R0H, out _, out _, lse, rowDot, a, bh, queryLow, keyLow);
                ScoreGradients(ref s.R1L, ref s.R1H, dp.R1L, dp.R1H, out _, out _, lse, rowDot, a, bh, queryLow + 1, keyLow);
                ScoreGradients(ref s.R2L, ref s.R2H, dp.R2L, dp.R2H, out _, out _, lse, rowDot, a, bh, queryLow + 2, keyLow);
                ScoreGradients(ref s.R3L, ref s.R3H, dp.R3L, dp.R3H, out _, out _, lse, rowDot, a, bh, queryLow + 3, keyLow);
                ScoreGradients(ref s.R4L, ref s.R4H, dp.R4L, dp.R4H, out _, out _, lse, rowDot, a, bh, queryLow + 32, keyLow);
                ScoreGradients(ref s.R5L, ref s.R5H, dp.R5L, dp.R5H, out _, out _, lse, rowDot, a, bh, queryLow + 33, keyLow);
                ScoreGradients(ref s.R6L, ref s.R6H, dp.R6L, dp.R6H, out _, out _, lse, rowDot, a, bh, queryLow + 34, keyLow);
                ScoreGradients(ref s.R7L, ref s.R7H, dp.R7L, dp.R7H, out _, out _, lse, rowDot, a, bh, queryLow + 35, keyLow);
                Group.Barrier();   // dO and K as [d][key] are consumed

                StoreProbabilities(other, 4 * tx, ty, s.R0L, s.R1L, s.R2L, s.R3L);
                StoreProbabilities(other, 32 + 4 * tx, ty, s.R0H, s.R1H, s.R2H, s.R3H);
                StoreProbabilities(other, 4 * tx, Half + ty, s.R4L, s.R5L, s.R6L, s.R7L);
                StoreProbabilities(other, 32 + 4 * tx, Half + ty, s.R4H, s.R5H, s.R6H, s.R7H);
                StageRows(k, head, key0, a, 1f, keyWords, tid);
                Group.Barrier();
                int count = XMath.Min(FlashTile.Size, a.Seq - key0);
                for (int key = 0; key < count; key++)
                {
                    int at = key * FlashTile.RowVectors, swizzle = (key >> 2) & 7;
                    dqAcc.AddOuter(other[at + (ty ^ swizzle)], other[at + Half + (ty ^ swizzle)], keys[at + tx], keys[at + Half + tx]);
                }
                Group.Barrier();   // dS and K are consumed before the next tile is staged
            }
            StoreBlock(dq, head, a, query0, tx, ty, dqAcc, a.Scale);
        }
    }

    /// <summary>The key-block pass's step from dP to dS and P̃ for one query row of a thread's block: dP is read
    /// from its own place in <paramref name="grid"/> ([query][key], row <paramref name="tileRow"/>, key vectors
    /// tx and 8 + tx), P̃ is written there, dS replaces the scores.</summary>
    private static void ScoreGradients(ArrayView<Float4> grid, int tx, int tileRow, ref Float4 sLow, ref Float4 sHigh,
        ArrayView<float> lse, ArrayView<float> rowDot, AttentionArgs a, int bh, int row, int keyLow)
    {
        int at = tileRow * FlashTile.RowVectors + tx;
        ScoreGradients(ref sLow, ref sHigh, grid[at], grid[at + FlashTile.RowVectors / 2], out var keptLow, out var keptHigh,
            lse, rowDot, a, bh, row, keyLow);
        grid[at] = keptLow;
        grid[at + FlashTile.RowVectors / 2] = keptHigh;
    }

    /// <summary>One query row of a thread's block (keys keyLow + 0..3 and keyLow + 32 + 0..3): the scores s become
    /// dS = P∘(Z∘dP − D) with P = e^(s − lse), and P̃ = P∘Z comes out; rows and keys past the sequence give 0.</summary>
    private static void ScoreGradients(ref Float4 sLow, ref Float4 sHigh, Float4 dpLow, Float4 dpHigh, out Float4 keptLow, out Float4 keptHigh,
        ArrayView<float> lse, ArrayView<float> rowDot, AttentionArgs a, int bh, int row, int keyLow)
    {
        bool inside = row < a.Seq;
        long stat = (long)bh * a.Seq + row;
        float rowLse = inside ? lse[stat] : float.PositiveInfinity, delta = inside ? rowDot[stat] : 0f;
        int valid = a.Seq - keyLow;
        var pLow = Exponentials(MaskKeys(sLow, valid), rowLse);
        var pHigh = Exponentials(MaskKeys(sHigh, valid - 32), rowLse);
        keptLow = pLow;
        keptHigh = pHigh;
        if (a.Dropout.Active)
        {
            uint rowKey = a.Dropout.RowKey(bh, row);
            var zLow = Dropped(Ones, a.Dropout, rowKey, keyLow);
            var zHigh = Dropped(Ones, a.Dropout, rowKey, keyLow + 32);
            keptLow = Times(pLow, zLow);
            keptHigh = Times(pHigh, zHigh);
            dpLow = Times(dpLow, zLow);
            dpHigh = Times(dpHigh, zHigh);
        }
        sLow = Gradients(pLow, dpLow, delta);
        sHigh = Gradients(pHigh, dpHigh, delta);
    }

    private static Float4 Ones => new() { X = 1f, Y = 1f, Z = 1f, W = 1f };

    private static Float4 Times(Float4 u, Float4 v) => new() { X = u.X * v.X, Y = u.Y * v.Y, Z = u.Z * v.Z, W = u.W * v.W };

    private static Float4 Gradients(Float4 p, Float4 dp, float delta) =>
        new() { X = p.X * (dp.X - delta), Y = p.Y * (dp.Y - delta), Z = p.Z * (dp.Z - delta), W = p.W * (dp.W - delta) };

    /// <summary>A thread's 8×8 block as rows of [row][column] tile: block row i goes to tile row 4·ty + i (32 + … for
    /// the high four), its columns 4·tx + 0..3 and 32 + 4·tx + 0..3 (8 lanes of one ty store 32 consecutive words).</summary>
    private static void StoreBlockRows(ArrayView<Float4> tile, int tx, int ty, Block8x8 b)
    {
        StoreTileRow(tile, 4 * ty, tx, b.R0L, b.R0H);
        StoreTileRow(tile, 4 * ty + 1, tx, b.R1L, b.R1H);
        StoreTileRow(tile, 4 * ty + 2, tx, b.R2L, b.R2H);
        StoreTileRow(tile, 4 * ty + 3, tx, b.R3L, b.R3H);
        StoreTileRow(tile, 32 + 4 * ty, tx, b.R4L, b.R4H);
        StoreTileRow(tile, 33 + 4 * ty, tx, b.R5L, b.R5H);
        StoreTileRow(tile, 34 + 4 * ty, tx, b.R6L, b.R6H);
        StoreTileRow(tile, 35 + 4 * ty, tx, b.R7L, b.R7H);
    }

    private static void StoreTileRow(ArrayView<Float4> tile, int row, int tx, Float4 low, Float4 high)
    {
        tile[row * FlashTile.RowVectors + tx] = low;
        tile[row * FlashTile.RowVectors + FlashTile.RowVectors / 2 + tx] = high;
    }

    /// <summary>Writes scale × a thread's 8×8 block of a [row][d] gradient: rows row0 + 4·ty + 0..3 and
    /// row0 + 32 + 4·ty + 0..3 (those inside the sequence), dims 4·tx + 0..3 and 32 + 4·tx + 0..3.</summary>
    private static void StoreBlock(ArrayView<float> dst, long head, AttentionArgs a, int row0, int tx, int ty, Block8x8 b, float scale)
    {
        int low = row0 + 4 * ty;
        StoreGradientRow(dst, head, a, low, tx, b.R0L, b.R0H, scale);
        StoreGradientRow(dst, head, a, low + 1, tx, b.R1L, b.R1H, scale);
        StoreGradientRow(dst, head, a, low + 2, tx, b.R2L, b.R2H, scale);
        StoreGradientRow(dst, head, a, low + 3, tx, b.R3L, b.R3H, scale);
        StoreGradientRow(dst, head, a, low + 32, tx, b.R4L, b.R4H, scale);
        StoreGradientRow(dst, head, a, low + 33, tx, b.R5L, b.R5H, scale);
        StoreGradientRow(dst, head, a, low + 34, tx, b.R6L, b.R6H, scale);
        StoreGradientRow(dst, head, a, low + 35, tx, b.R7L, b.R7H, scale);
    }

    private static void StoreGradientRow(ArrayView<float> dst, long head, AttentionArgs a, int row, int tx, Float4 low, Float4 high, float scale)
    {
        if (row >= a.Seq) return;
        long start = head + (long)row * a.Dim;
        StoreDims(dst, start, 4 * tx, a.Dim, Scaled(low, scale));
        StoreDims(dst, start, 32 + 4 * tx, a.Dim, Scaled(high, scale));
    }
}
