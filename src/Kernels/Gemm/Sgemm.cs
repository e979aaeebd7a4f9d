using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

/// <summary>A row-major matrix operand seen through an optional transpose: element (i, j) of op(X) is
/// P[i·Ld + j], or P[j·Ld + i] when Trans. A view may instead take the start of each stored row from a table
/// (Rows): op(X)(i, j) = P[Rows[i] + j], or P[Rows[j] + i] when Trans. The implicit-GEMM convolution reads its
/// patch matrix (forward) and its transpose (weight gradient) as shifted windows of the input this way. The elements
/// are float32 or 16-bit bits (<see cref="OperandElements"/>): the packing widens them.</summary>
internal readonly unsafe struct MatrixView<T>(T* p, int ld, bool trans, long* rows = null) where T : unmanaged
{
    public readonly T* P = p;
    public readonly int Ld = ld;
    public readonly bool Trans = trans;
    public readonly long* Rows = rows;

    /// <summary>Element (i, j) of op(X) as float32.</summary>
    public float this[int i, int j] => OperandElements.ToFloat(Trans ? Row(j) + i : Row(i) + j);

    /// <summary>Start of stored row i (row i of op(X), or column i when Trans).</summary>
    public T* Row(int i) => Rows != null ? P + Rows[i] : P + (long)i * Ld;

    /// <summary>The view whose (0, 0) is this view's (i, j).</summary>
    public MatrixView<T> At(int i, int j) =>
        Rows != null ? (Trans ? new(P + i, Ld, true, Rows + j) : new(P + j, Ld, false, Rows + i))
            : new(Trans ? P + (long)j * Ld + i : P + (long)i * Ld + j, Ld, Trans);
}

/// <summary>
/// Single-threaded SGEMM, C = alpha·op(A)·op(B) + beta·C, in the GotoBLAS/BLIS scheme: B is packed into
/// KC×NR column panels (one panel streams from L1), A into MR×KC row panels (a block of them sits in L2), and a
/// 6×NR register tile of FMAs does the arithmetic: 6×16 with AVX2 (ymm), 6×32 with AVX-512 (zmm; Zen 4/5 and
/// recent Xeons, where the 512-bit FMAs double the throughput). The tile follows <see cref="CpuIsa.Current"/>;
/// the scalar ISA runs plain loops. Transposes are absorbed by the packing, so the micro-kernel only ever sees
/// one layout, and 16-bit operands are widened to float32 as they are packed. Callers split work over threads; see
/// <see cref="CpuBackend.Gemm"/>.
/// </summary>
internal static unsafe partial class Sgemm
{
    // Micro-tile: 6 rows × 2 vectors = 12 accumulators + 2 B vectors + 1 A broadcast (15 of the 16 ymm registers;
    // with AVX-512 the same shape in zmm registers covers 32 columns).
    public const int MR = 6;
    /// <summary>Tiles of at most this many rows run a 3-row loop (half the FMAs of the 6-row one).</summary>
    public const int HalfTileRows = 3;
    /// <summary>Below this many multiply-adds the unpacked loops are as fast (measured: packing already wins at
    /// 16³, where the scalar loops take ~3 µs and the packed path ~0.4 µs).</summary>
    public const long SmallMacs = 2048;
    /// <summary>Up to this many columns of C per call, a row-major A is read in place instead of packed
    /// (measured per core on Zen 5, both ISAs: +15–30% at n = 256, even at 512, −2% at 1024).</summary>
    public const int InPlaceAMaxColumns = 512;
    /// <summary>Up to this many rows, a convolution's row-major A (its weights) is read in place at any width.</summary>
    public const int InPlaceConvRows = 128;
    /// <summary>A B read through a row table (the convolutions' windows, not transposed) is read in place by the
    /// micro-tiles instead of packed while rows of A × the tile's width stay within this: with few rows each packed
    /// value feeds few FMAs, and one tile's rows of windows (neighbouring taps overlapping) stay in L1 for the next
    /// tile. 128 rows of AVX2 tiles, 64 of AVX-512 ones, whose unaligned 128-byte rows touch three cache lines each
    /// (measured, Zen 5, one thread: AVX-512 at 64 rows 0.97–1.12, so wider tiles stop there).</summary>
    public const int InPlaceBFloats = 128 * 16;

    private static readonly GemmBlocking Ymm = GemmBlocking.For(Ymm6x16.NR, CpuCaches.Current);
    private static readonly GemmBlocking Zmm = GemmBlocking.For(Zmm6x32.NR, CpuCaches.Current);

    /// <summary>The cache blocking of the ISA in effect (the scalar ISA packs nothing; it reports the AVX2 one).</summary>
    public static GemmBlocking Blocking => BlockingFor(CpuIsa.Current);

    public static GemmBlocking BlockingFor(Isa isa) => _guard?.Blocking(isa) ?? (isa == Isa.Avx512 ? Zmm : Ymm);

    /// <summary>Columns of the register tile of the ISA in effect: the unit callers split C's columns by.</summary>
    public static int NR => Blocking.NR;

    /// <summary>Floats of scratch <see cref="Run"/> needs per thread for packed A and packed B (each includes
    /// slack so the panels can start on a 64-byte boundary, and for PackA's overhanging stores).</summary>
    public static int PackedALength => Blocking.PackedALength;
    public static int PackedBLength => Blocking.PackedBLength;

    /// <summary>Whether the ISA in effect runs the packed vector kernels (false: plain loops).</summary>
    public static bool Vectorized => CpuIsa.Current != Isa.Scalar;

    /// <summary>C (m×n, row stride ldc) = alpha·op(A)·op(B) + beta·C on the given ISA (a worker thread passes its
    /// caller's <see cref="CpuIsa.Current"/>: a thread-pool work item queued without the caller's ExecutionContext
    /// does not see a <see cref="CpuIsa.Use"/> scope). beta 0 never reads C. packA/packB are scratch of
    /// <see cref="PackedALength"/>/<see cref="PackedBLength"/> floats (unused on the small path). A and B may be
    /// float32 or 16-bit; the products accumulate in float32 either way.</summary>
    public static void Run<TA, TB>(Isa isa, int m, int n, int k, MatrixView<TA> a, MatrixView<TB> b, float* c, int ldc, float alpha, float beta,
        float* packA, float* packB) where TA : unmanaged where TB : unmanaged
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0) { ScaleC(m, n, c, ldc, beta); return; }
        if (isa == Isa.Scalar || (long)m * n * k < SmallMacs) Simple(m, n, k, a, b, c, ldc, alpha, beta);
        else if (_guard != null) RunGuarded(isa, m, n, k, a, b, c, ldc, alpha, beta);
        else Packed(isa, m, n, k, a, b, c, ldc, alpha, beta, packA, packB);
    }

    /// <summary>The packed product with the tile and blocking of a vector ISA.</summary>
    private static void Packed<TA, TB>(Isa isa, int m, int n, int k, MatrixView<TA> a, MatrixView<TB> b, float* c, int ldc, float alpha, float beta,
        float* packA, float* packB) where TA : unmanaged where TB : unmanaged
    {
        if (isa == Isa.Avx512) Packed<Zmm6x32, TA, TB>(BlockingFor(isa), m, n, k, a, b, c, ldc, alpha, beta, packA, packB);
        else Packed<Ymm6x16, TA, TB>(BlockingFor(isa), m, n, k, a, b, c, ldc, alpha, beta, packA, packB);
    }

    // Fully optimised from the first call, like the tiles: with tiered PGO, its instrumented and PGO-compiled
    // versions ran a 128-channel conv on 128² 2–3× slower for seconds (AVX-512, measured with bench/ab).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Packed<TTile, TA, TB>(GemmBlocking blocking, int m, int n, int k, MatrixView<TA> a, MatrixView<TB> b, float* c, int ldc,
        float alpha, float beta, float* packA, float* packB) where TTile : struct, IMicroTile where TA : unmanaged where TB : unmanaged
    {
        int nrTile = TTile.NR;
        float* ap = Align64(packA), bp = Align64(packB);
        // A is read in place (6 row streams) when few columns share each packed A block: packing A is a transpose
        // that costs ~15% (AVX2) to ~25% (AVX-512) of a 256³ product and is amortised only over n. A transposed A
        // read in place strides a whole row per k (−30%), and a row table is packed anyway. The convolutions' GEMMs
        // (B through a row table, a band of columns each) read up to InPlaceConvRows rows of weights in place at any
        // width: every band would repack them (measured 1 thread, AVX2: 32 channels +6%, 128 +4%, 512 −2%).
        // A through a row table (the conv weight gradient's patches) is always read in place: its rows are windows,
        // laid out in float32. A 16-bit A is otherwise always packed, and a 16-bit B never read in place: the
        // micro-kernels read float32. B in place runs K blocks of up to 2·KC, so only with A unpacked (the packing
        // scratch holds KC rows of A and B), and its partial last panel is packed alone at the scratch's start.
        bool tableA = a.Rows != null && !a.Trans;
        Debug.Assert(!tableA || typeof(TA) == typeof(float), "row-table operands are float32 windows");
        bool packedA = typeof(TA) != typeof(float) || a.Trans || (!tableA && n > InPlaceAMaxColumns && (b.Rows == null || m > InPlaceConvRows));
        bool inPlaceB = typeof(TB) == typeof(float) && !packedA && b.Rows != null && !b.Trans && m * nrTile <= InPlaceBFloats;
        int fullPanels = n / nrTile * nrTile;       // in place, only a partial last panel is packed (zero-padded)
        nint aKStride = packedA ? MR : 1;
        int kBlocks = CeilDiv(k, inPlaceB ? blocking.InPlaceKC : blocking.KC), kc0 = CeilDiv(k, kBlocks);       // even K blocks: no thin trailing block
        int mBlocks = CeilDiv(m, blocking.MC), mc0 = RoundUp(CeilDiv(m, mBlocks), MR);
        for (int jc = 0; jc < n; jc += blocking.NC)
        {
            int nc = Math.Min(blocking.NC, n - jc);
            for (int pc = 0; pc < k; pc += kc0)
            {
                int kc = Math.Min(kc0, k - pc);
                float blockBeta = pc == 0 ? beta : 1f;                  // later K blocks accumulate
                if (!inPlaceB) PackB(b.At(pc, jc), kc, nc, nrTile, bp);
                else if (jc + nc > fullPanels) PackB(b.At(pc, fullPanels), kc, jc + nc - fullPanels, nrTile, bp);     // the partial panel only: kc may be 2·KC
                for (int ic = 0; ic < m; ic += mc0)
                {
                    int mc = Math.Min(mc0, m - ic);
                    if (packedA) PackA(a.At(ic, pc), mc, kc, ap);
                    for (int jr = 0; jr < nc; jr += nrTile)
                    {
                        int nr = Math.Min(nrTile, nc - jr);
                        float* bPanel = inPlaceB ? bp : bp + (long)jr * kc;
                        bool bInPlace = inPlaceB && nr == nrTile;
                        var rowPanel = bInPlace ? new RowTablePanel((float*)b.P + jc + jr, b.Rows + pc) : default;
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            float* cTile = c + (long)(ic + ir) * ldc + jc + jr;
                            int mr = Math.Min(MR, mc - ir);
                            if (tableA)
                            {
                                Tile<TTile, TableRows, PackedPanel>(kc, new TableRows((float*)a.P + pc, a.Rows + ic + ir, mr), 1,
                                    new PackedPanel(bPanel, nrTile), cTile, ldc, alpha, blockBeta, mr, nr);
                                continue;
                            }
                            // A tile: a packed panel (rows 1 apart, k MR apart, zero-padded to MR rows) or A in place.
                            var aTile = packedA ? new StridedRows(ap + ir * kc, 1, MR) : new StridedRows((float*)a.At(ic + ir, pc).P, a.Ld, mr);
                            if (bInPlace) Tile<TTile, StridedRows, RowTablePanel>(kc, aTile, aKStride, rowPanel, cTile, ldc, alpha, blockBeta, mr, nr);
                            else Tile<TTile, StridedRows, PackedPanel>(kc, aTile, aKStride, new PackedPanel(bPanel, nrTile), cTile, ldc, alpha, blockBeta, mr, nr);
                        }
                    }
                }
            }
        }
    }

    // ---- packing ------------------------------------------------------------------------------------------------

    /// <summary>op(A)[0..mc, 0..kc] → row panels of MR rows, each stored k-major (MR floats per k), zero-padded to
    /// a multiple of MR rows so the micro-kernel never branches.</summary>
    private static void PackA<T>(MatrixView<T> a, int mc, int kc, float* dst) where T : unmanaged
    {
        for (int r0 = 0; r0 < mc; r0 += MR, dst += MR * kc)
        {
            int rows = Math.Min(MR, mc - r0);
            if (a.Trans)
            {
                // Stored K×M: the MR values of one k are contiguous. A panel followed by another copies 8 at a
                // time (the 2 extra values are the next panel's, so they exist); they land in the next k's slot,
                // written after, and at the last k in the next panel, packed after.
                T* src = a.P + r0;
                int p = 0;
                if (r0 + 8 <= mc)
                    for (; p < kc; p++, src += a.Ld) Avx.Store(dst + p * MR, OperandElements.Load8(src));
                for (; p < kc; p++, src += a.Ld)
                {
                    float* d = dst + p * MR;
                    for (int r = 0; r < rows; r++) d[r] = OperandElements.ToFloat(src + r);
                    for (int r = rows; r < MR; r++) d[r] = 0f;
                }
            }
            else
            {
                // Stored M×K: transpose 6-row × 8-k blocks. Each store writes 8 floats at stride MR = 6, so its last
                // two (the zero rows) are overwritten by the next k; the final block spills 2 floats into the next
                // panel (written after) or into the scratch slack.
                T* src = a.P + (long)r0 * a.Ld;
                int p = 0;
                if (rows == MR)
                    for (; p + 8 <= kc; p += 8)
                    {
                        T* s = src + p;
                        TransposeStore8x8(OperandElements.Load8(s), OperandElements.Load8(s + a.Ld), OperandElements.Load8(s + 2L * a.Ld),
                            OperandElements.Load8(s + 3L * a.Ld), OperandElements.Load8(s + 4L * a.Ld), OperandElements.Load8(s + 5L * a.Ld),
                            Vector256<float>.Zero, Vector256<float>.Zero, dst + p * MR, MR);
                    }
                for (; p < kc; p++)
                {
                    float* d = dst + p * MR;
                    for (int r = 0; r < rows; r++) d[r] = OperandElements.ToFloat(src + (long)r * a.Ld + p);
                    for (int r = rows; r < MR; r++) d[r] = 0f;
                }
            }
        }
    }

    /// <summary>op(B)[0..kc, 0..nc] → column panels of nr columns (the tile's NR), each stored k-major (nr
    /// floats per k), zero-padded to a multiple of nr columns.</summary>
    private static void PackB<T>(MatrixView<T> b, int kc, int nc, int nr, float* dst) where T : unmanaged
    {
        if (b.Trans && b.Rows != null) { PackTransposedRows(b, kc, nc, nr, dst); return; }
        int c0 = 0;
        if (!b.Trans) c0 = PackPanelGroups(b, kc, nc, nr, dst);
        for (dst += (long)c0 * kc; c0 < nc; c0 += nr, dst += nr * kc)
        {
            int cols = Math.Min(nr, nc - c0);
            if (!b.Trans)
            {
                // Stored K×N: one k's nr values are contiguous.
                if (cols == nr)
                    for (int p = 0; p < kc; p++)
                    {
                        T* src = b.Row(p) + c0;
                        for (int j0 = 0; j0 < nr; j0 += 8) Avx.Store(dst + p * nr + j0, OperandElements.Load8(src + j0));
                    }
                else
                    for (int p = 0; p < kc; p++)
                    {
                        T* src = b.Row(p) + c0;
                        float* d = dst + p * nr;
                        for (int j = 0; j < cols; j++) d[j] = OperandElements.ToFloat(src + j);
                        for (int j = cols; j < nr; j++) d[j] = 0f;
                    }
            }
            else
            {
                // Stored N×K: column j of op(B) is a contiguous row; transpose 8×8 blocks into the panel.
                int p = 0;
                if (cols == nr)
                    for (; p + 8 <= kc; p += 8)
                    {
                        T* src = b.P + (long)c0 * b.Ld + p;
                        for (int j0 = 0; j0 < nr; j0 += 8) Transpose8x8(src + (long)j0 * b.Ld, b.Ld, dst + p * nr + j0, nr);
                    }
                for (; p < kc; p++)
                {
                    float* d = dst + p * nr;
                    for (int j = 0; j < cols; j++) d[j] = OperandElements.ToFloat(b.P + (long)(c0 + j) * b.Ld + p);
                    for (int j = cols; j < nr; j++) d[j] = 0f;
                }
            }
        }
    }

    /// <summary>The leading whole groups of <see cref="PackB"/>'s panels of a K×N view, 4 panels per pass: each k
    /// reads 4·nr contiguous values (several cache lines of one page) instead of one line per row of a page-sized
    /// stride. Returns the columns packed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int PackPanelGroups<T>(MatrixView<T> b, int kc, int nc, int nr, float* dst) where T : unmanaged
    {
        const int PanelsPerRow = 4;
        int c0 = 0;
        for (; c0 + PanelsPerRow * nr <= nc; c0 += PanelsPerRow * nr, dst += PanelsPerRow * nr * kc)
            for (int p = 0; p < kc; p++)
            {
                T* src = b.Row(p) + c0;
                float* d = dst + p * nr;
                for (int q = 0; q < PanelsPerRow; q++, src += nr, d += nr * kc)
                    for (int j0 = 0; j0 < nr; j0 += 8)
                        Avx.Store(d + j0, OperandElements.Load8(src + j0));
            }
        return c0;
    }

    /// <summary><see cref="PackB"/> for a transposed view with a row table: column j of op(B) is the contiguous
    /// run at P + Rows[j] (the conv weight gradient's taps), transposed 8×8 blocks at a time.</summary>
    private static void PackTransposedRows<T>(MatrixView<T> b, int kc, int nc, int nr, float* dst) where T : unmanaged
    {
        for (int c0 = 0; c0 < nc; c0 += nr, dst += nr * kc)
        {
            int cols = Math.Min(nr, nc - c0);
            int p = 0;
            if (cols == nr)
                for (; p + 8 <= kc; p += 8)
                    for (int j0 = 0; j0 < nr; j0 += 8)
                    {
                        T* s = b.P + p;
                        long* r = b.Rows + c0 + j0;
                        TransposeStore8x8(OperandElements.Load8(s + r[0]), OperandElements.Load8(s + r[1]), OperandElements.Load8(s + r[2]),
                            OperandElements.Load8(s + r[3]), OperandElements.Load8(s + r[4]), OperandElements.Load8(s + r[5]),
                            OperandElements.Load8(s + r[6]), OperandElements.Load8(s + r[7]), dst + p * nr + j0, nr);
                    }
            for (; p < kc; p++)
            {
                float* d = dst + p * nr;
                for (int j = 0; j < cols; j++) d[j] = OperandElements.ToFloat(b.Row(c0 + j) + p);
                for (int j = cols; j < nr; j++) d[j] = 0f;
            }
        }
    }

    /// <summary>dst[j·ldd + i] = src[i·lds + j] for an 8×8 block.</summary>
    private static void Transpose8x8<T>(T* src, int lds, float* dst, int ldd) where T : unmanaged =>
        TransposeStore8x8(OperandElements.Load8(src), OperandElements.Load8(src + lds), OperandElements.Load8(src + 2L * lds),
            OperandElements.Load8(src + 3L * lds), OperandElements.Load8(src + 4L * lds), OperandElements.Load8(src + 5L * lds),
            OperandElements.Load8(src + 6L * lds), OperandElements.Load8(src + 7L * lds), dst, ldd);

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

    /// <summary>One mr × nr tile of C: the register tile, or <see cref="EdgeTile"/> for a partial one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile<TTile, TRows, TPanel>(int kc, TRows a, nint kStride, TPanel b, float* c, int ldc, float alpha, float beta,
        int mr, int nr) where TTile : struct, IMicroTile where TRows : struct, ITileRows where TPanel : struct, IPanelB
    {
        if (mr == MR && nr == TTile.NR) TTile.Multiply(kc, a, kStride, b, c, ldc, alpha, beta);
        else EdgeTile<TTile, TRows, TPanel>(kc, a, kStride, b, c, ldc, alpha, beta, mr, nr);
    }

    /// <summary>A partial tile (mr ≤ MR rows, nr ≤ NR columns): the full kernel into a stack tile, then copied.</summary>
    private static void EdgeTile<TTile, TRows, TPanel>(int kc, TRows a, nint kStride, TPanel b, float* c, int ldc, float alpha, float beta,
        int mr, int nr) where TTile : struct, IMicroTile where TRows : struct, ITileRows where TPanel : struct, IPanelB
    {
        float* tile = stackalloc float[MR * TTile.NR];
        TTile.Multiply(kc, a, kStride, b, tile, TTile.NR, 1f, 0f);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
            {
                float* ci = c + (long)i * ldc + j;
                *ci = beta == 0f ? alpha * tile[i * TTile.NR + j] : alpha * tile[i * TTile.NR + j] + beta * *ci;
            }
    }

    // ---- small problems and the scalar fallback ---------------------------------------------------------------

    /// <summary>Direct loops without packing: the path for tiny products and for CPUs without AVX2/FMA.</summary>
    private static void Simple<TA, TB>(int m, int n, int k, MatrixView<TA> a, MatrixView<TB> b, float* c, int ldc, float alpha, float beta)
        where TA : unmanaged where TB : unmanaged
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
