using System.Runtime.Intrinsics;

namespace MaskBit.Kernels.Cpu;

// Convolutions with at most FewOutputs output channels per group (the discriminator's 5×5 conv to its one logit
// channel, the decoder's conv to RGB) skip the GEMM: its register tile is 6 rows tall, so 1–3 rows leave most of its
// FMAs empty, and its weight gradient dW = dY·patchesᵀ would pack the whole patch matrix, transposed, for a handful of
// rows. Here every output channel is a row of its own, read straight from the windows (ConvWindows) through the row
// table: the forward accumulates 32 columns over a block of taps in registers; the weight gradient takes 4 taps at a
// time as dot products of their windows with a chunk of the gradient row. Both sweep columns inside a block of taps (a
// few channels), so that neighbouring tiles meet the same window lines in L1: a tile over every tap would touch all
// channels' windows and find them in L3. Vector256 on every ISA, as the depthwise kernel; the forward runs on AVX2
// and scalar only (on AVX-512 the GEMM's wider tile measured faster).
public sealed partial class CpuBackend
{
    /// <summary>Output channels per group up to which the convolution runs these kernels instead of the GEMM.</summary>
    internal const int FewOutputs = 3;

    private const int ForwardTileColumns = 32;
    /// <summary>Columns per work item of the forward, and taps per sweep over them (5 channels of a 5×5 kernel).</summary>
    private const int ForwardChunkColumns = 32 * ForwardTileColumns, ForwardBlockTaps = 128;
    private const int GradientTaps = 4;
    /// <summary>Columns of the gradient row per sweep of the weight gradient over a worker's taps (stays in L1).</summary>
    private const int GradientChunkColumns = 2048;

    /// <summary>product[co·ldp + col] = Σ_t w[co·k + t]·windows[rows[t] + col] for co &lt; m, col &lt; n.</summary>
    private static unsafe void FewOutputsForward(int m, int n, int k, float* w, float* windows, long* rows, float* product, int ldp)
    {
        nint wAddr = (nint)w, winAddr = (nint)windows, rowsAddr = (nint)rows, pAddr = (nint)product;
        int chunks = (n + ForwardChunkColumns - 1) / ForwardChunkColumns;
        CpuParallel.For(m * chunks, (i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
            {
                int co = i / chunks, c0 = i % chunks * ForwardChunkColumns, c1 = Math.Min(n, c0 + ForwardChunkColumns);
                for (int t0 = 0; t0 < k; t0 += ForwardBlockTaps)
                    for (int col = c0; col < c1; col += ForwardTileColumns)
                        ForwardTile(Math.Min(ForwardBlockTaps, k - t0), (float*)wAddr + (long)co * k + t0, (float*)winAddr + col, (long*)rowsAddr + t0,
                            (float*)pAddr + (long)co * ldp + col, Math.Min(ForwardTileColumns, c1 - col), accumulate: t0 > 0);
            }
        }, costPerItem: 2.0 * k * ForwardChunkColumns);
    }

    /// <summary>out[j] = Σ_t w[t]·windows[rows[t] + j] (+ out[j] when accumulating) for j &lt; columns ≤ 32: four
    /// vectors of accumulators, or vectors then single columns for a partial tile (which must not read past the
    /// windows' last column).</summary>
    private static unsafe void ForwardTile(int k, float* w, float* windows, long* rows, float* output, int columns, bool accumulate)
    {
        if (columns == ForwardTileColumns)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            if (accumulate)
            {
                a0 = Vector256.Load(output);
                a1 = Vector256.Load(output + 8);
                a2 = Vector256.Load(output + 16);
                a3 = Vector256.Load(output + 24);
            }
            for (int t = 0; t < k; t++)
            {
                float* s = windows + rows[t];
                var wt = Vector256.Create(w[t]);
                a0 = Vector256.FusedMultiplyAdd(wt, Vector256.Load(s), a0);
                a1 = Vector256.FusedMultiplyAdd(wt, Vector256.Load(s + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(wt, Vector256.Load(s + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(wt, Vector256.Load(s + 24), a3);
            }
            a0.Store(output);
            a1.Store(output + 8);
            a2.Store(output + 16);
            a3.Store(output + 24);
            return;
        }
        int j = 0;
        for (; j + 8 <= columns; j += 8)
        {
            var a = accumulate ? Vector256.Load(output + j) : Vector256<float>.Zero;
            for (int t = 0; t < k; t++) a = Vector256.FusedMultiplyAdd(Vector256.Create(w[t]), Vector256.Load(windows + rows[t] + j), a);
            a.Store(output + j);
        }
        for (; j < columns; j++)
        {
            float s = accumulate ? output[j] : 0f;
            for (int t = 0; t < k; t++) s = MathF.FusedMultiplyAdd(w[t], windows[rows[t] + j], s);
            output[j] = s;
        }
    }

    /// <summary>dw[co·k + t] = beta·dw[co·k + t] + Σ_col dy[co·ldy + col]·windows[rows[t] + col] for co &lt; m, t &lt; k,
    /// col &lt; n (the columns the windows wrap into hold zeros in dy).</summary>
    private static unsafe void FewOutputsWeightGradient(int m, int n, int k, float* dy, int ldy, float* windows, long* rows, float* dw, float beta)
    {
        nint dyAddr = (nint)dy, winAddr = (nint)windows, rowsAddr = (nint)rows, dwAddr = (nint)dw;
        int blocks = (k + GradientTaps - 1) / GradientTaps;
        // Each worker sweeps chunks of the gradient row over its blocks of taps (the chunk stays in L1), adding each
        // chunk's dot products into dw.
        CpuParallel.For(m * blocks, (i0, i1) =>
        {
            Span<float> sums = stackalloc float[GradientTaps];
            for (int c0 = 0; c0 < n; c0 += GradientChunkColumns)
            {
                int columns = Math.Min(GradientChunkColumns, n - c0);
                for (int i = i0; i < i1; i++)
                {
                    int co = i / blocks, t0 = i % blocks * GradientTaps, taps = Math.Min(GradientTaps, k - t0);
                    TapDots((float*)dyAddr + (long)co * ldy + c0, columns, (float*)winAddr + c0, (long*)rowsAddr + t0, taps, sums);
                    float* to = (float*)dwAddr + (long)co * k + t0;
                    float keep = c0 > 0 ? 1f : beta;
                    for (int q = 0; q < taps; q++) to[q] = keep == 0f ? sums[q] : keep * to[q] + sums[q];
                }
            }
        }, costPerItem: 2.0 * n * GradientTaps);
    }

    /// <summary>sums[q] = Σ_col g[col]·windows[rows[q] + col] for q &lt; taps ≤ 4, col &lt; n.</summary>
    private static unsafe void TapDots(float* g, int n, float* windows, long* rows, int taps, Span<float> sums)
    {
        // A partial block repeats its last tap (its sums are not stored) so that the loop keeps four streams.
        float* s0 = windows + rows[0], s1 = windows + rows[Math.Min(1, taps - 1)];
        float* s2 = windows + rows[Math.Min(2, taps - 1)], s3 = windows + rows[Math.Min(3, taps - 1)];
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int col = 0;
        for (; col + 8 <= n; col += 8)
        {
            var gv = Vector256.Load(g + col);
            a0 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(s0 + col), a0);
            a1 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(s1 + col), a1);
            a2 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(s2 + col), a2);
            a3 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(s3 + col), a3);
        }
        float r0 = Vector256.Sum(a0), r1 = Vector256.Sum(a1), r2 = Vector256.Sum(a2), r3 = Vector256.Sum(a3);
        for (; col < n; col++)
        {
            r0 = MathF.FusedMultiplyAdd(g[col], s0[col], r0);
            r1 = MathF.FusedMultiplyAdd(g[col], s1[col], r1);
            r2 = MathF.FusedMultiplyAdd(g[col], s2[col], r2);
            r3 = MathF.FusedMultiplyAdd(g[col], s3[col], r3);
        }
        sums[0] = r0;
        if (taps > 1) sums[1] = r1;
        if (taps > 2) sums[2] = r2;
        if (taps > 3) sums[3] = r3;
    }
}
