using System.Numerics.Tensors;

namespace MaskBit.Kernels.Cpu;

// 2-D convolution on the CPU, in three shapes of work:
// - general convs run as implicit GEMMs over shifted windows of the input, forward and both backwards
//   (ConvImplicit.cs, ConvWindows.cs): no pass writes a patch matrix;
// - 1×1 stride-1 convs without padding are plain (batched) GEMMs on the tensors themselves;
// - depthwise convs (the discriminator's blur) use a direct kernel: a GEMM with K = KH·KW would be all overhead.
// Parallelism: the GEMMs spread themselves over the cores; layouts and copies are split over channels.
public sealed partial class CpuBackend
{
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

        ImplicitForward(d, x, w, bias, y);
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

        ImplicitBackwardInput(d, dy, w, dx);
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

        ImplicitBackwardWeight(d, x, dy, dw);
    }

    private static bool IsDepthwise(in Conv2dDesc d) => d.Groups > 1 && d.Groups == d.Cin && d.Groups == d.Cout;

    private static bool IsPointwise(in Conv2dDesc d) =>
        d.KH == 1 && d.KW == 1 && d.StrideH == 1 && d.StrideW == 1 && d.PadTop == 0 && d.PadLeft == 0 && d.OH == d.H && d.OW == d.W;

    private CpuStorage Scratch(long floats) => (CpuStorage)Allocate(floats, DType.Float32, zero: false);

    /// <summary>The output positions o in [lo, hi) whose input tap o·stride + k − pad lies inside [0, size).</summary>
    internal static (int Lo, int Hi) ValidTaps(int k, int pad, int stride, int size, int outSize)
    {
        int lo = pad - k <= 0 ? 0 : (pad - k + stride - 1) / stride;
        int last = size - 1 - k + pad;
        int hi = last < 0 ? 0 : Math.Min(outSize, last / stride + 1);
        return (lo, Math.Max(lo, hi));
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
