using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

// The AVX2 convolution tile: the forward and the input gradient's products y_g = A_g · windows_g (A the weights, the
// windows read in place through the row table, as the implicit GEMM does) without the GEMM's blocking. The weights
// are packed once per call into panels of DirectRows output channels, k-major, so a tile broadcasts them from one
// contiguous stream (the GEMM reads DirectRows' worth of weight rows in place, or repacks them per band); each tile
// runs over all of K (no K blocks, so its outputs are written once, straight to the output tensor, with no product
// scratch to copy out); and the register tile is 4 channels × 24 columns, which divides every channel count of the
// models (32…512) where the GEMM's 6-row tile leaves a partial tile (64 = 10·6 + 4). Per tap: 3 window loads and
// 4 broadcasts feed 12 FMAs. Workers take ranges of column tiles and run every channel block of a tile while its
// windows are in L1.
public sealed partial class CpuBackend
{
    /// <summary>Output channels and GEMM columns of the direct tile: 4 × 3 ymm = 12 accumulators, 3 window vectors and
    /// one broadcast.</summary>
    internal const int DirectRows = 4, DirectColumns = 24;

    /// <summary>Whether a product with rowsPerGroup output rows per group over `columns` window columns of one image,
    /// with `weights` weights in all, runs the direct tile: on AVX2 (AVX-512 keeps the GEMM's 6×32 tile), with more
    /// than FewOutputs rows (fewer have their own kernels), at least one whole tile of columns (the last tile is
    /// shifted left to end at the last column, so it never reads past the windows the GEMM reads), and weights that
    /// fit in L2: every tile streams all of them (measured on Zen 5, 1 MiB L2, one thread: 128→128 channels, 0.6 MB,
    /// 1.0–1.14× the GEMM; 256→256, 2.4 MB, 0.91–0.99×; 512→512, 9.4 MB, 0.75×: the GEMM's K blocks keep a block of
    /// weights in L2).</summary>
    private static bool UsesDirectTile(int rowsPerGroup, int columns, long weights) =>
        CpuIsa.Current == Isa.Avx2 && rowsPerGroup > FewOutputs && columns >= DirectColumns && weights * sizeof(float) <= CpuCaches.Current.L2;

    /// <summary>Floats of the packed weights of <see cref="PackDirectWeights"/>.</summary>
    internal static int DirectPackedLength(int groups, int mG, int k) => checked(groups * DirectBlocks(mG) * k * DirectRows);

    private static int DirectBlocks(int mG) => (mG + DirectRows - 1) / DirectRows;

    /// <summary>A (groups·mG × k, row-major at a, float32 or 16-bit) → panels [g][block][p][r] = A[g·mG + block·DirectRows + r, p],
    /// zero for rows past mG.</summary>
    internal static unsafe void PackDirectWeights<TA>(int groups, int mG, int k, TA* a, Span<float> packed) where TA : unmanaged
    {
        int blocks = DirectBlocks(mG);
        for (int g = 0, panel = 0; g < groups; g++)
            for (int b = 0; b < blocks; b++, panel++)
                for (int r = 0; r < DirectRows; r++)
                {
                    int row = b * DirectRows + r;
                    var dst = packed.Slice(panel * k * DirectRows);
                    if (row >= mG)
                    {
                        for (int p = 0; p < k; p++) dst[p * DirectRows + r] = 0f;
                        continue;
                    }
                    TA* src = a + ((long)g * mG + row) * k;
                    for (int p = 0; p < k; p++) dst[p * DirectRows + r] = OperandElements.ToFloat(src + p);
                }
    }

    /// <summary>The product A_g · windows_g of every group over one pass of images, to the target: the windows hold
    /// one layout l (of one image) per image, l.Floats apart (a tile's channels then lie a plane apart, not a batch of
    /// planes: fewer pages per tile); A_g is (mG × k) at a + g·mG·k; rows holds each group's k tap offsets into a
    /// layout, group after group.</summary>
    private static unsafe void DirectProduct<TA>(ConvWindows l, int images, int groups, int mG, int k, TA* a, float[] windows, long[] rows,
        ProductTarget t) where TA : unmanaged
    {
        int blocks = DirectBlocks(mG), panel = k * DirectRows;
        int width = l.Columns(t.Rows, t.Cols), tilesPerImage = (width + DirectColumns - 1) / DirectColumns;
        long imageFloats = l.Floats;
        int length = DirectPackedLength(groups, mG, k);
        float[] packed = BufferPool<float>.Shared.Rent(length);
        try
        {
            PackDirectWeights(groups, mG, k, a, packed.AsSpan(0, length));
            fixed (float* pa = packed, pw = windows, py = t.Dst)
            fixed (long* pr = rows)
            {
                nint aAddr = (nint)pa, wAddr = (nint)pw, rAddr = (nint)pr, yAddr = (nint)py;
                CpuParallel.For(images * tilesPerImage, (i0, i1) =>
                {
                    float* tile = stackalloc float[DirectRows * DirectColumns];
                    Span<OutputRun> runs = stackalloc OutputRun[DirectColumns];
                    for (int i = i0; i < i1; i++)
                    {
                        int img = i / tilesPerImage, c0 = Math.Min(i % tilesPerImage * DirectColumns, width - DirectColumns);
                        int count = OutputRuns(l, t with { Image0 = t.Image0 + img }, c0, runs);
                        float* columns = (float*)wAddr + img * imageFloats + c0;
                        for (int g = 0; g < groups; g++)
                            for (int b = 0; b < blocks; b++)
                            {
                                DirectTile(k, (float*)aAddr + (long)(g * blocks + b) * panel, columns, (long*)rAddr + (long)g * k, tile);
                                int row0 = b * DirectRows;
                                StoreTile(t, (float*)yAddr, tile, runs[..count], g * mG + row0, Math.Min(DirectRows, mG - row0));
                            }
                    }
                }, costPerItem: 2.0 * groups * blocks * DirectRows * k * DirectColumns);
            }
        }
        finally { BufferPool<float>.Shared.Return(packed); }
    }

    /// <summary>Columns [Column, Column + Length) of a tile are outputs of one row, the first at Target + channel·H·W of
    /// the target tensor (then ColStep apart).</summary>
    private readonly record struct OutputRun(int Column, int Length, int Target);

    /// <summary>The runs of valid outputs among the tile's columns [c0, c0 + DirectColumns) (at most one per column);
    /// returns their count. Computed once per tile for all its channel blocks.</summary>
    private static int OutputRuns(ConvWindows l, ProductTarget t, int c0, Span<OutputRun> runs)
    {
        int count = 0, c1 = c0 + DirectColumns;
        for (int row = c0 / l.Wq; row * l.Wq < c1; row++)
        {
            int img = row / l.Hq, r = row % l.Hq, rowStart = row * l.Wq;
            int lo = Math.Max(c0, rowStart), hi = Math.Min(c1, rowStart + t.Cols);
            if (r >= t.Rows || lo >= hi) continue;
            int target = t.Offset + ((t.Image0 + img) * t.Channels * t.H + t.Row0 + r * t.RowStep) * t.W + t.Col0 + (lo - rowStart) * t.ColStep;
            runs[count++] = new OutputRun(lo - c0, hi - lo, target);
        }
        return count;
    }

    /// <summary>Rows [0, rows) of the tile (output channels channel0…) to their runs in the target, plus the bias.</summary>
    private static unsafe void StoreTile(ProductTarget t, float* y, float* tile, ReadOnlySpan<OutputRun> runs, int channel0, int rows)
    {
        int plane = t.H * t.W;
        for (int i = 0; i < rows; i++)
        {
            int c = channel0 + i;
            float add = t.Bias == null ? 0f : t.Bias[t.BiasOffset + c];
            var vadd = Vector256.Create(add);
            float* src0 = tile + i * DirectColumns;
            foreach (var run in runs)
            {
                float* src = src0 + run.Column, dst = y + run.Target + (long)c * plane;
                int j = 0;
                if (t.ColStep == 1)
                    for (; j + 8 <= run.Length; j += 8) Avx.Store(dst + j, Avx.Add(Avx.LoadVector256(src + j), vadd));
                for (; j < run.Length; j++) dst[(long)j * t.ColStep] = src[j] + add;
            }
        }
    }

    /// <summary>tile[r·DirectColumns + j] = Σ_p a[p·DirectRows + r]·windows[rows[p] + j].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void DirectTile(int k, float* a, float* windows, long* rows, float* tile)
    {
        Vector256<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
        Vector256<float> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        for (int p = 0; p < k; p++, a += DirectRows)
        {
            float* row = windows + rows[p];
            var b0 = Avx.LoadVector256(row);
            var b1 = Avx.LoadVector256(row + 8);
            var b2 = Avx.LoadVector256(row + 16);
            var w = Avx.BroadcastScalarToVector256(a);
            c00 = Fma.MultiplyAdd(w, b0, c00); c01 = Fma.MultiplyAdd(w, b1, c01); c02 = Fma.MultiplyAdd(w, b2, c02);
            w = Avx.BroadcastScalarToVector256(a + 1);
            c10 = Fma.MultiplyAdd(w, b0, c10); c11 = Fma.MultiplyAdd(w, b1, c11); c12 = Fma.MultiplyAdd(w, b2, c12);
            w = Avx.BroadcastScalarToVector256(a + 2);
            c20 = Fma.MultiplyAdd(w, b0, c20); c21 = Fma.MultiplyAdd(w, b1, c21); c22 = Fma.MultiplyAdd(w, b2, c22);
            w = Avx.BroadcastScalarToVector256(a + 3);
            c30 = Fma.MultiplyAdd(w, b0, c30); c31 = Fma.MultiplyAdd(w, b1, c31); c32 = Fma.MultiplyAdd(w, b2, c32);
        }
        Avx.Store(tile, c00); Avx.Store(tile + 8, c01); Avx.Store(tile + 16, c02);
        Avx.Store(tile + DirectColumns, c10); Avx.Store(tile + DirectColumns + 8, c11); Avx.Store(tile + DirectColumns + 16, c12);
        Avx.Store(tile + 2 * DirectColumns, c20); Avx.Store(tile + 2 * DirectColumns + 8, c21); Avx.Store(tile + 2 * DirectColumns + 16, c22);
        Avx.Store(tile + 3 * DirectColumns, c30); Avx.Store(tile + 3 * DirectColumns + 8, c31); Avx.Store(tile + 3 * DirectColumns + 16, c32);
    }
}
