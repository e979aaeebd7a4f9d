using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

/// <summary>A row-major matrix operand seen through an optional transpose: element (i, j) of op(X) is
/// P[i·Ld + j], or P[j·Ld + i] when Trans. A view may instead take the start of each stored row from a table
/// (Rows): op(X)(i, j) = P[Rows[i] + j], or P[Rows[j] + i] when Trans. The implicit-GEMM convolution reads its
/// patch matrix (forward) and its transpose (weight gradient) as shifted windows of the input this way.</summary>
internal readonly unsafe struct MatrixView(float* p, int ld, bool trans, long* rows = null)
{
    public readonly float* P = p;
    public readonly int Ld = ld;
    public readonly bool Trans = trans;
    public readonly long* Rows = rows;

    public float this[int i, int j] => Trans ? Row(j)[i] : Row(i)[j];

    /// <summary>Start of stored row i (row i of op(X), or column i when Trans).</summary>
    public float* Row(int i) => Rows != null ? P + Rows[i] : P + (long)i * Ld;

    /// <summary>The view whose (0, 0) is this view's (i, j).</summary>
    public MatrixView At(int i, int j) =>
        Rows != null ? (Trans ? new(P + i, Ld, true, Rows + j) : new(P + j, Ld, false, Rows + i))
            : new(Trans ? P + (long)j * Ld + i : P + (long)i * Ld + j, Ld, Trans);
}

/// <summary>
/// Single-threaded SGEMM, C = alpha·op(A)·op(B) + beta·C, in the GotoBLAS/BLIS scheme: B is packed into
/// KC×NR column panels (one panel streams from L1), A into MR×KC row panels (a block of them sits in L2), and a
/// 6×NR register tile of FMAs does the arithmetic: 6×16 with AVX2 (ymm), 6×32 where AVX-512 is available (zmm;
/// Zen 4/5 and recent Xeons, where the 512-bit FMAs double the throughput). Transposes are absorbed by the packing, so the micro-kernel
/// only ever sees one layout. Callers split work over threads; see <see cref="CpuBackend.Gemm"/>.
/// </summary>
internal static unsafe class Sgemm
{
    // Micro-tile: 6 rows × 2 vectors = 12 accumulators + 2 B vectors + 1 A broadcast (15 of the 16 ymm registers;
    // with AVX-512 the same shape in zmm registers covers 32 columns).
    public const int MR = 6;
    public static readonly int NR = Avx512F.IsSupported ? 32 : 16;
    // Cache blocks for Zen 3 (32 KB L1d, 512 KB L2 per core): a KC×NR B panel is 16 KB (L1), an MC×KC A block
    // 144 KB (L2), a KC×NC B block 4 MB (L3, 32 MB shared).
    public const int KC = 256, MC = 144, NC = 4096;
    /// <summary>Below this many multiply-adds the unpacked loops are as fast (measured: packing already wins at
    /// 16³, where the scalar loops take ~3 µs and the packed path ~0.4 µs).</summary>
    public const long SmallMacs = 2048;

    /// <summary>Floats of scratch <see cref="Run"/> needs per thread for packed A and packed B (each includes
    /// slack so the panels can start on a 64-byte boundary, and for PackA's overhanging stores).</summary>
    public const int PackedALength = MC * KC + 32, PackedBLength = KC * NC + 32;

    public static bool Vectorized => Fma.IsSupported && Avx2.IsSupported;

    /// <summary>C (m×n, row stride ldc) = alpha·op(A)·op(B) + beta·C. beta 0 never reads C. packA/packB are
    /// scratch of <see cref="PackedALength"/>/<see cref="PackedBLength"/> floats (unused on the small path).</summary>
    public static void Run(int m, int n, int k, MatrixView a, MatrixView b, float* c, int ldc, float alpha, float beta,
        float* packA, float* packB)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0) { ScaleC(m, n, c, ldc, beta); return; }
        if (!Vectorized || (long)m * n * k < SmallMacs) { Simple(m, n, k, a, b, c, ldc, alpha, beta); return; }

        float* ap = Align64(packA), bp = Align64(packB);
        int kBlocks = CeilDiv(k, KC), kc0 = CeilDiv(k, kBlocks);       // even K blocks: no thin trailing block
        int mBlocks = CeilDiv(m, MC), mc0 = RoundUp(CeilDiv(m, mBlocks), MR);
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int pc = 0; pc < k; pc += kc0)
            {
                int kc = Math.Min(kc0, k - pc);
                float blockBeta = pc == 0 ? beta : 1f;                  // later K blocks accumulate
                PackB(b.At(pc, jc), kc, nc, bp);
                for (int ic = 0; ic < m; ic += mc0)
                {
                    int mc = Math.Min(mc0, m - ic);
                    PackA(a.At(ic, pc), mc, kc, ap);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        float* bPanel = bp + (long)jr * kc;
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            float* cTile = c + (long)(ic + ir) * ldc + jc + jr;
                            int mr = Math.Min(MR, mc - ir);
                            if (mr == MR && nr == NR) MicroKernel(kc, ap + ir * kc, bPanel, cTile, ldc, alpha, blockBeta);
                            else EdgeTile(kc, ap + ir * kc, bPanel, cTile, ldc, alpha, blockBeta, mr, nr);
                        }
                    }
                }
            }
        }
    }

    // ---- packing ------------------------------------------------------------------------------------------------

    /// <summary>op(A)[0..mc, 0..kc] → row panels of MR rows, each stored k-major (MR floats per k), zero-padded to
    /// a multiple of MR rows so the micro-kernel never branches.</summary>
    private static void PackA(MatrixView a, int mc, int kc, float* dst)
    {
        for (int r0 = 0; r0 < mc; r0 += MR, dst += MR * kc)
        {
            int rows = Math.Min(MR, mc - r0);
            if (a.Trans)
            {
                // Stored K×M: the MR values of one k are contiguous.
                float* src = a.P + r0;
                for (int p = 0; p < kc; p++, src += a.Ld)
                {
                    float* d = dst + p * MR;
                    for (int r = 0; r < rows; r++) d[r] = src[r];
                    for (int r = rows; r < MR; r++) d[r] = 0f;
                }
            }
            else
            {
                // Stored M×K: transpose 6-row × 8-k blocks. Each store writes 8 floats at stride MR = 6, so its last
                // two (the zero rows) are overwritten by the next k; the final block spills 2 floats into the next
                // panel (written after) or into the scratch slack.
                float* src = a.P + (long)r0 * a.Ld;
                int p = 0;
                if (rows == MR)
                    for (; p + 8 <= kc; p += 8)
                    {
                        float* s = src + p;
                        TransposeStore8x8(Avx.LoadVector256(s), Avx.LoadVector256(s + a.Ld), Avx.LoadVector256(s + 2L * a.Ld),
                            Avx.LoadVector256(s + 3L * a.Ld), Avx.LoadVector256(s + 4L * a.Ld), Avx.LoadVector256(s + 5L * a.Ld),
                            Vector256<float>.Zero, Vector256<float>.Zero, dst + p * MR, MR);
                    }
                for (; p < kc; p++)
                {
                    float* d = dst + p * MR;
                    for (int r = 0; r < rows; r++) d[r] = src[(long)r * a.Ld + p];
                    for (int r = rows; r < MR; r++) d[r] = 0f;
                }
            }
        }
    }

    /// <summary>op(B)[0..kc, 0..nc] → column panels of NR columns, each stored k-major (NR floats per k),
    /// zero-padded to a multiple of NR columns.</summary>
    private static void PackB(MatrixView b, int kc, int nc, float* dst)
    {
        if (b.Trans && b.Rows != null) { PackTransposedRows(b, kc, nc, dst); return; }
        for (int c0 = 0; c0 < nc; c0 += NR, dst += NR * kc)
        {
            int cols = Math.Min(NR, nc - c0);
            if (!b.Trans)
            {
                // Stored K×N: one k's NR values are contiguous.
                if (cols == NR)
                    for (int p = 0; p < kc; p++)
                    {
                        float* src = b.Row(p) + c0;
                        for (int j0 = 0; j0 < NR; j0 += 8) Avx.Store(dst + p * NR + j0, Avx.LoadVector256(src + j0));
                    }
                else
                    for (int p = 0; p < kc; p++)
                    {
                        float* src = b.Row(p) + c0;
                        float* d = dst + p * NR;
                        for (int j = 0; j < cols; j++) d[j] = src[j];
                        for (int j = cols; j < NR; j++) d[j] = 0f;
                    }
            }
            else
            {
                // Stored N×K: column j of op(B) is a contiguous row; transpose 8×8 blocks into the panel.
                int p = 0;
                if (cols == NR)
                    for (; p + 8 <= kc; p += 8)
                    {
                        float* src = b.P + (long)c0 * b.Ld + p;
                        for (int j0 = 0; j0 < NR; j0 += 8) Transpose8x8(src + (long)j0 * b.Ld, b.Ld, dst + p * NR + j0, NR);
                    }
                for (; p < kc; p++)
                {
                    float* d = dst + p * NR;
                    for (int j = 0; j < cols; j++) d[j] = b.P[(long)(c0 + j) * b.Ld + p];
                    for (int j = cols; j < NR; j++) d[j] = 0f;
                }
            }
        }
    }

    /// <summary><see cref="PackB"/> for a transposed view with a row table: column j of op(B) is the contiguous
    /// run at P + Rows[j] (the conv weight gradient's taps), transposed 8×8 blocks at a time.</summary>
    private static void PackTransposedRows(MatrixView b, int kc, int nc, float* dst)
    {
        for (int c0 = 0; c0 < nc; c0 += NR, dst += NR * kc)
        {
            int cols = Math.Min(NR, nc - c0);
            int p = 0;
            if (cols == NR)
                for (; p + 8 <= kc; p += 8)
                    for (int j0 = 0; j0 < NR; j0 += 8)
                    {
                        float* s = b.P + p;
                        long* r = b.Rows + c0 + j0;
                        TransposeStore8x8(Avx.LoadVector256(s + r[0]), Avx.LoadVector256(s + r[1]), Avx.LoadVector256(s + r[2]),
                            Avx.LoadVector256(s + r[3]), Avx.LoadVector256(s + r[4]), Avx.LoadVector256(s + r[5]),
                            Avx.LoadVector256(s + r[6]), Avx.LoadVector256(s + r[7]), dst + p * NR + j0, NR);
                    }
            for (; p < kc; p++)
            {
                float* d = dst + p * NR;
                for (int j = 0; j < cols; j++) d[j] = b.Row(c0 + j)[p];
                for (int j = cols; j < NR; j++) d[j] = 0f;
            }
        }
    }

    /// <summary>dst[j·ldd + i] = src[i·lds + j] for an 8×8 block.</summary>
    private static void Transpose8x8(float* src, int lds, float* dst, int ldd) =>
        TransposeStore8x8(Avx.LoadVector256(src), Avx.LoadVector256(src + lds), Avx.LoadVector256(src + 2L * lds),
            Avx.LoadVector256(src + 3L * lds), Avx.LoadVector256(src + 4L * lds), Avx.LoadVector256(src + 5L * lds),
            Avx.LoadVector256(src + 6L * lds), Avx.LoadVector256(src + 7L * lds), dst, ldd);

    /// <summary>Stores the transpose of the 8×8 block whose rows are r0..r7: dst[j·ldd + i] = r_i[j], j ascending.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposeStore8x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        Vector256<float> r4, Vector256<float> r5, Vector256<float> r6, Vector256<float> r7, float* dst, int ldd)
    {
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44); var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44); var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44); var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44); var s7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(dst + 2L * ldd, Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(dst + 3L * ldd, Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(dst + 4L * ldd, Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(dst + 5L * ldd, Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(dst + 6L * ldd, Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(dst + 7L * ldd, Avx.Permute2x128(s3, s7, 0x31));
    }

    // ---- micro-kernels ------------------------------------------------------------------------------------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MicroKernel(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        if (NR == 32) Kernel6x32(kc, a, b, c, ldc, alpha, beta);
        else Kernel6x16(kc, a, b, c, ldc, alpha, beta);
    }

    /// <summary>The AVX-512 tile: 6×32 of C, the same scheme as <see cref="Kernel6x16"/> with zmm registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x32(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int i = 0; i < MR; i++) { Sse.Prefetch0(c + (long)i * ldc); Sse.Prefetch0(c + (long)i * ldc + 16); Sse.Prefetch0(c + (long)i * ldc + 31); }
        for (int p = 0; p < kc; p++, a += MR, b += 32)
        {
            var b0 = Vector512.LoadAligned(b);
            var b1 = Vector512.LoadAligned(b + 16);
            var ai = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(ai, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(ai, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(ai, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(ai, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(ai, b0, c40); c41 = Avx512F.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(ai, b0, c50); c51 = Avx512F.FusedMultiplyAdd(ai, b1, c51);
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        Finish512(c, c00, c01, va, vb, beta); Finish512(c + ldc, c10, c11, va, vb, beta); Finish512(c + 2L * ldc, c20, c21, va, vb, beta);
        Finish512(c + 3L * ldc, c30, c31, va, vb, beta); Finish512(c + 4L * ldc, c40, c41, va, vb, beta); Finish512(c + 5L * ldc, c50, c51, va, vb, beta);
    }

    /// <summary>c[0..32) = alpha·acc (+ beta·c unless beta is 0: C may hold garbage then).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish512(float* c, Vector512<float> lo, Vector512<float> hi, Vector512<float> alpha, Vector512<float> vbeta, float beta)
    {
        if (beta == 0f)
        {
            (lo * alpha).Store(c);
            (hi * alpha).Store(c + 16);
        }
        else
        {
            Avx512F.FusedMultiplyAdd(lo, alpha, vbeta * Vector512.Load(c)).Store(c);
            Avx512F.FusedMultiplyAdd(hi, alpha, vbeta * Vector512.Load(c + 16)).Store(c + 16);
        }
    }

    /// <summary>The 6×16 tile of C at c (row stride ldc) = alpha·Σ_k a[k]·b[k] + beta·C, a and b packed panels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        // C's tile is touched only after the K loop; start its (likely L3 or memory) loads now.
        for (int i = 0; i < MR; i++) { Sse.Prefetch0(c + (long)i * ldc); Sse.Prefetch0(c + (long)i * ldc + NR - 1); }
        for (int p = 0; p < kc; p++, a += MR, b += NR)
        {
            var b0 = Avx.LoadAlignedVector256(b);
            var b1 = Avx.LoadAlignedVector256(b + 8);
            var ai = Avx.BroadcastScalarToVector256(a);
            c00 = Fma.MultiplyAdd(ai, b0, c00); c01 = Fma.MultiplyAdd(ai, b1, c01);
            ai = Avx.BroadcastScalarToVector256(a + 1);
            c10 = Fma.MultiplyAdd(ai, b0, c10); c11 = Fma.MultiplyAdd(ai, b1, c11);
            ai = Avx.BroadcastScalarToVector256(a + 2);
            c20 = Fma.MultiplyAdd(ai, b0, c20); c21 = Fma.MultiplyAdd(ai, b1, c21);
            ai = Avx.BroadcastScalarToVector256(a + 3);
            c30 = Fma.MultiplyAdd(ai, b0, c30); c31 = Fma.MultiplyAdd(ai, b1, c31);
            ai = Avx.BroadcastScalarToVector256(a + 4);
            c40 = Fma.MultiplyAdd(ai, b0, c40); c41 = Fma.MultiplyAdd(ai, b1, c41);
            ai = Avx.BroadcastScalarToVector256(a + 5);
            c50 = Fma.MultiplyAdd(ai, b0, c50); c51 = Fma.MultiplyAdd(ai, b1, c51);
        }
        var va = Vector256.Create(alpha);
        if (beta == 0f)
        {
            StoreRow(c, c00, c01, va); StoreRow(c + ldc, c10, c11, va); StoreRow(c + 2L * ldc, c20, c21, va);
            StoreRow(c + 3L * ldc, c30, c31, va); StoreRow(c + 4L * ldc, c40, c41, va); StoreRow(c + 5L * ldc, c50, c51, va);
        }
        else
        {
            var vb = Vector256.Create(beta);
            UpdateRow(c, c00, c01, va, vb); UpdateRow(c + ldc, c10, c11, va, vb); UpdateRow(c + 2L * ldc, c20, c21, va, vb);
            UpdateRow(c + 3L * ldc, c30, c31, va, vb); UpdateRow(c + 4L * ldc, c40, c41, va, vb); UpdateRow(c + 5L * ldc, c50, c51, va, vb);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* c, Vector256<float> lo, Vector256<float> hi, Vector256<float> alpha)
    {
        Avx.Store(c, Avx.Multiply(lo, alpha));
        Avx.Store(c + 8, Avx.Multiply(hi, alpha));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UpdateRow(float* c, Vector256<float> lo, Vector256<float> hi, Vector256<float> alpha, Vector256<float> beta)
    {
        Avx.Store(c, Fma.MultiplyAdd(lo, alpha, Avx.Multiply(beta, Avx.LoadVector256(c))));
        Avx.Store(c + 8, Fma.MultiplyAdd(hi, alpha, Avx.Multiply(beta, Avx.LoadVector256(c + 8))));
    }

    /// <summary>A partial tile (mr ≤ MR rows, nr ≤ NR columns): the full kernel into a stack tile, then copied.</summary>
    private static void EdgeTile(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta, int mr, int nr)
    {
        float* tile = stackalloc float[MR * NR];
        MicroKernel(kc, a, b, tile, NR, 1f, 0f);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
            {
                float* ci = c + (long)i * ldc + j;
                *ci = beta == 0f ? alpha * tile[i * NR + j] : alpha * tile[i * NR + j] + beta * *ci;
            }
    }

    // ---- small problems and the scalar fallback ---------------------------------------------------------------

    /// <summary>Direct loops without packing: the path for tiny products and for CPUs without AVX2/FMA.</summary>
    private static void Simple(int m, int n, int k, MatrixView a, MatrixView b, float* c, int ldc, float alpha, float beta)
    {
        for (int i = 0; i < m; i++)
        {
            float* ci = c + (long)i * ldc;
            for (int j = 0; j < n; j++)
            {
                float s = 0f;
                for (int p = 0; p < k; p++) s += a[i, p] * b[p, j];
                ci[j] = beta == 0f ? alpha * s : alpha * s + beta * ci[j];
            }
        }
    }

    private static void ScaleC(int m, int n, float* c, int ldc, float beta)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            if (beta == 0f) row.Clear();
            else for (int j = 0; j < n; j++) row[j] *= beta;
        }
    }

    private static float* Align64(float* p) => (float*)(((nint)p + 63) & ~(nint)63);
    private static int CeilDiv(int x, int y) => (x + y - 1) / y;
    private static int RoundUp(int x, int multiple) => CeilDiv(x, multiple) * multiple;
}
