using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

/// <summary>A register tile of <see cref="Sgemm"/>: the 6×NR block of C at c (row stride ldc) =
/// alpha·Σ_k A[·, k]·B[k] + beta·C, with A(r, k) = a.Row(r)[k·kStride] (<see cref="ITileRows"/>: a packed panel, k
/// MR apart; A in place, k 1 apart) and the NR values of B's row k where the panel says (<see cref="IPanelB"/>).
/// Rows at or past a.Count re-read row 0 or are not written (the caller discards them). beta 0 never reads C.
/// Implemented by structs so that the generic packed loop is compiled once per tile, rows and panel with the call
/// inlined.</summary>
internal unsafe interface IMicroTile
{
    static abstract int NR { get; }
    static abstract void Multiply<TRows, TPanel>(int kc, TRows a, nint kStride, TPanel b, float* c, int ldc, float alpha, float beta)
        where TRows : struct, ITileRows where TPanel : struct, IPanelB;
}

/// <summary>Where a micro-tile reads A: row r (r &lt; Count) starts at Row(r); a row at or past Count is row 0.</summary>
internal unsafe interface ITileRows
{
    int Count { get; }
    float* Row(int r);
}

/// <summary>Rows a fixed stride apart: a packed panel (1) or a row-major A in place (its leading dimension).</summary>
internal readonly unsafe struct StridedRows(float* a, nint stride, int count) : ITileRows
{
    public int Count => count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float* Row(int r) => r < count ? a + r * stride : a;
}

/// <summary>A read in place through a row table: row r starts at a + rows[r] (the convolution weight gradient's
/// patches: each row a window of the laid-out input, so nothing is packed).</summary>
internal readonly unsafe struct TableRows(float* a, long* rows, int count) : ITileRows
{
    public int Count => count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float* Row(int r) => a + rows[r < count ? r : 0];
}

/// <summary>Where a micro-tile reads B: row k's NR values start at the k-th pointer <see cref="Next"/> returns.</summary>
internal unsafe interface IPanelB
{
    /// <summary>The next row of the panel (the first on the first call).</summary>
    float* Next();
}

/// <summary>A packed panel: rows NR floats apart.</summary>
internal unsafe struct PackedPanel(float* b, int nr) : IPanelB
{
    private float* _row = b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float* Next() { float* row = _row; _row += nr; return row; }
}

/// <summary>B read in place through a row table (the convolutions' windows): row k starts at b + rows[k]. Nothing
/// is packed, so a GEMM with few rows of A does not pay a pass over B per product (see Sgemm.InPlaceBFloats).</summary>
internal unsafe struct RowTablePanel(float* b, long* rows) : IPanelB
{
    private long* _rows = rows;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float* Next() => b + *_rows++;
}

/// <summary>AVX2: 6 rows × 2 ymm = 12 accumulators + 2 B vectors + 1 A broadcast (15 of the 16 ymm registers).</summary>
internal unsafe struct Ymm6x16 : IMicroTile
{
    public static int NR => 16;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply<TRows, TPanel>(int kc, TRows a, nint kStride, TPanel b, float* c, int ldc, float alpha, float beta)
        where TRows : struct, ITileRows where TPanel : struct, IPanelB
    {
        if (a.Count <= Sgemm.HalfTileRows) { MultiplyHalf(kc, a, kStride, b, c, ldc, alpha, beta); return; }
        float* a0 = a.Row(0), a1 = a.Row(1), a2 = a.Row(2), a3 = a.Row(3), a4 = a.Row(4), a5 = a.Row(5);
        nint ap = 0;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        // C's tile is touched only after the K loop; start its (likely L3 or memory) loads now.
        for (int i = 0; i < Sgemm.MR; i++) { Sse.Prefetch0(c + (long)i * ldc); Sse.Prefetch0(c + (long)i * ldc + 15); }
        for (int p = 0; p < kc; p++, ap += kStride)
        {
            float* row = b.Next();
            var b0 = Avx.LoadVector256(row);
            var b1 = Avx.LoadVector256(row + 8);
            var ai = Avx.BroadcastScalarToVector256(a0 + ap);
            c00 = Fma.MultiplyAdd(ai, b0, c00); c01 = Fma.MultiplyAdd(ai, b1, c01);
            ai = Avx.BroadcastScalarToVector256(a1 + ap);
            c10 = Fma.MultiplyAdd(ai, b0, c10); c11 = Fma.MultiplyAdd(ai, b1, c11);
            ai = Avx.BroadcastScalarToVector256(a2 + ap);
            c20 = Fma.MultiplyAdd(ai, b0, c20); c21 = Fma.MultiplyAdd(ai, b1, c21);
            ai = Avx.BroadcastScalarToVector256(a3 + ap);
            c30 = Fma.MultiplyAdd(ai, b0, c30); c31 = Fma.MultiplyAdd(ai, b1, c31);
            ai = Avx.BroadcastScalarToVector256(a4 + ap);
            c40 = Fma.MultiplyAdd(ai, b0, c40); c41 = Fma.MultiplyAdd(ai, b1, c41);
            ai = Avx.BroadcastScalarToVector256(a5 + ap);
            c50 = Fma.MultiplyAdd(ai, b0, c50); c51 = Fma.MultiplyAdd(ai, b1, c51);
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        Finish(c, c00, c01, va, vb, beta); Finish(c + ldc, c10, c11, va, vb, beta); Finish(c + 2L * ldc, c20, c21, va, vb, beta);
        Finish(c + 3L * ldc, c30, c31, va, vb, beta); Finish(c + 4L * ldc, c40, c41, va, vb, beta); Finish(c + 5L * ldc, c50, c51, va, vb, beta);
    }

    /// <summary>The first 3 rows only: an edge tile of C's last 1–3 rows (M mod 6, e.g. 128 = 21·6 + 2) at half
    /// the cost of a full one. Rows 3–5 of c are left as they are.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MultiplyHalf<TRows, TPanel>(int kc, TRows a, nint kStride, TPanel b, float* c, int ldc, float alpha, float beta)
        where TRows : struct, ITileRows where TPanel : struct, IPanelB
    {
        float* a0 = a.Row(0), a1 = a.Row(1), a2 = a.Row(2);
        nint ap = 0;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        for (int p = 0; p < kc; p++, ap += kStride)
        {
            float* row = b.Next();
            var b0 = Avx.LoadVector256(row);
            var b1 = Avx.LoadVector256(row + 8);
            var ai = Avx.BroadcastScalarToVector256(a0 + ap);
            c00 = Fma.MultiplyAdd(ai, b0, c00); c01 = Fma.MultiplyAdd(ai, b1, c01);
            ai = Avx.BroadcastScalarToVector256(a1 + ap);
            c10 = Fma.MultiplyAdd(ai, b0, c10); c11 = Fma.MultiplyAdd(ai, b1, c11);
            ai = Avx.BroadcastScalarToVector256(a2 + ap);
            c20 = Fma.MultiplyAdd(ai, b0, c20); c21 = Fma.MultiplyAdd(ai, b1, c21);
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        Finish(c, c00, c01, va, vb, beta); Finish(c + ldc, c10, c11, va, vb, beta); Finish(c + 2L * ldc, c20, c21, va, vb, beta);
    }

    /// <summary>c[0..16) = alpha·acc (+ beta·c unless beta is 0: C may hold garbage then).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish(float* c, Vector256<float> lo, Vector256<float> hi, Vector256<float> alpha, Vector256<float> vbeta, float beta)
    {
        if (beta == 0f)
        {
            Avx.Store(c, Avx.Multiply(lo, alpha));
            Avx.Store(c + 8, Avx.Multiply(hi, alpha));
        }
        else
        {
            Avx.Store(c, Fma.MultiplyAdd(lo, alpha, Avx.Multiply(vbeta, Avx.LoadVector256(c))));
            Avx.Store(c + 8, Fma.MultiplyAdd(hi, alpha, Avx.Multiply(vbeta, Avx.LoadVector256(c + 8))));
        }
    }
}

/// <summary>AVX-512: the same scheme as <see cref="Ymm6x16"/> in zmm registers, 6×32 of C.</summary>
internal unsafe struct Zmm6x32 : IMicroTile
{
    public static int NR => 32;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply<TRows, TPanel>(int kc, TRows a, nint kStride, TPanel b, float* c, int ldc, float alpha, float beta)
        where TRows : struct, ITileRows where TPanel : struct, IPanelB
    {
        if (a.Count <= Sgemm.HalfTileRows) { MultiplyHalf(kc, a, kStride, b, c, ldc, alpha, beta); return; }
        float* a0 = a.Row(0), a1 = a.Row(1), a2 = a.Row(2), a3 = a.Row(3), a4 = a.Row(4), a5 = a.Row(5);
        nint ap = 0;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int i = 0; i < Sgemm.MR; i++) { Sse.Prefetch0(c + (long)i * ldc); Sse.Prefetch0(c + (long)i * ldc + 16); Sse.Prefetch0(c + (long)i * ldc + 31); }
        for (int p = 0; p < kc; p++, ap += kStride)
        {
            float* row = b.Next();
            var b0 = Vector512.Load(row);
            var b1 = Vector512.Load(row + 16);
            var ai = Vector512.Create(a0[ap]);
            c00 = Avx512F.FusedMultiplyAdd(ai, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector512.Create(a1[ap]);
            c10 = Avx512F.FusedMultiplyAdd(ai, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector512.Create(a2[ap]);
            c20 = Avx512F.FusedMultiplyAdd(ai, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector512.Create(a3[ap]);
            c30 = Avx512F.FusedMultiplyAdd(ai, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector512.Create(a4[ap]);
            c40 = Avx512F.FusedMultiplyAdd(ai, b0, c40); c41 = Avx512F.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector512.Create(a5[ap]);
            c50 = Avx512F.FusedMultiplyAdd(ai, b0, c50); c51 = Avx512F.FusedMultiplyAdd(ai, b1, c51);
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        Finish(c, c00, c01, va, vb, beta); Finish(c + ldc, c10, c11, va, vb, beta); Finish(c + 2L * ldc, c20, c21, va, vb, beta);
        Finish(c + 3L * ldc, c30, c31, va, vb, beta); Finish(c + 4L * ldc, c40, c41, va, vb, beta); Finish(c + 5L * ldc, c50, c51, va, vb, beta);
    }

    /// <summary>The first 3 rows only (see <see cref="Ymm6x16"/>'s).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MultiplyHalf<TRows, TPanel>(int kc, TRows a, nint kStride, TPanel b, float* c, int ldc, float alpha, float beta)
        where TRows : struct, ITileRows where TPanel : struct, IPanelB
    {
        float* a0 = a.Row(0), a1 = a.Row(1), a2 = a.Row(2);
        nint ap = 0;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        for (int p = 0; p < kc; p++, ap += kStride)
        {
            float* row = b.Next();
            var b0 = Vector512.Load(row);
            var b1 = Vector512.Load(row + 16);
            var ai = Vector512.Create(a0[ap]);
            c00 = Avx512F.FusedMultiplyAdd(ai, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector512.Create(a1[ap]);
            c10 = Avx512F.FusedMultiplyAdd(ai, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector512.Create(a2[ap]);
            c20 = Avx512F.FusedMultiplyAdd(ai, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ai, b1, c21);
        }
        var va = Vector512.Create(alpha);
        var vb = Vector512.Create(beta);
        Finish(c, c00, c01, va, vb, beta); Finish(c + ldc, c10, c11, va, vb, beta); Finish(c + 2L * ldc, c20, c21, va, vb, beta);
    }

    /// <summary>c[0..32) = alpha·acc (+ beta·c unless beta is 0: C may hold garbage then).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish(float* c, Vector512<float> lo, Vector512<float> hi, Vector512<float> alpha, Vector512<float> vbeta, float beta)
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
}

/// <summary>Cache blocks of <see cref="Sgemm"/> for a tile NR columns wide, derived from the cache sizes: the
/// A and B micro-panels ((MR + NR)·KC floats) fit L1 (KC at most 256: longer K blocks gain nothing once C's
/// load/store is amortised), an MC×KC block of A fills half of L2 (the other half streams B panels and C), and a
/// KC×NC block of B takes at most half of L3 split over the worker threads (NC at most 4096). A B read in place
/// (<see cref="RowTablePanel"/>) has no packed block to keep in L1 and runs K blocks of up to InPlaceKC = 2·KC
/// (measured on Zen 5: K = 288 in one block instead of two, 32 channels, +10% AVX2, +20% AVX-512).</summary>
public sealed record GemmBlocking(int NR, int KC, int MC, int NC, int InPlaceKC)
{
    public static GemmBlocking For(int nr, CpuCaches caches)
    {
        int kc = Math.Clamp((int)(caches.L1 / (sizeof(float) * (Sgemm.MR + nr))) / 16 * 16, 64, 256);
        int mc = Math.Max(Sgemm.MR, (int)(caches.L2 / 2 / (sizeof(float) * kc)) / Sgemm.MR * Sgemm.MR);
        int nc = Math.Clamp((int)(caches.L3 / 2 / Environment.ProcessorCount / (sizeof(float) * kc)) / nr * nr, nr, 4096);
        int inPlaceKc = 2 * kc;
        return new GemmBlocking(nr, kc, mc, nc, inPlaceKc);
    }

    public int PackedALength => MC * KC + 32;
    public int PackedBLength => KC * NC + 32;
}
