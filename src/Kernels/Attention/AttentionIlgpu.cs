using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Fused scaled-dot-product attention on an ILGPU accelerator, flash-attention style: no seq×seq matrix ever
// reaches global memory. Version 2 of the forward and of the backward (FlashAttention-2 block tiles,
// Attention/AttentionIlgpuV2.cs, Attention/AttentionBackwardIlgpuV2.cs) runs where the head dim is at most 64; this
// file holds version 1 of both. A group of W warps works on W rows of one (batch, head), one row per warp, and streams
// the other side of the product through shared memory in tiles of one key (or query) per lane:
// - forward: a warp per query row; lane j scores key j of the tile, the warp keeps an online softmax (running max,
//   per-lane partial sums rescaled when the max grows) and accumulates the weighted V rows;
// - backward, dQ: a warp per query row recomputes P = exp(s − lse) from the saved log-sum-exp;
// - backward, dK/dV: a warp per key row streams the query tiles (so every output row has one owner: no atomics,
//   deterministic).
// Dropout factors come from DropoutMask, the same hash as the CPU kernel, per (batch·head, query, key).
// Tile rows are padded to D + 1 floats so that the lanes' dot products (lane j reads row j) hit distinct banks.
public sealed partial class IlgpuBackend
{
    public struct AttentionArgs
    {
        public int BatchHeads, Seq, Dim;
        public float Scale;
        public DropoutMask Dropout;

        /// <summary>Row stride of a shared-memory tile.</summary>
        public readonly int TileStride => Dim + 1;
        public readonly long Head(int batchHead) => (long)batchHead * Seq * Dim;
    }

    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> AttentionForwardEntry = AttentionForwardKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> RowDotEntry = RowDotKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> AttentionQueryGradEntry = AttentionQueryGradKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionArgs> AttentionKeyValueGradEntry = AttentionKeyValueGradKernel;

    /// <summary>Shared memory a launch may request without opting in to more (the CUDA default limit).</summary>
    private const int AttentionSharedBytes = 48 * 1024;

    // ---- host side ----------------------------------------------------------------------------------------
    /// <summary>Runs the lab's version this backend uses (<see cref="IlgpuLaunchSizes.AttentionVersion"/>) where it
    /// fits the head dim, else version 1.</summary>
    public void AttentionForward(int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed,
        Buf q, Buf k, Buf v, Buf output, Buf lse) =>
        AttentionForwardVersion(Sizes.AttentionVersion == 2 && FlashFits(headDim) ? 2 : 1, batchHeads, seq, headDim, scale, dropout, seed, q, k, v, output, lse);

    /// <summary>Attention forward v1: a warp per query row (see the top of this file).</summary>
    private void AttentionForwardV1(int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed,
        Buf q, Buf k, Buf v, Buf output, Buf lse)
    {
        var args = Attention(batchHeads, seq, headDim, scale, dropout, seed, out long n);
        int tile = TileFloats(args);
        // Group: K and V tiles; per warp: the scaled query row, the output accumulator, the tile's weights.
        var launch = AttentionLaunch(args, tile, 2 * args.Dim + _accelerator.WarpSize);
        Kernel(AttentionForwardEntry)(
            launch, F(q, n), F(k, n), F(v, n), F(output, n), F(lse, (long)batchHeads * seq), args);
    }

    /// <summary>Runs the lab's backward version this backend uses (<see cref="IlgpuLaunchSizes.AttentionBackwardVersion"/>)
    /// where it fits the head dim, else version 1.</summary>
    public void AttentionBackward(int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed,
        Buf q, Buf k, Buf v, Buf output, Buf lse, Buf dOutput, Buf dq, Buf dk, Buf dv) =>
        AttentionBackwardVersion(Sizes.AttentionBackwardVersion == 2 && FlashBackwardFits(headDim) ? 2 : 1,
            batchHeads, seq, headDim, scale, dropout, seed, q, k, v, output, lse, dOutput, dq, dk, dv);

    /// <summary>The attention backward of the lab's version <paramref name="version"/> (src/Kernels/Lab/AttentionLab.cs).</summary>
    internal void AttentionBackwardVersion(int version, int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed,
        Buf q, Buf k, Buf v, Buf output, Buf lse, Buf dOutput, Buf dq, Buf dk, Buf dv)
    {
        if (batchHeads == 0 || seq == 0) return;
        if (version is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(version), version, "attention backward versions are 1 and 2");
        var args = Attention(batchHeads, seq, headDim, scale, dropout, seed, out long n);
        int rows = batchHeads * seq;
        // rowDot = rowsum(dO ∘ O), which equals rowsum(P̃ ∘ dO·Vᵀ) with or without dropout.
        using var rowDotStorage = Allocate(rows, zero: false);
        var rowDot = F(new Buf(rowDotStorage, 0), rows);
        Kernel(RowDotEntry)(
            GridStride(rows, Sizes.ElementGroup), F(dOutput, n), F(output, n), rowDot, rows, headDim);
        if (version == 2) AttentionBackwardV2(args, n, q, k, v, lse, dOutput, rowDot, dq, dk, dv);
        else AttentionBackwardV1(args, n, q, k, v, lse, dOutput, rowDot, dq, dk, dv);
    }

    /// <summary>Attention backward v1: a warp per query row for dQ, a warp per key row for dK and dV (see the top of
    /// this file).</summary>
    private void AttentionBackwardV1(AttentionArgs args, long n, Buf q, Buf k, Buf v, Buf lse, Buf dOutput, ArrayView<float> rowDot, Buf dq, Buf dk, Buf dv)
    {
        int warp = _accelerator.WarpSize, tile = TileFloats(args);
        var (qv, kv, vv, dov, lsev) = (F(q, n), F(k, n), F(v, n), F(dOutput, n), F(lse, (long)args.BatchHeads * args.Seq));
        // Group: K and V tiles; per warp: the scaled query row, the dO row, the dQ accumulator, the tile's dS.
        Kernel(AttentionQueryGradEntry)(
            AttentionLaunch(args, tile, 3 * args.Dim + warp), qv, kv, vv, dov, lsev, rowDot, F(dq, n), args);
        // Group: Q and dO tiles with their rows' lse and rowDot; per warp: the K and V rows, the dK and dV
        // accumulators, the tile's P̃ and dS.
        Kernel(AttentionKeyValueGradEntry)(
            AttentionLaunch(args, tile + 2 * warp, 4 * args.Dim + 2 * warp), qv, kv, vv, dov, lsev, rowDot, F(dk, n), F(dv, n), args);
    }

    private static AttentionArgs Attention(int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed, out long elements)
    {
        elements = (long)batchHeads * seq * headDim;
        RequireOneLaunch(elements, "attention");
        return new AttentionArgs { BatchHeads = batchHeads, Seq = seq, Dim = headDim, Scale = scale, Dropout = new DropoutMask(dropout, seed) };
    }

    /// <summary>Floats of the two shared tiles (one row per lane).</summary>
    private int TileFloats(AttentionArgs a) => 2 * _accelerator.WarpSize * a.TileStride;

    /// <summary>As many warps per group as the reduce group has (one query or key row each), fewer if their
    /// shared memory would not fit; groups stride over (batch·head, block of rows).</summary>
    private KernelConfig AttentionLaunch(AttentionArgs a, int groupFloats, int warpFloats)
    {
        long limit = Math.Min(AttentionSharedBytes, _accelerator.MaxSharedMemoryPerGroup) / sizeof(float);
        int warps = Sizes.ReduceGroup / _accelerator.WarpSize;
        while (warps > 1 && groupFloats + (long)warps * warpFloats > limit) warps--;
        long floats = groupFloats + (long)warps * warpFloats;
        if (floats > limit)
            throw new NotSupportedException($"attention with head dim {a.Dim} needs {floats * sizeof(float)} bytes of shared memory, more than {limit * sizeof(float)}");
        long items = (long)a.BatchHeads * ((a.Seq + warps - 1) / warps);
        if (items > int.MaxValue) throw new NotSupportedException($"attention over {a.BatchHeads} heads of {a.Seq} rows exceeds one ILGPU launch");
        return new KernelConfig(RowGroups(items), warps * _accelerator.WarpSize, SharedMemoryConfig.RequestDynamic<float>((int)floats));
    }

    // ---- kernels ------------------------------------------------------------------------------------------
    /// <summary>Online-softmax forward: out = Σ_j P̃_ij·v_j, lse_i = max_i + log Σ_j e^(s_ij − max_i).</summary>
    internal static void AttentionForwardKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> output, ArrayView<float> lse, AttentionArgs a)
    {
        int lanes = Warp.WarpSize, lane = Warp.LaneIdx, warps = Group.DimX / lanes;
        var (kTile, vTile, _, mine) = AttentionShared(a, 0, 2 * a.Dim + lanes);
        ArrayView<float> qRow = mine.SubView(0, a.Dim), acc = mine.SubView(a.Dim, a.Dim), weights = mine.SubView(2 * a.Dim, lanes);
        var maxOp = default(MaxReduction);
        int blocks = (a.Seq + warps - 1) / warps;
        for (int item = Grid.IdxX; item < a.BatchHeads * blocks; item += Grid.DimX)
        {
            int bh = item / blocks, row = (item - bh * blocks) * warps + Warp.WarpIdx;
            long head = a.Head(bh);
            bool active = row < a.Seq;   // uniform over the warp
            if (active)
            {
                LoadRow(q, head + (long)row * a.Dim, a.Scale, qRow, a);
                ClearRow(acc, a);
            }
            uint rowKey = a.Dropout.RowKey(bh, row);
            float max = float.NegativeInfinity, partialSum = 0f;
            for (int key0 = 0; key0 < a.Seq; key0 += lanes)
            {
                Group.Barrier();   // the previous tiles are consumed
                LoadTile(k, head, key0, a, 1f, kTile);
                LoadTile(v, head, key0, a, 1f, vTile);
                Group.Barrier();
                if (!active) continue;
                int key = key0 + lane;
                float s = key < a.Seq ? TileDot(qRow, kTile, lane, a) : float.NegativeInfinity;
                float newMax = MaxOrNaN(max, WarpAllReduce(maxOp, s));
                float decay = XMath.Exp(max - newMax);   // 0 on the first tile
                float p = key < a.Seq ? XMath.Exp(s - newMax) : 0f;
                partialSum = partialSum * decay + p;
                weights[lane] = a.Dropout.Active ? p * a.Dropout.Factor(rowKey, key) : p;
                Warp.Barrier();
                AccumulateRows(acc, decay, weights, vTile, XMath.Min(lanes, a.Seq - key0), a);
                max = newMax;
            }
            if (!active) continue;
            float sum = WarpAllReduce(default(SumReduction), partialSum), inverse = 1f / sum;
            long outRow = head + (long)row * a.Dim;
            for (int d = lane; d < a.Dim; d += lanes) output[outRow + d] = acc[d] * inverse;
            if (lane == 0) lse[(long)bh * a.Seq + row] = max + XMath.Log(sum);
        }
    }

    /// <summary>A thread per row: rowDot[r] = Σ_d dO[r, d]·O[r, d].</summary>
    internal static void RowDotKernel(ArrayView<float> dOutput, ArrayView<float> output, ArrayView<float> rowDot, int rows, int dim)
    {
        for (int r = Grid.GlobalIndex.X; r < rows; r = GridStrideNext(r, rows, GridStrideStep))
        {
            long start = (long)r * dim;
            float acc = 0f;
            for (int d = 0; d < dim; d++) acc += dOutput[start + d] * output[start + d];
            rowDot[r] = acc;
        }
    }

    /// <summary>dQ_i = scale·Σ_j dS_ij·k_j with dS_ij = P_ij·(Z_ij·dO_i·v_j − rowDot_i).</summary>
    internal static void AttentionQueryGradKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> dOutput, ArrayView<float> lse, ArrayView<float> rowDot, ArrayView<float> dq, AttentionArgs a)
    {
        int lanes = Warp.WarpSize, lane = Warp.LaneIdx, warps = Group.DimX / lanes;
        var (kTile, vTile, _, mine) = AttentionShared(a, 0, 3 * a.Dim + lanes);
        ArrayView<float> qRow = mine.SubView(0, a.Dim), acc = mine.SubView(a.Dim, a.Dim),
            dORow = mine.SubView(2 * a.Dim, a.Dim), grads = mine.SubView(3 * a.Dim, lanes);
        int blocks = (a.Seq + warps - 1) / warps;
        for (int item = Grid.IdxX; item < a.BatchHeads * blocks; item += Grid.DimX)
        {
            int bh = item / blocks, row = (item - bh * blocks) * warps + Warp.WarpIdx;
            long head = a.Head(bh), rowStart = head + (long)row * a.Dim, stat = (long)bh * a.Seq + row;
            bool active = row < a.Seq;
            float rowLse = 0f, delta = 0f;
            if (active)
            {
                LoadRow(q, rowStart, a.Scale, qRow, a);
                LoadRow(dOutput, rowStart, 1f, dORow, a);
                ClearRow(acc, a);
                rowLse = lse[stat];
                delta = rowDot[stat];
            }
            uint rowKey = a.Dropout.RowKey(bh, row);
            for (int key0 = 0; key0 < a.Seq; key0 += lanes)
            {
                Group.Barrier();
                LoadTile(k, head, key0, a, 1f, kTile);
                LoadTile(v, head, key0, a, 1f, vTile);
                Group.Barrier();
                if (!active) continue;
                int key = key0 + lane;
                float ds = 0f;
                if (key < a.Seq)
                {
                    float p = XMath.Exp(TileDot(qRow, kTile, lane, a) - rowLse);
                    float dp = TileDot(dORow, vTile, lane, a);
                    if (a.Dropout.Active) dp *= a.Dropout.Factor(rowKey, key);
                    ds = p * (dp - delta);
                }
                grads[lane] = ds;
                Warp.Barrier();
                AccumulateRows(acc, 1f, grads, kTile, XMath.Min(lanes, a.Seq - key0), a);
            }
            if (!active) continue;
            for (int d = lane; d < a.Dim; d += lanes) dq[rowStart + d] = a.Scale * acc[d];
        }
    }

    /// <summary>dV_j = Σ_i P̃_ij·dO_i and dK_j = scale·Σ_i dS_ij·q_i, a warp per key row j.</summary>
    internal static void AttentionKeyValueGradKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> dOutput, ArrayView<float> lse, ArrayView<float> rowDot, ArrayView<float> dk, ArrayView<float> dv, AttentionArgs a)
    {
        int lanes = Warp.WarpSize, lane = Warp.LaneIdx, warps = Group.DimX / lanes;
        var (qTile, dOTile, rowStats, mine) = AttentionShared(a, 2 * lanes, 4 * a.Dim + 2 * lanes);
        ArrayView<float> tileLse = rowStats.SubView(0, lanes), tileDot = rowStats.SubView(lanes, lanes);
        ArrayView<float> kRow = mine.SubView(0, a.Dim), dkAcc = mine.SubView(a.Dim, a.Dim), vRow = mine.SubView(2 * a.Dim, a.Dim),
            dvAcc = mine.SubView(3 * a.Dim, a.Dim), probs = mine.SubView(4 * a.Dim, lanes), grads = mine.SubView(4 * a.Dim + lanes, lanes);
        int blocks = (a.Seq + warps - 1) / warps;
        for (int item = Grid.IdxX; item < a.BatchHeads * blocks; item += Grid.DimX)
        {
            int bh = item / blocks, keyRow = (item - bh * blocks) * warps + Warp.WarpIdx;
            long head = a.Head(bh), rowStart = head + (long)keyRow * a.Dim;
            bool active = keyRow < a.Seq;
            if (active)
            {
                LoadRow(k, rowStart, 1f, kRow, a);
                LoadRow(v, rowStart, 1f, vRow, a);
                ClearRow(dkAcc, a);
                ClearRow(dvAcc, a);
            }
            for (int query0 = 0; query0 < a.Seq; query0 += lanes)
            {
                Group.Barrier();
                // The query tile is pre-scaled, so q̃·k is the forward's score and Σ dS·q̃ is already scale·Σ dS·q.
                LoadTile(q, head, query0, a, a.Scale, qTile);
                LoadTile(dOutput, head, query0, a, 1f, dOTile);
                for (int r = Group.IdxX; r < lanes; r += Group.DimX)
                {
                    long stat = (long)bh * a.Seq + query0 + r;
                    bool inside = query0 + r < a.Seq;
                    tileLse[r] = inside ? lse[stat] : 0f;
                    tileDot[r] = inside ? rowDot[stat] : 0f;
                }
                Group.Barrier();
                if (!active) continue;
                int query = query0 + lane;
                float kept = 0f, ds = 0f;
                if (query < a.Seq)
                {
                    float p = XMath.Exp(TileDot(kRow, qTile, lane, a) - tileLse[lane]);
                    float factor = a.Dropout.Active ? a.Dropout.Factor(a.Dropout.RowKey(bh, query), keyRow) : 1f;
                    kept = p * factor;
                    ds = p * (factor * TileDot(vRow, dOTile, lane, a) - tileDot[lane]);
                }
                probs[lane] = kept;
                grads[lane] = ds;
                Warp.Barrier();
                int count = XMath.Min(lanes, a.Seq - query0);
                AccumulateRows(dvAcc, 1f, probs, dOTile, count, a);
                AccumulateRows(dkAcc, 1f, grads, qTile, count, a);
            }
            if (!active) continue;
            for (int d = lane; d < a.Dim; d += lanes)
            {
                dk[rowStart + d] = dkAcc[d];
                dv[rowStart + d] = dvAcc[d];
            }
        }
    }

    /// <summary>The dynamic shared memory of an attention kernel (sized by <see cref="AttentionLaunch"/>): two
    /// tiles of one row per lane, <paramref name="extraFloats"/> more for the group, then
    /// <paramref name="warpFloats"/> per warp. Returns the tiles, the extra part and this warp's part.</summary>
    private static (ArrayView<float> First, ArrayView<float> Second, ArrayView<float> Extra, ArrayView<float> Warp) AttentionShared(
        AttentionArgs a, int extraFloats, int warpFloats)
    {
        var shared = SharedMemory.GetDynamic<float>();
        int tile = Warp.WarpSize * a.TileStride, groupFloats = 2 * tile + extraFloats;
        return (shared.SubView(0, tile), shared.SubView(tile, tile), shared.SubView(2 * tile, XMath.Max(extraFloats, 1)),
            shared.SubView(groupFloats + Warp.WarpIdx * warpFloats, warpFloats));
    }

    /// <summary>This warp's copy of one row: row[d] = scale·src[start + d] (lane-strided; the group barrier
    /// before the next tile makes it visible to the other lanes).</summary>
    private static void LoadRow(ArrayView<float> src, long start, float scale, ArrayView<float> row, AttentionArgs a)
    {
        for (int d = Warp.LaneIdx; d < a.Dim; d += Warp.WarpSize) row[d] = scale * src[start + d];
    }

    /// <summary>Zeroes an accumulator row (each lane owns columns lane, lane + warp size, …, as in <see cref="AccumulateRows"/>).</summary>
    private static void ClearRow(ArrayView<float> acc, AttentionArgs a)
    {
        for (int d = Warp.LaneIdx; d < a.Dim; d += Warp.WarpSize) acc[d] = 0f;
    }

    /// <summary>tile[r][d] = scale·src[head + (row0 + r)·D + d] for one row per lane, zero past the sequence
    /// (the whole group loads; consecutive threads read consecutive addresses).</summary>
    private static void LoadTile(ArrayView<float> src, long head, int row0, AttentionArgs a, float scale, ArrayView<float> tile)
    {
        int n = Warp.WarpSize * a.Dim;
        for (int e = Group.IdxX; e < n; e += Group.DimX)
        {
            int r = e / a.Dim, d = e - r * a.Dim;
            tile[r * a.TileStride + d] = row0 + r < a.Seq ? scale * src[head + (long)(row0 + r) * a.Dim + d] : 0f;
        }
    }

    /// <summary>Σ_d row[d]·tile[r][d].</summary>
    private static float TileDot(ArrayView<float> row, ArrayView<float> tile, int r, AttentionArgs a)
    {
        int at = r * a.TileStride;
        float sum = 0f;
        for (int d = 0; d < a.Dim; d++) sum += row[d] * tile[at + d];
        return sum;
    }

    /// <summary>acc[d] = acc[d]·decay + Σ_{r &lt; count} weights[r]·tile[r][d] over this lane's columns d.</summary>
    private static void AccumulateRows(ArrayView<float> acc, float decay, ArrayView<float> weights, ArrayView<float> tile, int count, AttentionArgs a)
    {
        for (int d = Warp.LaneIdx; d < a.Dim; d += Warp.WarpSize)
        {
            float sum = acc[d] * decay;
            for (int r = 0; r < count; r++) sum += weights[r] * tile[r * a.TileStride + d];
            acc[d] = sum;
        }
    }
}
