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

    /// <summary>Whether a product with rowsPerGroup output rows per group over `columns` window columns runs the direct
    /// tile: on AVX2 (AVX-512 keeps the GEMM's 6×32 tile), with more than FewOutputs rows (fewer have their own
    /// kernels) and at least one whole tile of columns (the last tile is shifted left to end at the last column, so
    /// it never reads past the windows the GEMM reads).</summary>
    private static bool UsesDirectTile(int rowsPerGroup, int columns) =>
        CpuIsa.Current == Isa.Avx2 && rowsPerGroup > FewOutputs && columns >= DirectColumns;

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

    /// <summary>The product A_g · windows_g of every group over one pass of images, to the target: A_g is (mG × k) at
    /// a + g·mG·k; rows holds each group's k tap offsets, group after group.</summary>
    private static unsafe void DirectProduct<TA>(ConvWindows l, int groups, int mG, int k, TA* a, float[] windows, long[] rows,
        ProductTarget t) where TA : unmanaged
    {
        int blocks = DirectBlocks(mG), panel = k * DirectRows;
        int width = l.Columns(t.Rows, t.Cols), tiles = (width + DirectColumns - 1) / DirectColumns;
        int length = DirectPackedLength(groups, mG, k);
        float[] packed = BufferPool<float>.Shared.Rent(length);
        try
        {
            PackDirectWeights(groups, mG, k, a, packed.AsSpan(0, length));
            fixed (float* pa = packed, pw = windows)
            fixed (long* pr = rows)
            {
                nint aAddr = (nint)pa, wAddr = (nint)pw, rAddr = (nint)pr;
                CpuParallel.For(tiles, (i0, i1) =>
                {
                    float* tile = stackalloc float[DirectRows * DirectColumns];
                    for (int i = i0; i < i1; i++)
                    {
                        int c0 = Math.Min(i * DirectColumns, width - DirectColumns);
                        for (int g = 0; g < groups; g++)
                            for (int b = 0; b < blocks; b++)
                            {
                                DirectTile(k, (float*)aAddr + (long)(g * blocks + b) * panel, (float*)wAddr + c0, (long*)rAddr + (long)g * k, tile);
                                int row0 = b * DirectRows;
                                CopyBand(l, t, tile, DirectColumns, c0, c0 + DirectColumns, g * mG + row0, Math.Min(DirectRows, mG - row0));
                            }
                    }
                }, costPerItem: 2.0 * groups * blocks * DirectRows * k * DirectColumns);
            }
        }
        finally { BufferPool<float>.Shared.Return(packed); }
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
