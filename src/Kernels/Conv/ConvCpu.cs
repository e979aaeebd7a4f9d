using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MaskBit.Kernels.Cpu;

// 2-D convolution on the CPU, in three shapes of work:
// - general convs run as GEMMs over column chunks. A chunk is a run of output rows (n, oh) of one group; its
//   input patches are unfolded (im2col) into a bounded scratch of K = CinG·KH·KW rows × chunk columns, so the
//   GEMM carries all the FLOPs while the scratch stays cache-sized whatever the map size;
// - 1×1 stride-1 convs without padding are plain (batched) GEMMs on the tensors themselves;
// - depthwise convs (the discriminator's blur) use a direct kernel: a GEMM with K = KH·KW would be all overhead.
// Parallelism: the GEMM spreads itself over the cores; unfolding, folding and copies are split over channels.
public sealed partial class CpuBackend
{
    /// <summary>Floats of unfolded patches per chunk (4 MiB): wide enough for an efficient GEMM, small enough to
    /// stay in the last-level cache between the unfolding and the GEMM. Tests shrink it to exercise chunk edges.</summary>
    internal static int ChunkFloats { get; set; } = 1 << 20;

    public void Conv2dForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        if (IsDepthwise(d)) { DepthwiseForward(d, x, w, bias, y); return; }
        if (IsPointwise(d))
        {
            int hw = d.H * d.W;
            for (int g = 0; g < d.Groups; g++)
                Gemm(new GemmDesc(d.CoutPerGroup, hw, d.CinPerGroup, Batch: d.N, StrideA: 0,
                        StrideB: (long)d.Cin * hw, StrideC: (long)d.Cout * hw),
                    w.At((long)g * d.CoutPerGroup * d.CinPerGroup), x.At((long)g * d.CinPerGroup * hw), y.At((long)g * d.CoutPerGroup * hw));
            if (bias is Buf b) AddChannelBias(d, b, y);
            return;
        }

        if (d.StrideH == 1 && d.StrideW == 1 && d.Groups == 1 && Sgemm.Vectorized) { ImplicitForward(d, x, w, bias, y); return; }

        var plan = new ChunkPlan(d);
        using var cols = Scratch(plan.ColumnsFloats);
        using var product = Scratch(plan.OutputFloats);
        float[] X = Arr(x), Y = Arr(y);
        float[]? bias0 = bias is Buf bb ? Arr(bb) : null;
        int biasOff = bias is Buf bo ? Off(bo) : 0;
        for (int g = 0; g < d.Groups; g++)
            for (int r0 = 0; r0 < plan.TotalRows; r0 += plan.Rows)
            {
                int r1 = Math.Min(r0 + plan.Rows, plan.TotalRows), width = (r1 - r0) * d.OW;
                Unfold(d, toColumns: true, X, Off(x), g, r0, r1, cols.Floats);
                Gemm(new GemmDesc(d.CoutPerGroup, width, plan.K), w.At((long)g * d.CoutPerGroup * plan.K),
                    new Buf(cols, 0), new Buf(product, 0));
                MoveOutputChunk(d, toChunk: false, Y, Off(y), g, r0, r1, product.Floats, bias0, biasOff);
            }
    }

    /// <summary>
    /// Stride-1 convolution as one implicit GEMM per image: with the input zero-padded to (Hp, Wp), patch row
    /// k = (ci, kh, kw) of output position n = oy·Wp + ox is xpad[ci·Hp·Wp + kh·Wp + kw + n], i.e. every row of the
    /// patch matrix is a shifted window of the padded input. The GEMM reads those windows through a row-offset
    /// table while packing B, so no im2col matrix is written; the Wp − OW columns that wrap around a row are
    /// computed and dropped when the result is copied out.
    /// </summary>
    private unsafe void ImplicitForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        int hp = d.OH + d.KH - 1, wp = d.OW + d.KW - 1, k = d.Cin * d.KH * d.KW;
        int width = (d.OH - 1) * wp + d.OW;                    // last valid output column + 1
        long plane = (long)hp * wp;
        using var padded = Scratch(d.Cin * plane);
        using var product = Scratch((long)d.Cout * width);
        var rows = BufferPool<long>.Shared.Rent(k);
        for (int ci = 0, r = 0; ci < d.Cin; ci++)
            for (int kh = 0; kh < d.KH; kh++)
                for (int kw = 0; kw < d.KW; kw++) rows[r++] = ci * plane + (long)kh * wp + kw;
        float[] X = Arr(x), Y = Arr(y), P = padded.Floats, C = product.Floats;
        var desc = d;
        try
        {
            for (int n = 0; n < d.N; n++)
            {
                int xBase = Off(x) + n * d.Cin * d.H * d.W;
                CpuParallel.For(d.Cin, (c0, c1) =>
                {
                    for (int ci = c0; ci < c1; ci++)
                    {
                        var dst = P.AsSpan((int)(ci * plane), (int)plane);
                        dst.Clear();
                        for (int r = 0; r < desc.H; r++)
                            X.AsSpan(xBase + (ci * desc.H + r) * desc.W, desc.W).CopyTo(dst.Slice((r + desc.PadTop) * wp + desc.PadLeft, desc.W));
                    }
                }, costPerItem: plane);
                fixed (float* pw = Arr(w), pp = P, pc = C)
                fixed (long* pr = rows)
                    GemmColumns(d.Cout, width, k, new MatrixView(pw + Off(w), k, false), new MatrixView(pp, 0, false, pr), pc, width);
                float[]? biasArr = bias is Buf bb ? Arr(bb) : null;
                int biasOff = bias is Buf bo ? Off(bo) : 0, yBase = Off(y) + n * d.Cout * d.OH * d.OW;
                CpuParallel.For(d.Cout, (o0, o1) =>
                {
                    for (int co = o0; co < o1; co++)
                    {
                        float b = biasArr != null ? biasArr[biasOff + co] : 0f;
                        for (int oy = 0; oy < desc.OH; oy++)
                        {
                            var src = C.AsSpan(co * width + oy * wp, desc.OW);
                            var dst = Y.AsSpan(yBase + (co * desc.OH + oy) * desc.OW, desc.OW);
                            if (b == 0f) src.CopyTo(dst); else TensorPrimitives.Add(src, b, dst);
                        }
                    }
                }, costPerItem: (double)desc.OH * desc.OW);
            }
        }
        finally { BufferPool<long>.Shared.Return(rows); }
    }

    /// <summary>C (m×n, row stride ldc) = A·B for views the Buf-based Gemm cannot express, split over the cores
    /// by column ranges.</summary>
    private static unsafe void GemmColumns(int m, int n, int k, MatrixView a, MatrixView b, float* c, int ldc)
    {
        int workers = Math.Max(1, Math.Min(CpuParallel.Workers, n / Sgemm.NR));
        nint cAddr = (nint)c;
        CpuParallel.For(workers, (w0, w1) =>
        {
            float[] packA = BufferPool<float>.Shared.Rent(Sgemm.PackedALength), packB = BufferPool<float>.Shared.Rent(Sgemm.PackedBLength);
            fixed (float* pa = packA, pb = packB)
                for (int wk = w0; wk < w1; wk++)
                {
                    int lo = (int)((long)n * wk / workers / Sgemm.NR * Sgemm.NR), hi = wk + 1 == workers ? n : (int)((long)n * (wk + 1) / workers / Sgemm.NR * Sgemm.NR);
                    if (lo < hi) Sgemm.Run(m, hi - lo, k, a, b.At(0, lo), (float*)cAddr + lo, ldc, 1f, 0f, pa, pb);
                }
            BufferPool<float>.Shared.Return(packA);
            BufferPool<float>.Shared.Return(packB);
        }, costPerItem: 2.0 * m * n * k / workers);
    }

    public void Conv2dBackwardInput(in Conv2dDesc d, Buf dy, Buf w, Buf dx)
    {
        if (IsDepthwise(d)) { DepthwiseBackwardInput(d, dy, w, dx); return; }
        if (IsPointwise(d))
        {
            int hw = d.H * d.W;
            for (int g = 0; g < d.Groups; g++)
                Gemm(new GemmDesc(d.CinPerGroup, hw, d.CoutPerGroup, TransA: true, Batch: d.N, StrideA: 0,
                        StrideB: (long)d.Cout * hw, StrideC: (long)d.Cin * hw),
                    w.At((long)g * d.CoutPerGroup * d.CinPerGroup), dy.At((long)g * d.CoutPerGroup * hw), dx.At((long)g * d.CinPerGroup * hw));
            return;
        }

        // dcols = Wᵀ·dY per chunk, folded back (col2im) into dx, which overlapping patches accumulate into.
        var plan = new ChunkPlan(d);
        using var cols = Scratch(plan.ColumnsFloats);
        using var gradChunk = Scratch(plan.OutputFloats);
        Fill(dx, (long)d.N * d.Cin * d.H * d.W, 0f);
        float[] DY = Arr(dy), DX = Arr(dx);
        for (int g = 0; g < d.Groups; g++)
            for (int r0 = 0; r0 < plan.TotalRows; r0 += plan.Rows)
            {
                int r1 = Math.Min(r0 + plan.Rows, plan.TotalRows), width = (r1 - r0) * d.OW;
                MoveOutputChunk(d, toChunk: true, DY, Off(dy), g, r0, r1, gradChunk.Floats, null, 0);
                Gemm(new GemmDesc(plan.K, width, d.CoutPerGroup, TransA: true), w.At((long)g * d.CoutPerGroup * plan.K),
                    new Buf(gradChunk, 0), new Buf(cols, 0));
                Unfold(d, toColumns: false, DX, Off(dx), g, r0, r1, cols.Floats);
            }
    }

    public void Conv2dBackwardWeight(in Conv2dDesc d, Buf x, Buf dy, Buf dw, Buf? dbias)
    {
        if (dbias is Buf db) ChannelSums(d, dy, db);
        if (IsDepthwise(d)) { DepthwiseBackwardWeight(d, x, dy, dw); return; }
        if (IsPointwise(d))
        {
            // dW_g = Σ_n dY[n,g]·X[n,g]ᵀ: one GEMM per image, accumulating (a batched GEMM into one C would race).
            int hw = d.H * d.W;
            for (int g = 0; g < d.Groups; g++)
                for (int n = 0; n < d.N; n++)
                    Gemm(new GemmDesc(d.CoutPerGroup, d.CinPerGroup, hw, TransB: true),
                        dy.At(((long)n * d.Cout + g * d.CoutPerGroup) * hw), x.At(((long)n * d.Cin + g * d.CinPerGroup) * hw),
                        dw.At((long)g * d.CoutPerGroup * d.CinPerGroup), beta: n == 0 ? 0f : 1f);
            return;
        }

        // dW_g = Σ_chunks dY_chunk·colsᵀ.
        var plan = new ChunkPlan(d);
        using var cols = Scratch(plan.ColumnsFloats);
        using var gradChunk = Scratch(plan.OutputFloats);
        float[] X = Arr(x), DY = Arr(dy);
        for (int g = 0; g < d.Groups; g++)
            for (int r0 = 0; r0 < plan.TotalRows; r0 += plan.Rows)
            {
                int r1 = Math.Min(r0 + plan.Rows, plan.TotalRows), width = (r1 - r0) * d.OW;
                MoveOutputChunk(d, toChunk: true, DY, Off(dy), g, r0, r1, gradChunk.Floats, null, 0);
                Unfold(d, toColumns: true, X, Off(x), g, r0, r1, cols.Floats);
                Gemm(new GemmDesc(d.CoutPerGroup, plan.K, width, TransB: true), new Buf(gradChunk, 0), new Buf(cols, 0),
                    dw.At((long)g * d.CoutPerGroup * plan.K), beta: r0 == 0 ? 0f : 1f);
            }
    }

    private static bool IsDepthwise(in Conv2dDesc d) => d.Groups > 1 && d.Groups == d.Cin && d.Groups == d.Cout;

    private static bool IsPointwise(in Conv2dDesc d) =>
        d.KH == 1 && d.KW == 1 && d.StrideH == 1 && d.StrideW == 1 && d.PadTop == 0 && d.PadLeft == 0 && d.OH == d.H && d.OW == d.W;

    private CpuStorage Scratch(long floats) => (CpuStorage)Allocate(floats, DType.Float32, zero: false);

    /// <summary>How a general conv is cut into chunks of whole output rows over the flattened (n, oh) axis.</summary>
    private readonly struct ChunkPlan
    {
        public readonly int K, Rows, TotalRows;

        public ChunkPlan(in Conv2dDesc d)
        {
            K = d.CinPerGroup * d.KH * d.KW;
            TotalRows = d.N * d.OH;
            Rows = Math.Clamp(ChunkFloats / (Math.Max(K, d.CoutPerGroup) * d.OW), 1, TotalRows);
            ColumnsFloats = (long)K * Rows * d.OW;
            OutputFloats = (long)d.CoutPerGroup * Rows * d.OW;
        }

        public long ColumnsFloats { get; }
        public long OutputFloats { get; }
    }

    /// <summary>The output positions o in [lo, hi) whose input tap o·stride + k − pad lies inside [0, size).</summary>
    private static (int Lo, int Hi) ValidTaps(int k, int pad, int stride, int size, int outSize)
    {
        int lo = pad - k <= 0 ? 0 : (pad - k + stride - 1) / stride;
        int last = size - 1 - k + pad;
        int hi = last < 0 ? 0 : Math.Min(outSize, last / stride + 1);
        return (lo, Math.Max(lo, hi));
    }

    /// <summary>im2col (toColumns) or its adjoint col2im (accumulating into the image) for output rows [r0, r1)
    /// of the flattened (n, oh) axis and group g. Column row (ci, kh, kw) holds, for every output position of the
    /// chunk, the input value that tap reads (zero in the padding).</summary>
    private static void Unfold(Conv2dDesc d, bool toColumns, float[] image, int imageOff, int g, int r0, int r1, float[] cols)
    {
        int width = (r1 - r0) * d.OW, taps = d.KH * d.KW;
        CpuParallel.For(d.CinPerGroup, (c0, c1) =>
        {
            for (int ci = c0; ci < c1; ci++)
                for (int kh = 0; kh < d.KH; kh++)
                    for (int kw = 0; kw < d.KW; kw++)
                    {
                        var colRow = cols.AsSpan((ci * taps + kh * d.KW + kw) * width, width);
                        var (lo, hi) = ValidTaps(kw, d.PadLeft, d.StrideW, d.W, d.OW);
                        for (int r = r0; r < r1; r++)
                        {
                            int n = r / d.OH, oh = r - n * d.OH, ih = oh * d.StrideH + kh - d.PadTop;
                            var seg = colRow.Slice((r - r0) * d.OW, d.OW);
                            if (ih < 0 || ih >= d.H || lo == hi)
                            {
                                if (toColumns) seg.Clear();
                                continue;
                            }
                            var src = image.AsSpan(imageOff + ((n * d.Cin + g * d.CinPerGroup + ci) * d.H + ih) * d.W, d.W);
                            if (toColumns) { seg[..lo].Clear(); seg[hi..].Clear(); }
                            MoveTapRow(toColumns, src, lo * d.StrideW + kw - d.PadLeft, d.StrideW, seg.Slice(lo, hi - lo));
                        }
                    }
        }, costPerItem: (double)taps * width);
    }

    /// <summary>seg[o] = src[start + o·stride] (gather), or src[start + o·stride] += seg[o] (scatter-add).</summary>
    private static void MoveTapRow(bool gather, Span<float> src, int start, int stride, Span<float> seg)
    {
        if (stride == 1)
        {
            var s = src.Slice(start, seg.Length);
            if (gather) s.CopyTo(seg);
            else TensorPrimitives.Add(s, seg, s);
            return;
        }
        // Indices were clipped to the row by ValidTaps: skip the bounds checks of the strided loop.
        ref float s0 = ref src[start];
        ref float c0 = ref MemoryMarshal.GetReference(seg);
        if (gather) for (int o = 0; o < seg.Length; o++) Unsafe.Add(ref c0, o) = Unsafe.Add(ref s0, o * stride);
        else for (int o = 0; o < seg.Length; o++) Unsafe.Add(ref s0, o * stride) += Unsafe.Add(ref c0, o);
    }

    /// <summary>Moves output rows [r0, r1) of group g between the NCHW tensor and a (CoutG × chunk columns)
    /// GEMM operand: into the chunk (toChunk), or out of it into the tensor, adding the bias on the way.</summary>
    private static void MoveOutputChunk(Conv2dDesc d, bool toChunk, float[] plane, int planeOff, int g, int r0, int r1,
        float[] chunk, float[]? bias, int biasOff)
    {
        int width = (r1 - r0) * d.OW;
        CpuParallel.For(d.CoutPerGroup, (c0, c1) =>
        {
            for (int co = c0; co < c1; co++)
            {
                int channel = g * d.CoutPerGroup + co;
                // Rows of one image are contiguous in the tensor: move one run per image.
                for (int r = r0; r < r1;)
                {
                    int n = r / d.OH, runEnd = Math.Min(r1, (n + 1) * d.OH), len = (runEnd - r) * d.OW;
                    var t = plane.AsSpan(planeOff + ((n * d.Cout + channel) * d.OH + (r - n * d.OH)) * d.OW, len);
                    var c = chunk.AsSpan(co * width + (r - r0) * d.OW, len);
                    if (toChunk) t.CopyTo(c);
                    else if (bias != null) TensorPrimitives.Add(c, bias[biasOff + channel], t);
                    else c.CopyTo(t);
                    r = runEnd;
                }
            }
        }, costPerItem: width);
    }

    private void AddChannelBias(in Conv2dDesc d, Buf bias, Buf y)
    {
        float[] B = Arr(bias), Y = Arr(y);
        int bOff = Off(bias), yOff = Off(y), plane = d.OH * d.OW, cout = d.Cout;
        CpuParallel.For(d.N * cout, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
            {
                var s = Y.AsSpan(yOff + p * plane, plane);
                TensorPrimitives.Add(s, B[bOff + p % cout], s);
            }
        }, costPerItem: plane);
    }

    /// <summary>dbias[c] = Σ_{n, oh, ow} dy[n, c, oh, ow].</summary>
    private static void ChannelSums(in Conv2dDesc d, Buf dy, Buf dbias)
    {
        float[] DY = Arr(dy), DB = Arr(dbias);
        int dyOff = Off(dy), dbOff = Off(dbias), plane = d.OH * d.OW, cout = d.Cout, batch = d.N;
        CpuParallel.For(cout, (c0, c1) =>
        {
            for (int c = c0; c < c1; c++)
            {
                double s = 0;
                for (int n = 0; n < batch; n++) s += TensorPrimitives.Sum(DY.AsSpan(dyOff + (n * cout + c) * plane, plane));
                DB[dbOff + c] = (float)s;
            }
        }, costPerItem: (double)batch * plane);
    }

    // ---- depthwise (groups == Cin == Cout) -----------------------------------------------------------------
    // Strided taps read every s-th input element; splitting each input row into its s phases first makes every
    // tap row a contiguous slice, so all three passes run as SIMD multiply-adds and dot products.

    private enum DepthwisePass { Forward, BackwardInput, BackwardWeight }

    private static int PhaseLength(in Conv2dDesc d) => (d.W + d.StrideW - 1) / d.StrideW;

    /// <summary>phased[(ih·s + ph)·len + j] ↔ plane[ih·W + j·s + ph]: splits rows into phases (toPhases) or
    /// merges them back.</summary>
    private static void MovePhases(in Conv2dDesc d, Span<float> plane, Span<float> phased, bool toPhases)
    {
        int s = d.StrideW, len = PhaseLength(d);
        for (int ih = 0; ih < d.H; ih++)
            for (int ph = 0; ph < s; ph++)
            {
                var p = phased.Slice((ih * s + ph) * len, len);
                for (int j = 0, i = ih * d.W + ph; j * s + ph < d.W; j++, i += s)
                    if (toPhases) p[j] = plane[i]; else plane[i] = p[j];
            }
    }

    /// <summary>One (image, channel) plane of a depthwise conv over a phase-split input (see MovePhases).
    /// Forward: output += taps ⋆ input; BackwardInput: input (the gradient) += taps ⋆ᵀ output gradient;
    /// BackwardWeight: taps (the gradient) += Σ outGrad·input. The padding is clipped out of every row.</summary>
    private static void DepthwisePlane(in Conv2dDesc d, DepthwisePass pass, Span<float> phased, Span<float> taps, Span<float> output)
    {
        int s = d.StrideW, len = PhaseLength(d);
        for (int oh = 0; oh < d.OH; oh++)
        {
            var outRow = output.Slice(oh * d.OW, d.OW);
            for (int kh = 0; kh < d.KH; kh++)
            {
                int ih = oh * d.StrideH + kh - d.PadTop;
                if (ih < 0 || ih >= d.H) continue;
                for (int kw = 0; kw < d.KW; kw++)
                {
                    var (lo, hi) = ValidTaps(kw, d.PadLeft, s, d.W, d.OW);
                    if (lo == hi) continue;
                    int start = lo * s + kw - d.PadLeft, t = kh * d.KW + kw;
                    var inSeg = phased.Slice((ih * s + start % s) * len + start / s, hi - lo);
                    var outSeg = outRow[lo..hi];
                    switch (pass)
                    {
                        case DepthwisePass.Forward: TensorPrimitives.MultiplyAdd(inSeg, taps[t], outSeg, outSeg); break;
                        case DepthwisePass.BackwardInput: TensorPrimitives.MultiplyAdd(outSeg, taps[t], inSeg, inSeg); break;
                        default: taps[t] += TensorPrimitives.Dot(outSeg, inSeg); break;
                    }
                }
            }
        }
    }

    /// <summary>Runs body with one phase buffer for the calling worker
    /// (null when the stride is 1: rows are already contiguous).</summary>
    private static void WithPhaseScratch(in Conv2dDesc d, Action<float[]?> body)
    {
        float[]? scratch = d.StrideW == 1 ? null : BufferPool<float>.Shared.Rent(d.H * d.StrideW * PhaseLength(d));
        try { body(scratch); }
        finally { if (scratch != null) BufferPool<float>.Shared.Return(scratch); }
    }

    private static void DepthwiseForward(Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        float[] X = Arr(x), W = Arr(w), Y = Arr(y);
        float[]? B = bias is Buf b ? Arr(b) : null;
        int xOff = Off(x), wOff = Off(w), yOff = Off(y), bOff = bias is Buf bo ? Off(bo) : 0;
        int inPlane = d.H * d.W, outPlane = d.OH * d.OW, taps = d.KH * d.KW, channels = d.Cin;
        CpuParallel.For(d.N * channels, (p0, p1) => WithPhaseScratch(d, scratch =>
        {
            for (int p = p0; p < p1; p++)
            {
                int c = p % channels;
                var input = X.AsSpan(xOff + p * inPlane, inPlane);
                if (scratch != null) MovePhases(d, input, scratch, toPhases: true);
                var output = Y.AsSpan(yOff + p * outPlane, outPlane);
                output.Fill(B == null ? 0f : B[bOff + c]);
                DepthwisePlane(d, DepthwisePass.Forward, scratch ?? input, W.AsSpan(wOff + c * taps, taps), output);
            }
        }), costPerItem: 2.0 * outPlane * taps);
    }

    private static void DepthwiseBackwardInput(Conv2dDesc d, Buf dy, Buf w, Buf dx)
    {
        float[] DY = Arr(dy), W = Arr(w), DX = Arr(dx);
        int dyOff = Off(dy), wOff = Off(w), dxOff = Off(dx);
        int inPlane = d.H * d.W, outPlane = d.OH * d.OW, taps = d.KH * d.KW, channels = d.Cin;
        CpuParallel.For(d.N * channels, (p0, p1) => WithPhaseScratch(d, scratch =>
        {
            for (int p = p0; p < p1; p++)
            {
                var grad = DX.AsSpan(dxOff + p * inPlane, inPlane);
                Span<float> phased = scratch ?? grad;
                phased.Clear();
                DepthwisePlane(d, DepthwisePass.BackwardInput, phased, W.AsSpan(wOff + p % channels * taps, taps), DY.AsSpan(dyOff + p * outPlane, outPlane));
                if (scratch != null) MovePhases(d, grad, scratch, toPhases: false);
            }
        }), costPerItem: 2.0 * outPlane * taps);
    }

    private static void DepthwiseBackwardWeight(Conv2dDesc d, Buf x, Buf dy, Buf dw)
    {
        float[] X = Arr(x), DY = Arr(dy), DW = Arr(dw);
        int xOff = Off(x), dyOff = Off(dy), dwOff = Off(dw);
        int inPlane = d.H * d.W, outPlane = d.OH * d.OW, taps = d.KH * d.KW, channels = d.Cin, batch = d.N;
        CpuParallel.For(channels, (c0, c1) => WithPhaseScratch(d, scratch =>
        {
            for (int c = c0; c < c1; c++)
            {
                var grad = DW.AsSpan(dwOff + c * taps, taps);
                grad.Clear();
                for (int n = 0; n < batch; n++)
                {
                    int p = n * channels + c;
                    var input = X.AsSpan(xOff + p * inPlane, inPlane);
                    if (scratch != null) MovePhases(d, input, scratch, toPhases: true);
                    DepthwisePlane(d, DepthwisePass.BackwardWeight, scratch ?? input, grad, DY.AsSpan(dyOff + p * outPlane, outPlane));
                }
            }
        }), costPerItem: 2.0 * batch * outPlane * taps);
    }
}
