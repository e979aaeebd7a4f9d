using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace MaskBit.Kernels.Cpu;

// 2-D convolution on the CPU, in three shapes of work:
// - general convs run as implicit GEMMs over shifted windows of the input, forward and both backwards
//   (ConvImplicit.cs, ConvWindows.cs): no pass writes a patch matrix;
// - 1×1 stride-1 convs without padding are plain (batched) GEMMs on the tensors themselves;
// - depthwise convs (the discriminator's blur) use a direct kernel: a GEMM with K = KH·KW would be all overhead.
// Operands may be float32, bfloat16 or float16 (outputs and gradients are float32): the GEMM paths widen 16-bit
// operands as they pack or lay them out; the depthwise kernel reads float32 only and widens them into scratch first.
// Parallelism: the GEMMs spread themselves over the cores; layouts and copies are split over channels.
public sealed partial class CpuBackend
{
    public void Conv2dForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        if (IsDepthwise(d))
        {
            using var wide = Float32Operands(ref x, InputCount(d), ref w, DepthwiseWeightCount(d));
            DepthwiseForward(d, x, w, bias, y);
            return;
        }
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
        if (IsDepthwise(d))
        {
            using var wide = Float32Operands(ref dy, OutputCount(d), ref w, DepthwiseWeightCount(d));
            DepthwiseBackwardInput(d, dy, w, dx);
            return;
        }
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
        if (IsDepthwise(d))
        {
            using var wide = Float32Operands(ref x, InputCount(d), ref dy, OutputCount(d));
            if (dbias is Buf depthwiseBias) ChannelSums(d, dy, depthwiseBias);
            DepthwiseBackwardWeight(d, x, dy, dw);
            return;
        }
        if (dbias is Buf db) ChannelSums(d, dy, db);
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

    private static long InputCount(in Conv2dDesc d) => (long)d.N * d.Cin * d.H * d.W;
    private static long OutputCount(in Conv2dDesc d) => (long)d.N * d.Cout * d.OH * d.OW;
    private static long DepthwiseWeightCount(in Conv2dDesc d) => (long)d.Cout * d.KH * d.KW;

    /// <summary>For the float32-only depthwise kernels: the 16-bit ones of two operands (a elements at
    /// <paramref name="a"/>, b at <paramref name="b"/>) widened into scratch, which the operand then points at;
    /// disposing the result frees that scratch.</summary>
    private Float32Scratch Float32Operands(ref Buf a, long aCount, ref Buf b, long bCount) =>
        new(Float32Copy(ref a, aCount), Float32Copy(ref b, bCount));

    private readonly struct Float32Scratch(CpuStorage? a, CpuStorage? b) : IDisposable
    {
        public void Dispose()
        {
            a?.Dispose();
            b?.Dispose();
        }
    }

    private CpuStorage? Float32Copy(ref Buf operand, long n)
    {
        if (operand.Storage.DType == DType.Float32) return null;
        var wide = Scratch(n);
        Convert(operand, new Buf(wide, 0), n);
        operand = new Buf(wide, 0);
        return wide;
    }

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

    /// <summary>dbias[c] = Σ_{n, oh, ow} dy[n, c, oh, ow] (a 16-bit dy is widened a plane at a time).</summary>
    private static void ChannelSums(in Conv2dDesc d, Buf dy, Buf dbias)
    {
        float[] DB = Arr(dbias);
        var planes = new SourceRows((CpuStorage)dy.Storage, Off(dy), CpuIsa.Current);
        int dbOff = Off(dbias), plane = d.OH * d.OW, cout = d.Cout, batch = d.N;
        CpuParallel.For(cout, (c0, c1) =>
        {
            float[] wide = BufferPool<float>.Shared.Rent(plane);   // unused when dy is float32
            try
            {
                for (int c = c0; c < c1; c++)
                {
                    double s = 0;
                    for (int n = 0; n < batch; n++)
                    {
                        s += TensorPrimitives.Sum(planes.Run((n * cout + c) * plane, plane, wide));
                    }
                    DB[dbOff + c] = (float)s;
                }
            }
            finally { BufferPool<float>.Shared.Return(wide); }
        }, costPerItem: (double)batch * plane);
    }

    // ---- depthwise (groups == Cin == Cout) -----------------------------------------------------------------
    // Each (image, channel) plane is first laid out padded and split into its column phases (PaddedPhases), so that
    // every tap of an output row reads one contiguous, unclipped run: the output row then accumulates all its taps in
    // 8-wide registers, with no per-tap calls (the discriminator's 4×4 stride-2 blur has rows of 8–16 outputs).

    /// <summary>A padded, phase-split plane: row r (input row r − PadTop), phase ph, position j holds input column
    /// j·StrideW + ph − PadLeft (zero outside the input). Tap (kh, kw) of output (oh, ow) is at
    /// oh·<see cref="OutputRowStep"/> + <see cref="TapOffsets"/>[kh·KW + kw] + ow. Rows are long enough for 8-wide loads past the last output.</summary>
    private readonly record struct PaddedPhases(int Rows, int Phases, int Length)
    {
        public static PaddedPhases For(in Conv2dDesc d) => new(
            Math.Max((d.OH - 1) * d.StrideH + d.KH, d.H + d.PadTop),
            d.StrideW,
            Math.Max((d.OW + 7) / 8 * 8 + (d.KW - 1) / d.StrideW, (d.W - 1 + d.PadLeft) / d.StrideW + 1));

        public int Floats => Rows * Phases * Length;

        /// <summary>Floats between the first taps of consecutive output rows.</summary>
        public int OutputRowStep(in Conv2dDesc d) => d.StrideH * Phases * Length;

        /// <summary>offsets[kh·KW + kw] = where tap (kh, kw) of output (0, 0) reads (output (oh, ow) adds
        /// oh·<see cref="OutputRowStep"/> + ow).</summary>
        public void TapOffsets(in Conv2dDesc d, Span<int> offsets)
        {
            for (int kh = 0, t = 0; kh < d.KH; kh++)
                for (int kw = 0; kw < d.KW; kw++, t++)
                    offsets[t] = (kh * Phases + kw % Phases) * Length + kw / Phases;
        }

        /// <summary>Lays out one input plane (H × W at src) into dst.</summary>
        public unsafe void Fill(in Conv2dDesc d, float* src, float* dst)
        {
            new Span<float>(dst, Floats).Clear();
            for (int ih = 0; ih < d.H; ih++)
                for (int ph = 0; ph < Phases; ph++)
                {
                    var (lo, hi) = ValidTaps(ph, d.PadLeft, Phases, d.W, Length);
                    float* s = src + (long)ih * d.W + lo * Phases + ph - d.PadLeft, o = dst + ((ih + d.PadTop) * Phases + ph) * Length;
                    for (int j = lo; j < hi; j++, s += Phases) o[j] = *s;
                }
        }

        /// <summary>The inverse of <see cref="Fill"/>: one H × W plane at dst from the layout at src.</summary>
        public unsafe void Gather(in Conv2dDesc d, float* src, float* dst)
        {
            for (int ih = 0; ih < d.H; ih++)
                for (int ph = 0; ph < Phases; ph++)
                {
                    var (lo, hi) = ValidTaps(ph, d.PadLeft, Phases, d.W, Length);
                    float* o = dst + (long)ih * d.W + lo * Phases + ph - d.PadLeft, s = src + ((ih + d.PadTop) * Phases + ph) * Length;
                    for (int j = lo; j < hi; j++, o += Phases) *o = s[j];
                }
        }
    }

    /// <summary>The 8 outputs of row `row` from column ow0 (zeros past `count`).</summary>
    private static unsafe Vector256<float> LoadPartial(float* row, int ow0, int count)
    {
        if (ow0 + 8 <= count) return Vector256.Load(row + ow0);
        var v = Vector256<float>.Zero;
        for (int j = 0; ow0 + j < count; j++) v = v.WithElement(j, row[ow0 + j]);
        return v;
    }

    private static unsafe void StorePartial(Vector256<float> v, float* row, int ow0, int count)
    {
        if (ow0 + 8 <= count) { v.Store(row + ow0); return; }
        for (int j = 0; ow0 + j < count; j++) row[ow0 + j] = v.GetElement(j);
    }

    /// <summary>Runs body with a worker's layout scratch (pinned).</summary>
    private static unsafe void WithLayoutScratch(PaddedPhases layout, Action<nint> body)
    {
        float[] scratch = BufferPool<float>.Shared.Rent(layout.Floats);
        try
        {
            fixed (float* p = scratch) body((nint)p);
        }
        finally { BufferPool<float>.Shared.Return(scratch); }
    }

    private static unsafe void DepthwiseForward(Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        float[] X = Arr(x), W = Arr(w), Y = Arr(y);
        float[]? B = bias is Buf b ? Arr(b) : null;
        int xOff = Off(x), wOff = Off(w), yOff = Off(y), bOff = bias is Buf bo ? Off(bo) : 0;
        int inPlane = d.H * d.W, outPlane = d.OH * d.OW, taps = d.KH * d.KW, channels = d.Cin;
        var layout = PaddedPhases.For(d);
        CpuParallel.For(d.N * channels, (p0, p1) => WithLayoutScratch(layout, scratch =>
        {
            float* P = (float*)scratch;
            Span<int> at = stackalloc int[taps];
            layout.TapOffsets(d, at);
            int oh1 = d.OH, ow1 = d.OW, rowStep = layout.OutputRowStep(d);
            fixed (float* px = X, pw = W, py = Y)
                for (int p = p0; p < p1; p++)
                {
                    int c = p % channels;
                    layout.Fill(d, px + xOff + (long)p * inPlane, P);
                    float* taps0 = pw + wOff + c * taps, output = py + yOff + (long)p * outPlane;
                    var start = Vector256.Create(B == null ? 0f : B[bOff + c]);
                    for (int oh = 0; oh < oh1; oh++)
                        for (int ow0 = 0; ow0 < ow1; ow0 += 8)
                        {
                            var acc = start;
                            float* row = P + oh * rowStep + ow0;
                            for (int t = 0; t < at.Length; t++)
                                acc = Vector256.FusedMultiplyAdd(Vector256.Create(taps0[t]), Vector256.Load(row + at[t]), acc);
                            StorePartial(acc, output + (long)oh * ow1, ow0, ow1);
                        }
                }
        }), costPerItem: 2.0 * outPlane * taps);
    }

    private static unsafe void DepthwiseBackwardInput(Conv2dDesc d, Buf dy, Buf w, Buf dx)
    {
        float[] DY = Arr(dy), W = Arr(w), DX = Arr(dx);
        int dyOff = Off(dy), wOff = Off(w), dxOff = Off(dx);
        int inPlane = d.H * d.W, outPlane = d.OH * d.OW, taps = d.KH * d.KW, channels = d.Cin;
        var layout = PaddedPhases.For(d);
        CpuParallel.For(d.N * channels, (p0, p1) => WithLayoutScratch(layout, scratch =>
        {
            float* Q = (float*)scratch;
            Span<int> at = stackalloc int[taps];
            layout.TapOffsets(d, at);
            int oh1 = d.OH, ow1 = d.OW, rowStep = layout.OutputRowStep(d);
            fixed (float* pdy = DY, pw = W, pdx = DX)
                for (int p = p0; p < p1; p++)
                {
                    // The padded input gradient: every output's gradient scattered to the taps that read it.
                    new Span<float>(Q, layout.Floats).Clear();
                    float* taps0 = pw + wOff + p % channels * taps, grad = pdy + dyOff + (long)p * outPlane;
                    for (int oh = 0; oh < oh1; oh++)
                        for (int ow0 = 0; ow0 < ow1; ow0 += 8)
                        {
                            var g = LoadPartial(grad + (long)oh * ow1, ow0, ow1);
                            float* row = Q + oh * rowStep + ow0;
                            for (int t = 0; t < at.Length; t++)
                            {
                                float* q = row + at[t];
                                Vector256.FusedMultiplyAdd(Vector256.Create(taps0[t]), g, Vector256.Load(q)).Store(q);
                            }
                        }
                    layout.Gather(d, Q, pdx + dxOff + (long)p * inPlane);
                }
        }), costPerItem: 2.0 * outPlane * taps);
    }

    private static unsafe void DepthwiseBackwardWeight(Conv2dDesc d, Buf x, Buf dy, Buf dw)
    {
        float[] X = Arr(x), DY = Arr(dy), DW = Arr(dw);
        int xOff = Off(x), dyOff = Off(dy), dwOff = Off(dw);
        int inPlane = d.H * d.W, outPlane = d.OH * d.OW, taps = d.KH * d.KW, channels = d.Cin, batch = d.N;
        var layout = PaddedPhases.For(d);
        CpuParallel.For(channels, (c0, c1) => WithLayoutScratch(layout, scratch =>
        {
            float* P = (float*)scratch;
            Span<Vector256<float>> acc = stackalloc Vector256<float>[taps];
            Span<int> at = stackalloc int[taps];
            layout.TapOffsets(d, at);
            int oh1 = d.OH, ow1 = d.OW, rowStep = layout.OutputRowStep(d);
            fixed (float* px = X, pdy = DY, pdw = DW)
                for (int c = c0; c < c1; c++)
                {
                    acc.Clear();
                    for (int n = 0; n < batch; n++)
                    {
                        int p = n * channels + c;
                        layout.Fill(d, px + xOff + (long)p * inPlane, P);
                        float* grad = pdy + dyOff + (long)p * outPlane;
                        for (int oh = 0; oh < oh1; oh++)
                            for (int ow0 = 0; ow0 < ow1; ow0 += 8)
                            {
                                var g = LoadPartial(grad + (long)oh * ow1, ow0, ow1);
                                float* row = P + oh * rowStep + ow0;
                                for (int t = 0; t < at.Length; t++)
                                    acc[t] = Vector256.FusedMultiplyAdd(g, Vector256.Load(row + at[t]), acc[t]);
                            }
                    }
                    for (int t = 0; t < taps; t++) pdw[dwOff + c * taps + t] = Vector256.Sum(acc[t]);
                }
        }), costPerItem: 2.0 * batch * outPlane * taps);
    }
}
