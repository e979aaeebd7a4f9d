using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Attention forward version 2 of the kernel lab (src/Kernels/Lab/AttentionLab.cs): FlashAttention-2's block tiling
// on the GEMM family's 8×8 register micro-tile (Block8x8, Gemm/GemmIlgpuV2.cs). Version 1 is AttentionForwardKernel
// (a warp per query row, each lane a whole dot product from shared memory).
//   A group of 64 threads (8×8) owns a block of 64 query rows of one (batch, head) and streams the keys in tiles of 64:
//   - S = Q̃·Kᵀ: Q̃ (pre-scaled) and the K tile are staged as [d][row] and [d][key]; per d a thread reads 2 + 2 float4
//     and adds their outer product to its 8×8 block of S (rows 4·ty + 0..3 and 32 + 4·ty + 0..3, keys 4·tx + 0..3 and
//     32 + 4·tx + 0..3).
//   - online softmax in registers: a row's 8 threads (tx = 0..7, lanes differing in their low three bits) combine
//     their maxima with three xor shuffles; each keeps its part of the row sum and rescales its O rows once per tile.
//   - O += P·V: P goes through shared memory as [key][row] (over the K tile, which S no longer needs; the row
//     vectors are swizzled by the key so that the float4 stores are conflict-free) and V is staged as [key][d]; per
//     key a thread reads 2 + 2 float4 into its 8×8 block of O (its rows by dims 4·tx + 0..3, 32 + 4·tx + 0..3).
// Head dims up to 64 (zero-padded to 64); warps of a multiple of 8 lanes. The launcher falls back to version 1
// otherwise. Shared memory: three 64×64 float tiles, 48 KB (CUDA's static limit).
public sealed partial class IlgpuBackend
{
    /// <summary>Geometry of <see cref="FlashForwardKernel"/>.</summary>
    internal static class FlashTile
    {
        /// <summary>Query rows per block, keys per tile, and the largest head dim (padded to it).</summary>
        public const int Size = 64;
        public const int Threads = 64, Side = 8;
        /// <summary>A 64-float row of a tile in float4s, and a whole tile.</summary>
        public const int RowVectors = Size / 4, TileVectors = Size * RowVectors;
    }

    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> FlashForwardEntry = FlashForwardKernel;

    /// <summary>Whether attention version 2 runs this shape on this accelerator.</summary>
    private bool FlashFits(int headDim) => headDim <= FlashTile.Size && _accelerator.WarpSize % FlashTile.Side == 0;

    /// <summary>The attention forward of the lab's version <paramref name="version"/> (src/Kernels/Lab/AttentionLab.cs).</summary>
    internal void AttentionForwardVersion(int version, int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed,
        Buf q, Buf k, Buf v, Buf output, Buf lse)
    {
        if (batchHeads == 0 || seq == 0) return;
        switch (version)
        {
            case 1: AttentionForwardV1(batchHeads, seq, headDim, scale, dropout, seed, q, k, v, output, lse); break;
            case 2:
                if (!FlashFits(headDim))
                    throw new NotSupportedException($"attention v2 needs a head dim ≤ {FlashTile.Size} and warps of a multiple of {FlashTile.Side} lanes (head dim {headDim}, warp {_accelerator.WarpSize})");
                var args = Attention(batchHeads, seq, headDim, scale, dropout, seed, out long n);
                long blocks = (long)batchHeads * ((seq + FlashTile.Size - 1) / FlashTile.Size);
                if (blocks > int.MaxValue) throw new NotSupportedException($"attention over {batchHeads} heads of {seq} rows exceeds one ILGPU launch");
                Kernel(FlashForwardEntry)(new KernelConfig((int)Math.Min(blocks, GroupsPerWave * 4L), FlashTile.Threads),
                    F(q, n), F(k, n), F(v, n), F(output, n), F(lse, (long)batchHeads * seq), args);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(version), version, "attention forward versions are 1 and 2");
        }
    }

    /// <summary>Attention forward v2 (see the top of this file). Groups stride over the (batch·head, query block) items.</summary>
    internal static void FlashForwardKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> output, ArrayView<float> lse, AttentionArgs a)
    {
        var qTile = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);    // [d][row]
        var kpTile = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);   // [d][key], then P as [key][row], swizzled
        var vTile = SharedMemory.Allocate<Float4>(FlashTile.TileVectors);    // [key][d]
        var qWords = qTile.Cast<float>();
        var kpWords = kpTile.Cast<float>();
        var vWords = vTile.Cast<float>();
        int tid = Group.IdxX, tx = tid % FlashTile.Side, ty = tid / FlashTile.Side;
        int blocks = (a.Seq + FlashTile.Size - 1) / FlashTile.Size;
        for (int item = Grid.IdxX; item < a.BatchHeads * blocks; item += Grid.DimX)
        {
            int bh = item / blocks, query0 = (item - bh * blocks) * FlashTile.Size;
            long head = a.Head(bh);
            // The previous item ended with a barrier after its last reads of the tiles.
            StageTransposed(q, head, query0, a, a.Scale, qWords, tid);
            var o = default(Block8x8);
            var rows = new FlashRows();
            rows.Start();
            for (int key0 = 0; key0 < a.Seq; key0 += FlashTile.Size)
            {
                StageTransposed(k, head, key0, a, 1f, kpWords, tid);
                StageRows(v, head, key0, a, 1f, vWords, tid);
                Group.Barrier();

                var s = default(Block8x8);
                for (int d = 0; d < a.Dim; d++)
                {
                    int at = d * FlashTile.RowVectors;
                    s.AddOuter(qTile[at + ty], qTile[at + FlashTile.RowVectors / 2 + ty], kpTile[at + tx], kpTile[at + FlashTile.RowVectors / 2 + tx]);
                }
                Group.Barrier();   // every thread has read the K tile: P may overwrite it

                int keyLow = key0 + 4 * tx, rowLow = query0 + 4 * ty;
                OnlineSoftmax(ref s.R0L, ref s.R0H, ref o.R0L, ref o.R0H, ref rows.M0, ref rows.L0, a, bh, rowLow, keyLow);
                OnlineSoftmax(ref s.R1L, ref s.R1H, ref o.R1L, ref o.R1H, ref rows.M1, ref rows.L1, a, bh, rowLow + 1, keyLow);
                OnlineSoftmax(ref s.R2L, ref s.R2H, ref o.R2L, ref o.R2H, ref rows.M2, ref rows.L2, a, bh, rowLow + 2, keyLow);
                OnlineSoftmax(ref s.R3L, ref s.R3H, ref o.R3L, ref o.R3H, ref rows.M3, ref rows.L3, a, bh, rowLow + 3, keyLow);
                OnlineSoftmax(ref s.R4L, ref s.R4H, ref o.R4L, ref o.R4H, ref rows.M4, ref rows.L4, a, bh, rowLow + 32, keyLow);
                OnlineSoftmax(ref s.R5L, ref s.R5H, ref o.R5L, ref o.R5H, ref rows.M5, ref rows.L5, a, bh, rowLow + 33, keyLow);
                OnlineSoftmax(ref s.R6L, ref s.R6H, ref o.R6L, ref o.R6H, ref rows.M6, ref rows.L6, a, bh, rowLow + 34, keyLow);
                OnlineSoftmax(ref s.R7L, ref s.R7H, ref o.R7L, ref o.R7H, ref rows.M7, ref rows.L7, a, bh, rowLow + 35, keyLow);
                StoreProbabilities(kpTile, 4 * tx, ty, s.R0L, s.R1L, s.R2L, s.R3L);
                StoreProbabilities(kpTile, 32 + 4 * tx, ty, s.R0H, s.R1H, s.R2H, s.R3H);
                StoreProbabilities(kpTile, 4 * tx, FlashTile.RowVectors / 2 + ty, s.R4L, s.R5L, s.R6L, s.R7L);
                StoreProbabilities(kpTile, 32 + 4 * tx, FlashTile.RowVectors / 2 + ty, s.R4H, s.R5H, s.R6H, s.R7H);
                Group.Barrier();

                int keys = XMath.Min(FlashTile.Size, a.Seq - key0);
                for (int key = 0; key < keys; key++)
                {
                    int at = key * FlashTile.RowVectors, swizzle = (key >> 2) & 7;
                    o.AddOuter(kpTile[at + (ty ^ swizzle)], kpTile[at + FlashTile.RowVectors / 2 + (ty ^ swizzle)], vTile[at + tx], vTile[at + FlashTile.RowVectors / 2 + tx]);
                }
                Group.Barrier();   // P and V are consumed before the next tile is staged
            }

            long stats = (long)bh * a.Seq;
            int row0 = query0 + 4 * ty;
            FinishRow(output, lse, head, stats, a, row0, tx, rows.M0, rows.L0, o.R0L, o.R0H);
            FinishRow(output, lse, head, stats, a, row0 + 1, tx, rows.M1, rows.L1, o.R1L, o.R1H);
            FinishRow(output, lse, head, stats, a, row0 + 2, tx, rows.M2, rows.L2, o.R2L, o.R2H);
            FinishRow(output, lse, head, stats, a, row0 + 3, tx, rows.M3, rows.L3, o.R3L, o.R3H);
            FinishRow(output, lse, head, stats, a, row0 + 32, tx, rows.M4, rows.L4, o.R4L, o.R4H);
            FinishRow(output, lse, head, stats, a, row0 + 33, tx, rows.M5, rows.L5, o.R5L, o.R5H);
            FinishRow(output, lse, head, stats, a, row0 + 34, tx, rows.M6, rows.L6, o.R6L, o.R6H);
            FinishRow(output, lse, head, stats, a, row0 + 35, tx, rows.M7, rows.L7, o.R7L, o.R7H);
        }
    }

    /// <summary>The running softmax statistics of a thread's 8 rows: the row maxima M (the same in the row's 8
    /// threads) and this thread's part of each row sum L (summed over the 8 at the end), as named fields so that
    /// they stay in registers.</summary>
    private struct FlashRows
    {
        public float M0, M1, M2, M3, M4, M5, M6, M7, L0, L1, L2, L3, L4, L5, L6, L7;

        public void Start()
        {
            M0 = M1 = M2 = M3 = M4 = M5 = M6 = M7 = float.NegativeInfinity;
            L0 = L1 = L2 = L3 = L4 = L5 = L6 = L7 = 0f;
        }
    }

    /// <summary>One row of a tile: the scores s (this thread's keys keyLow + 0..3 and keyLow + 32 + 0..3) become the
    /// weights P̃ = e^(s − max)·dropout, the row max m and this thread's part of the sum l move on, and the row's O
    /// is rescaled by e^(m_old − m_new).</summary>
    private static void OnlineSoftmax(ref Float4 sLow, ref Float4 sHigh, ref Float4 oLow, ref Float4 oHigh, ref float m, ref float l,
        AttentionArgs a, int bh, int row, int keyLow)
    {
        int valid = a.Seq - keyLow;   // keys keyLow + c exist for c < valid
        sLow = MaskKeys(sLow, valid);
        sHigh = MaskKeys(sHigh, valid - 32);
        float tileMax = MaxOrNaN(MaxOrNaN(MaxOrNaN(sLow.X, sLow.Y), MaxOrNaN(sLow.Z, sLow.W)),
                                 MaxOrNaN(MaxOrNaN(sHigh.X, sHigh.Y), MaxOrNaN(sHigh.Z, sHigh.W)));
        // The row's 8 threads are lanes that differ in their low three bits.
        tileMax = MaxOrNaN(tileMax, Warp.ShuffleXor(tileMax, 1));
        tileMax = MaxOrNaN(tileMax, Warp.ShuffleXor(tileMax, 2));
        tileMax = MaxOrNaN(tileMax, Warp.ShuffleXor(tileMax, 4));
        float newMax = MaxOrNaN(m, tileMax);
        float decay = XMath.Exp(m - newMax);   // 0 on the first tile
        sLow = Exponentials(sLow, newMax);
        sHigh = Exponentials(sHigh, newMax);
        l = l * decay + (sLow.X + sLow.Y + sLow.Z + sLow.W) + (sHigh.X + sHigh.Y + sHigh.Z + sHigh.W);
        if (a.Dropout.Active)
        {
            uint rowKey = a.Dropout.RowKey(bh, row);
            sLow = Dropped(sLow, a.Dropout, rowKey, keyLow);
            sHigh = Dropped(sHigh, a.Dropout, rowKey, keyLow + 32);
        }
        oLow = Scaled(oLow, decay);
        oHigh = Scaled(oHigh, decay);
        m = newMax;
    }

    private static Float4 MaskKeys(Float4 s, int valid) => new()
    {
        X = valid > 0 ? s.X : float.NegativeInfinity,
        Y = valid > 1 ? s.Y : float.NegativeInfinity,
        Z = valid > 2 ? s.Z : float.NegativeInfinity,
        W = valid > 3 ? s.W : float.NegativeInfinity,
    };

    private static Float4 Exponentials(Float4 s, float max) =>
        new() { X = XMath.Exp(s.X - max), Y = XMath.Exp(s.Y - max), Z = XMath.Exp(s.Z - max), W = XMath.Exp(s.W - max) };

    private static Float4 Dropped(Float4 p, DropoutMask mask, uint rowKey, int key) => new()
    {
        X = p.X * mask.Factor(rowKey, key),
        Y = p.Y * mask.Factor(rowKey, key + 1),
        Z = p.Z * mask.Factor(rowKey, key + 2),
        W = p.W * mask.Factor(rowKey, key + 3),
    };

    private static Float4 Scaled(Float4 v, float factor) => new() { X = v.X * factor, Y = v.Y * factor, Z = v.Z * factor, W = v.W * factor };

    /// <summary>Writes the weights of 4 rows (rowVector) × 4 keys (key..key + 3) into P as [key][row]: a float4 of
    /// 4 rows per key. The row vector is swizzled by bits 2–4 of the key, so the 8 lanes of a store phase (same ty,
    /// tx = 0..7, keys 4·tx + j) hit 8 distinct 16-byte bank groups.</summary>
    private static void StoreProbabilities(ArrayView<Float4> p, int key, int rowVector, Float4 r0, Float4 r1, Float4 r2, Float4 r3)
    {
        int swizzled = rowVector ^ ((key >> 2) & 7);
        p[key * FlashTile.RowVectors + swizzled] = new Float4 { X = r0.X, Y = r1.X, Z = r2.X, W = r3.X };
        p[(key + 1) * FlashTile.RowVectors + swizzled] = new Float4 { X = r0.Y, Y = r1.Y, Z = r2.Y, W = r3.Y };
        p[(key + 2) * FlashTile.RowVectors + swizzled] = new Float4 { X = r0.Z, Y = r1.Z, Z = r2.Z, W = r3.Z };
        p[(key + 3) * FlashTile.RowVectors + swizzled] = new Float4 { X = r0.W, Y = r1.W, Z = r2.W, W = r3.W };
    }

    /// <summary>tile[d][r] = scale·src[head + (row0 + r)·D + d], zero past the sequence and the head dim: thread t
    /// takes row t, so the 32 lanes of a store write 32 consecutive words (its 4-float runs of global reads share
    /// cache lines).</summary>
    private static void StageTransposed(ArrayView<float> src, long head, int row0, AttentionArgs a, float scale, ArrayView<float> tile, int tid)
    {
        bool inside = row0 + tid < a.Seq;
        long start = head + (long)(row0 + tid) * a.Dim;
        for (int d = 0; d < FlashTile.Size; d++)
            tile[d * FlashTile.Size + tid] = inside && d < a.Dim ? scale * src[start + d] : 0f;
    }

    /// <summary>tile[r][d] = scale·src[head + (row0 + r)·D + d], zero past the sequence and the head dim (consecutive
    /// threads read and write consecutive d).</summary>
    private static void StageRows(ArrayView<float> src, long head, int row0, AttentionArgs a, float scale, ArrayView<float> tile, int tid)
    {
        for (int e = tid; e < FlashTile.Size * FlashTile.Size; e += FlashTile.Threads)
        {
            int r = e / FlashTile.Size, d = e - r * FlashTile.Size;
            tile[e] = row0 + r < a.Seq && d < a.Dim ? scale * src[head + (long)(row0 + r) * a.Dim + d] : 0f;
        }
    }

    /// <summary>Sums the row's 8 partial sums, writes O = acc / l over this thread's dims (4·tx + 0..3 and
    /// 32 + 4·tx + 0..3) and, from the tx = 0 thread, lse = m + log l.</summary>
    private static void FinishRow(ArrayView<float> output, ArrayView<float> lse, long head, long stats, AttentionArgs a,
        int row, int tx, float m, float l, Float4 oLow, Float4 oHigh)
    {
        l += Warp.ShuffleXor(l, 1);
        l += Warp.ShuffleXor(l, 2);
        l += Warp.ShuffleXor(l, 4);
        if (row >= a.Seq) return;
        float inverse = 1f / l;
        long start = head + (long)row * a.Dim;
        StoreDims(output, start, 4 * tx, a.Dim, Scaled(oLow, inverse));
        StoreDims(output, start, 32 + 4 * tx, a.Dim, Scaled(oHigh, inverse));
        if (tx == 0) lse[stats + row] = m + XMath.Log(l);
    }

    private static void StoreDims(ArrayView<float> output, long start, int d, int dim, Float4 v)
    {
        if (d < dim) output[start + d] = v.X;
        if (d + 1 < dim) output[start + d + 1] = v.Y;
        if (d + 2 < dim) output[start + d + 2] = v.Z;
        if (d + 3 < dim) output[start + d + 3] = v.W;
    }
}
