using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

// Fused scaled-dot-product attention, flash-attention style: the work is split into (batch-head, block of query
// rows) items; an item computes its block's full score rows (block × seq) in per-thread scratch, so no seq×seq
// matrix exists and the backward recomputes the probabilities from the saved log-sum-exp.
public sealed partial class CpuBackend
{
    public void AttentionForward(int batchHeads, int seq, int headDim, float scale, Buf q, Buf k, Buf v, Buf output, Buf lse)
    {
        if (batchHeads == 0 || seq == 0) return;
        var job = new AttentionJob(batchHeads, seq, headDim, scale, q, k, v, output, lse);
        CpuParallel.For(job.Items, job.ForwardRange, job.FlopsPerItem(gemms: 2));
    }

    public void AttentionBackward(int batchHeads, int seq, int headDim, float scale, Buf q, Buf k, Buf v, Buf output,
        Buf lse, Buf dOutput, Buf dq, Buf dk, Buf dv)
    {
        if (batchHeads == 0 || seq == 0) return;
        var job = new AttentionJob(batchHeads, seq, headDim, scale, q, k, v, output, lse);
        var flags = BufferPool<int>.Shared.Rent(batchHeads);
        try
        {
            job.SetGradients(dOutput, dq, dk, dv, flags);
            CpuParallel.For(job.Items, job.BackwardRange, job.FlopsPerItem(gemms: 5));
        }
        finally { BufferPool<int>.Shared.Return(flags); }
    }

    /// <summary>One attention call: the buffers, the blocking, and the per-worker loops of forward and backward.</summary>
    private sealed unsafe class AttentionJob
    {
        /// <summary>Query rows per work item: a block's score rows (QueryBlock × seq) stay in L1/L2 while they are
        /// produced and consumed.</summary>
        private const int QueryBlock = 32;

        /// <summary>Serialises the hand-over of per-worker dK/dV partial sums of a head that two workers share.</summary>
        private static readonly Lock FlushGate = new();

        private readonly int _heads, _seq, _dim, _blocks;
        /// <summary>Key count rounded up to whole 16-column tiles: the row stride of transposed K/V and of the score scratch.</summary>
        private readonly int _seqPadded;
        private readonly float _scale;
        private readonly Buf _q, _k, _v, _out, _lse;
        private Buf _dOut, _dq, _dk, _dv;
        /// <summary>Per head: 1 once some worker has written its dK/dV (later workers add to it).</summary>
        private int[] _headWritten = Array.Empty<int>();

        public AttentionJob(int heads, int seq, int dim, float scale, Buf q, Buf k, Buf v, Buf output, Buf lse)
        {
            (_heads, _seq, _dim, _scale) = (heads, seq, dim, scale);
            (_q, _k, _v, _out, _lse) = (q, k, v, output, lse);
            _blocks = (seq + QueryBlock - 1) / QueryBlock;
            _seqPadded = (seq + 15) & ~15;
        }

        public int Items => _heads * _blocks;

        public double FlopsPerItem(int gemms) => 2.0 * gemms * Math.Min(QueryBlock, _seq) * _seq * Math.Max(_dim, 1);

        public void SetGradients(Buf dOut, Buf dq, Buf dk, Buf dv, int[] headWritten)
        {
            (_dOut, _dq, _dk, _dv) = (dOut, dq, dk, dv);
            _headWritten = headWritten;
            Array.Clear(headWritten, 0, _heads);
        }

        private (int head, int row0, int rows) Item(int item)
        {
            int head = item / _blocks, row0 = item % _blocks * QueryBlock;
            return (head, row0, Math.Min(QueryBlock, _seq - row0));
        }

        private static float* At(float* basePtr, Buf b) => basePtr + b.Offset;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void ForwardRange(int first, int end)
        {
            var pool = BufferPool<float>.Shared;
            float[] kTransposed = pool.Rent(_dim * _seqPadded), scoreRows = pool.Rent(QueryBlock * _seqPadded);
            try
            {
                fixed (float* qArr = Arr(_q), kArr = Arr(_k), vArr = Arr(_v), oArr = Arr(_out), lArr = Arr(_lse), kt = kTransposed, s = scoreRows)
                {
                    float* q = At(qArr, _q), k = At(kArr, _k), v = At(vArr, _v), o = At(oArr, _out), lse = At(lArr, _lse);
                    float* inverseSums = stackalloc float[QueryBlock];
                    int packedHead = -1;
                    long headSize = (long)_seq * _dim;
                    for (int item = first; item < end; item++)
                    {
                        var (head, row0, rows) = Item(item);
                        long h = head * headSize, rowOff = h + (long)row0 * _dim;
                        if (head != packedHead) { TransposePadded(k + h, kt); packedHead = head; }

                        Tiles.Gemm(rows, _seqPadded, _dim, q + rowOff, _dim, 1, kt, _seqPadded, s, _seqPadded, accumulate: false);
                        for (int i = 0; i < rows; i++)
                        {
                            float sum = ExpShiftedRowInPlace(s + (long)i * _seqPadded, _seq, _scale, out float max);
                            lse[(long)head * _seq + row0 + i] = max + MathF.Log(sum);
                            inverseSums[i] = 1f / sum;
                        }
                        // Normalising the (rows × dim) output is cheaper than normalising the (rows × seq) weights.
                        Tiles.Gemm(rows, _dim, _seq, s, _seqPadded, 1, v + h, _dim, o + rowOff, _dim, accumulate: false);
                        for (int i = 0; i < rows; i++)
                        {
                            var outRow = new Span<float>(o + rowOff + (long)i * _dim, _dim);
                            TensorPrimitives.Multiply(outRow, inverseSums[i], outRow);
                        }
                    }
                }
            }
            finally { pool.Return(kTransposed); pool.Return(scoreRows); }
        }

        // With P = softmax(scale·Q·Kᵀ) and dS = P ∘ (dO·Vᵀ − rowsum(dO ∘ O))·scale:
        // dQ = dS·K (per query block, owned by the item), dV = Σ_blocks Pᵀ·dO and dK = Σ_blocks dSᵀ·Q (per head,
        // accumulated in worker scratch and flushed when the worker leaves the head).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void BackwardRange(int first, int end)
        {
            var pool = BufferPool<float>.Shared;
            int transposedSize = _dim * _seqPadded, blockSize = QueryBlock * _seqPadded, headSize = _seq * _dim;
            float[] kTransposed = pool.Rent(transposedSize), vTransposed = pool.Rent(transposedSize);
            float[] probRows = pool.Rent(blockSize), gradRows = pool.Rent(blockSize);
            float[] dkPartial = pool.Rent(headSize), dvPartial = pool.Rent(headSize);
            try
            {
                fixed (float* qArr = Arr(_q), kArr = Arr(_k), vArr = Arr(_v), oArr = Arr(_out), lArr = Arr(_lse),
                       doArr = Arr(_dOut), dqArr = Arr(_dq), dkArr = Arr(_dk), dvArr = Arr(_dv),
                       kt = kTransposed, vt = vTransposed, p = probRows, ds = gradRows, dkAcc = dkPartial, dvAcc = dvPartial)
                {
                    float* q = At(qArr, _q), k = At(kArr, _k), v = At(vArr, _v), o = At(oArr, _out), lse = At(lArr, _lse);
                    float* dO = At(doArr, _dOut), dq = At(dqArr, _dq), dk = At(dkArr, _dk), dv = At(dvArr, _dv);
                    int packedHead = -1;
                    for (int item = first; item < end; item++)
                    {
                        var (head, row0, rows) = Item(item);
                        long h = (long)head * headSize, rowOff = h + (long)row0 * _dim;
                        if (head != packedHead)
                        {
                            if (packedHead >= 0) FlushHeadGradients(packedHead, dkAcc, dvAcc, dk, dv);
                            TransposePadded(k + h, kt);
                            TransposePadded(v + h, vt);
                            new Span<float>(dkAcc, headSize).Clear();
                            new Span<float>(dvAcc, headSize).Clear();
                            packedHead = head;
                        }

                        Tiles.Gemm(rows, _seqPadded, _dim, q + rowOff, _dim, 1, kt, _seqPadded, p, _seqPadded, accumulate: false);
                        Tiles.Gemm(rows, _seqPadded, _dim, dO + rowOff, _dim, 1, vt, _seqPadded, ds, _seqPadded, accumulate: false);
                        for (int i = 0; i < rows; i++)
                        {
                            long r = rowOff + (long)i * _dim;
                            float rowDot = TensorPrimitives.Dot(new ReadOnlySpan<float>(dO + r, _dim), new ReadOnlySpan<float>(o + r, _dim));
                            SoftmaxGradRowInPlace(p + (long)i * _seqPadded, ds + (long)i * _seqPadded, _seq, _scale,
                                lse[(long)head * _seq + row0 + i], rowDot);
                        }
                        Tiles.Gemm(rows, _dim, _seq, ds, _seqPadded, 1, k + h, _dim, dq + rowOff, _dim, accumulate: false);
                        // Pᵀ and dSᵀ are read in place: row stride 1, column stride seqPadded.
                        Tiles.Gemm(_seq, _dim, rows, p, 1, _seqPadded, dO + rowOff, _dim, dvAcc, _dim, accumulate: true);
                        Tiles.Gemm(_seq, _dim, rows, ds, 1, _seqPadded, q + rowOff, _dim, dkAcc, _dim, accumulate: true);
                    }
                    if (packedHead >= 0) FlushHeadGradients(packedHead, dkAcc, dvAcc, dk, dv);
                }
            }
            finally
            {
                pool.Return(kTransposed); pool.Return(vTransposed); pool.Return(probRows);
                pool.Return(gradRows); pool.Return(dkPartial); pool.Return(dvPartial);
            }
        }

        /// <summary>Hands a worker's dK/dV sums for one head to the outputs: the first worker copies (so the outputs
        /// need no zeroing), a worker that shared the head adds.</summary>
        private void FlushHeadGradients(int head, float* dkAcc, float* dvAcc, float* dk, float* dv)
        {
            int n = _seq * _dim;
            long h = (long)head * n;
            var dkOut = new Span<float>(dk + h, n); var dvOut = new Span<float>(dv + h, n);
            var dkSum = new ReadOnlySpan<float>(dkAcc, n); var dvSum = new ReadOnlySpan<float>(dvAcc, n);
            lock (FlushGate)
            {
                if (_headWritten[head] == 0) { dkSum.CopyTo(dkOut); dvSum.CopyTo(dvOut); _headWritten[head] = 1; }
                else { TensorPrimitives.Add(dkOut, dkSum, dkOut); TensorPrimitives.Add(dvOut, dvSum, dvOut); }
            }
        }

        /// <summary>(seq, dim) → (dim, seqPadded) with zero columns past seq, so score GEMMs run whole 16-wide tiles.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void TransposePadded(float* src, float* dst)
        {
            int seq8 = Avx.IsSupported ? _seq & ~7 : 0, dim8 = Avx.IsSupported ? _dim & ~7 : 0;
            for (int j = 0; j < seq8; j += 8)
                for (int d = 0; d < dim8; d += 8)
                    Transpose8x8(src + (long)j * _dim + d, _dim, dst + (long)d * _seqPadded + j, _seqPadded);
            for (int d = 0; d < _dim; d++)
            {
                float* row = dst + (long)d * _seqPadded;
                for (int j = d < dim8 ? seq8 : 0; j < _seq; j++) row[j] = src[(long)j * _dim + d];
                for (int j = _seq; j < _seqPadded; j++) row[j] = 0f;
            }
        }

        /// <summary>Transposes an 8×8 block (rows ldSrc apart) into dst (rows ldDst apart) in registers.</summary>
        private static void Transpose8x8(float* src, nint ldSrc, float* dst, nint ldDst)
        {
            Vector256<float> r0 = Avx.LoadVector256(src), r1 = Avx.LoadVector256(src + ldSrc),
                r2 = Avx.LoadVector256(src + 2 * ldSrc), r3 = Avx.LoadVector256(src + 3 * ldSrc),
                r4 = Avx.LoadVector256(src + 4 * ldSrc), r5 = Avx.LoadVector256(src + 5 * ldSrc),
                r6 = Avx.LoadVector256(src + 6 * ldSrc), r7 = Avx.LoadVector256(src + 7 * ldSrc);
            // Interleave pairs of rows, then pairs of pairs (within 128-bit lanes), then swap lanes.
            Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3),
                t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
            Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE),
                u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
            Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
            Avx.Store(dst + ldDst, Avx.Permute2x128(u1, u5, 0x20));
            Avx.Store(dst + 2 * ldDst, Avx.Permute2x128(u2, u6, 0x20));
            Avx.Store(dst + 3 * ldDst, Avx.Permute2x128(u3, u7, 0x20));
            Avx.Store(dst + 4 * ldDst, Avx.Permute2x128(u0, u4, 0x31));
            Avx.Store(dst + 5 * ldDst, Avx.Permute2x128(u1, u5, 0x31));
            Avx.Store(dst + 6 * ldDst, Avx.Permute2x128(u2, u6, 0x31));
            Avx.Store(dst + 7 * ldDst, Avx.Permute2x128(u3, u7, 0x31));
        }

        /// <summary>Replaces raw scores s by exp(scale·s − max) (unnormalised softmax) and returns their sum;
        /// <paramref name="max"/> is the row's max of scale·s, so the log-sum-exp is max + log(sum).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float ExpShiftedRowInPlace(float* row, int n, float scale, out float max)
        {
            // The max of scale·s (not of s) keeps the shift right for any sign of scale.
            var maxV = Vector256.Create(float.NegativeInfinity);
            var scaleV = Vector256.Create(scale);
            int j = 0;
            for (; j <= n - 8; j += 8) maxV = Vector256.Max(maxV, Vector256.Load(row + j) * scaleV);
            max = float.NegativeInfinity;
            for (int e = 0; e < 8; e++) max = MathF.Max(max, maxV[e]);
            for (; j < n; j++) max = MathF.Max(max, row[j] * scale);

            var shiftV = Vector256.Create(-max);
            var sumV = Vector256<float>.Zero;
            for (j = 0; j <= n - 8; j += 8)
            {
                var e = SimdMath.Exp(Vector256.FusedMultiplyAdd(Vector256.Load(row + j), scaleV, shiftV));
                e.Store(row + j);
                sumV += e;
            }
            float sum = Vector256.Sum(sumV);
            for (; j < n; j++) { float e = MathF.Exp(MathF.FusedMultiplyAdd(row[j], scale, -max)); row[j] = e; sum += e; }
            return sum;
        }

        /// <summary>From raw scores s and dP = dO·vᵀ of one query row: s ← P = exp(scale·s − lse) and
        /// dP ← dS = P·(dP − rowDot)·scale, where rowDot = dO·o (= Σ P·dP).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void SoftmaxGradRowInPlace(float* s, float* dp, int n, float scale, float lse, float rowDot)
        {
            var scaleV = Vector256.Create(scale);
            var shiftV = Vector256.Create(-lse);
            var dotV = Vector256.Create(rowDot);
            int j = 0;
            for (; j <= n - 8; j += 8)
            {
                var p = SimdMath.Exp(Vector256.FusedMultiplyAdd(Vector256.Load(s + j), scaleV, shiftV));
                p.Store(s + j);
                (p * (Vector256.Load(dp + j) - dotV) * scaleV).Store(dp + j);
            }
            for (; j < n; j++)
            {
                float p = MathF.Exp(MathF.FusedMultiplyAdd(s[j], scale, -lse));
                s[j] = p;
                dp[j] = p * (dp[j] - rowDot) * scale;
            }
        }

        /// <summary>Small strided GEMMs on L1/L2-resident blocks for the attention kernels.</summary>
        private static class Tiles
        {
            /// <summary>C[m×n] (+)= A·B with A(r, p) = a[r·rsA + p·csA] (so Aᵀ is read in place), B row-major (ldb),
            /// C row-major (ldc). Column tiles are the outer loop so a B panel (k × 16) stays in L1 across row strips.</summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void Gemm(int m, int n, int k, float* a, nint rsA, nint csA, float* b, nint ldb, float* c, nint ldc, bool accumulate)
            {
                int wide = n & ~15;
                for (int j = 0; j < wide; j += 16)
                    for (int i = 0; i < m; i += 4)
                        Tile4x16(Math.Min(4, m - i), k, a + i * rsA, rsA, csA, b + j, ldb, c + i * ldc + j, ldc, accumulate);
                for (int i = 0; i < m; i++)
                    for (int j = wide; j < n; j++)
                    {
                        float sum = 0f;
                        for (int p = 0; p < k; p++) sum = MathF.FusedMultiplyAdd(a[i * rsA + p * csA], b[p * ldb + j], sum);
                        float* cij = c + i * ldc + j;
                        *cij = accumulate ? *cij + sum : sum;
                    }
            }

            /// <summary>4 rows × 16 columns in 8 accumulators (enough independent FMA chains for both FMA pipes).
            /// With fewer rows the missing ones re-read row 0 and are not stored, so one kernel covers the tail.</summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static void Tile4x16(int rows, int k, float* a, nint rsA, nint csA, float* b, nint ldb, float* c, nint ldc, bool accumulate)
            {
                float* a0 = a, a1 = rows > 1 ? a + rsA : a, a2 = rows > 2 ? a + 2 * rsA : a, a3 = rows > 3 ? a + 3 * rsA : a;
                Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
                Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
                if (accumulate)
                {
                    c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
                    if (rows > 1) { c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8); }
                    if (rows > 2) { c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8); }
                    if (rows > 3) { c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8); }
                }
                nint ap = 0;
                for (int p = 0; p < k; p++, ap += csA, b += ldb)
                {
                    var b0 = Vector256.Load(b); var b1 = Vector256.Load(b + 8);
                    var x = Vector256.Create(a0[ap]);
                    c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
                    x = Vector256.Create(a1[ap]);
                    c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
                    x = Vector256.Create(a2[ap]);
                    c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
                    x = Vector256.Create(a3[ap]);
                    c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
                }
                c00.Store(c); c01.Store(c + 8);
                if (rows > 1) { c10.Store(c + ldc); c11.Store(c + ldc + 8); }
                if (rows > 2) { c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8); }
                if (rows > 3) { c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8); }
            }
        }
    }
}
