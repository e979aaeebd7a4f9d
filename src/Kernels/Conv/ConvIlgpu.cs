using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// 2-D convolution on an ILGPU accelerator, in two shapes of work:
// - implicit GEMMs through the tiled GEMM kernel (Gemm/GemmIlgpu.cs): the problem types below read the patch
//   matrix straight from the NCHW tensors while staging a tile, so no im2col buffer exists. Per group g:
//     forward        y[co, (n, oh, ow)]     = Σ_(ci, kh, kw) w[co, (ci, kh, kw)] · x-patch
//     input grad     dx[ci, (n, ih, iw)]    = Σ_(co, kh, kw) w[co, ci, kh, kw] · dy at the output that tap reads
//                                             from (a gather: no atomics; taps between stride phases read zero)
//     weight grad    dw[co, (ci, kh, kw)]   = Σ_(n, oh, ow) dy · x-patch, split over K into slices when the
//                                             output has too few tiles to fill the device, then summed;
// - direct kernels when a GEMM tile would be mostly idle (fewer than 4 channels per group on one side, e.g. the
//   depthwise blur or an RGB input): a thread per output / input element, and for the weight gradient a
//   thread per weight and slice of the reduction.
public sealed partial class IlgpuBackend
{
    /// <summary>The geometry of a <see cref="Conv2dDesc"/> as plain kernel data.</summary>
    public struct ConvShape
    {
        public int Batch, Cin, H, W, Cout, KH, KW, StrideH, StrideW, PadTop, PadLeft, OH, OW, Groups, CinG, CoutG;

        public static ConvShape From(in Conv2dDesc d) => new()
        {
            Batch = d.N, Cin = d.Cin, H = d.H, W = d.W, Cout = d.Cout, KH = d.KH, KW = d.KW,
            StrideH = d.StrideH, StrideW = d.StrideW, PadTop = d.PadTop, PadLeft = d.PadLeft, OH = d.OH, OW = d.OW,
            Groups = d.Groups, CinG = d.CinPerGroup, CoutG = d.CoutPerGroup,
        };

        public readonly int Taps => KH * KW;
        public readonly int InPlane => H * W;
        public readonly int OutPlane => OH * OW;

        /// <summary>Wider than any output-row difference qh − ah in the input gradient's tables
        /// (<see cref="ConvInputGradTabledProduct"/>): at least OH + the largest ah, and above the largest qh.</summary>
        public readonly int PhaseSpanH => OH + KH + H + PadTop;
        public readonly int PhaseSpanW => OW + KW + W + PadLeft;

        /// <summary>x[n, c, oh·stride + kh − pad, ow·stride + kw − pad], zero in the padding.</summary>
        public readonly float Input(ArrayView<float> x, int n, int c, int oh, int ow, int kh, int kw)
        {
            int ih = oh * StrideH + kh - PadTop, iw = ow * StrideW + kw - PadLeft;
            return ih >= 0 && ih < H && iw >= 0 && iw < W ? x[((n * Cin + c) * H + ih) * W + iw] : 0f;
        }

        /// <summary>dy at the output whose tap (kh, kw) reads input (ih, iw), zero when no output does.</summary>
        public readonly float OutputGradAt(ArrayView<float> dy, int n, int co, int ih, int iw, int kh, int kw)
        {
            int th = ih + PadTop - kh, tw = iw + PadLeft - kw;
            if (th < 0 || tw < 0) return 0f;
            int oh = th / StrideH, ow = tw / StrideW;
            return oh * StrideH == th && ow * StrideW == tw && oh < OH && ow < OW ? dy[((n * Cout + co) * OH + oh) * OW + ow] : 0f;
        }
    }

    /// <summary>Forward as C = A·B per group: A = w (CoutG × CinG·taps), B = patches (CinG·taps × N·OH·OW).</summary>
    public struct ConvForwardProduct : ITiledProduct
    {
        public ConvShape S;
        public int HasBias;

        public readonly int M => S.CoutG;
        public readonly int N => S.Batch * S.OutPlane;
        public readonly int K => S.CinG * S.Taps;
        public readonly int Items => S.Groups;
        public readonly bool AAlongK => true;
        public readonly bool BAlongK => false;   // neighbouring output columns read neighbouring inputs

        public readonly float LoadA(ArrayView<float> w, int g, int i, int k) => w[(g * S.CoutG + i) * K + k];

        public readonly float LoadB(ArrayView<float> x, int g, int k, int j)
        {
            int ci = k / S.Taps, tap = k - ci * S.Taps, kh = tap / S.KW;
            int n = j / S.OutPlane, pix = j - n * S.OutPlane, oh = pix / S.OW;
            return S.Input(x, n, g * S.CinG + ci, oh, pix - oh * S.OW, kh, tap - kh * S.KW);
        }

        public readonly void Store(ArrayView<float> y, ArrayView<float> bias, int g, int i, int j, float value)
        {
            int co = g * S.CoutG + i, n = j / S.OutPlane;
            y[(n * S.Cout + co) * S.OutPlane + j - n * S.OutPlane] = HasBias != 0 ? value + bias[co] : value;
        }
    }

    /// <summary>Input gradient per group: A = wᵀ (CinG × CoutG·taps), B = the dy each tap of each input position
    /// came from (CoutG·taps × N·H·W).</summary>
    public struct ConvInputGradProduct : ITiledProduct
    {
        public ConvShape S;

        public readonly int M => S.CinG;
        public readonly int N => S.Batch * S.InPlane;
        public readonly int K => S.CoutG * S.Taps;
        public readonly int Items => S.Groups;
        public readonly bool AAlongK => true;
        public readonly bool BAlongK => false;

        public readonly float LoadA(ArrayView<float> w, int g, int i, int k)
        {
            int co = k / S.Taps;
            return w[((g * S.CoutG + co) * S.CinG + i) * S.Taps + k - co * S.Taps];
        }

        public readonly float LoadB(ArrayView<float> dy, int g, int k, int j)
        {
            int co = k / S.Taps, tap = k - co * S.Taps, kh = tap / S.KW;
            int n = j / S.InPlane, pix = j - n * S.InPlane, ih = pix / S.W;
            return S.OutputGradAt(dy, n, g * S.CoutG + co, ih, pix - ih * S.W, kh, tap - kh * S.KW);
        }

        public readonly void Store(ArrayView<float> dx, ArrayView<float> unused, int g, int i, int j, float value)
        {
            int n = j / S.InPlane;
            dx[(n * S.Cin + g * S.CinG + i) * S.InPlane + j - n * S.InPlane] = value;
        }
    }

    /// <summary>Weight gradient: A = dy (CoutG × N·OH·OW), B = patchesᵀ (N·OH·OW × CinG·taps). The reduction
    /// axis is cut into <see cref="Splits"/> slices of <see cref="SliceLength"/>; item = slice·Groups + g writes
    /// its partial dw to c[slice·Cout·CinG·taps ...].</summary>
    public struct ConvWeightGradProduct : ITiledProduct
    {
        public ConvShape S;
        public int Splits, SliceLength;

        public readonly int M => S.CoutG;
        public readonly int N => S.CinG * S.Taps;
        public readonly int K => SliceLength;
        public readonly int Items => S.Groups * Splits;
        public readonly bool AAlongK => true;   // consecutive k are neighbouring output positions
        public readonly bool BAlongK => true;

        public readonly float LoadA(ArrayView<float> dy, int item, int i, int k)
        {
            int slice = item / S.Groups, g = item - slice * S.Groups, r = slice * SliceLength + k;
            if (r >= S.Batch * S.OutPlane) return 0f;
            int n = r / S.OutPlane;
            return dy[(n * S.Cout + g * S.CoutG + i) * S.OutPlane + r - n * S.OutPlane];
        }

        public readonly float LoadB(ArrayView<float> x, int item, int k, int j)
        {
            int slice = item / S.Groups, g = item - slice * S.Groups, r = slice * SliceLength + k;
            if (r >= S.Batch * S.OutPlane) return 0f;
            int n = r / S.OutPlane, pix = r - n * S.OutPlane, oh = pix / S.OW;
            int ci = j / S.Taps, tap = j - ci * S.Taps, kh = tap / S.KW;
            return S.Input(x, n, g * S.CinG + ci, oh, pix - oh * S.OW, kh, tap - kh * S.KW);
        }

        public readonly void Store(ArrayView<float> dw, ArrayView<float> unused, int item, int i, int j, float value)
        {
            int slice = item / S.Groups, g = item - slice * S.Groups;
            dw[(slice * S.Cout + g * S.CoutG + i) * N + j] = value;
        }
    }

    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvShape, int> DirectForwardEntry = DirectConvForwardKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvShape> DirectInputGradEntry = DirectConvInputGradKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvShape, int> DirectWeightGradEntry = DirectConvWeightGradKernel;

    /// <summary>Fewer than 4 channels per group on either side: a GEMM tile's rows would mostly idle.</summary>
    private static bool UseDirectConv(in Conv2dDesc d) => d.CoutPerGroup < 4 || d.CinPerGroup < 4;

    private static void CheckConvSize(in Conv2dDesc d)
    {
        long largest = Math.Max((long)d.N * d.Cin * d.H * d.W, (long)d.N * d.Cout * d.OH * d.OW);
        if (largest > int.MaxValue) throw new NotSupportedException($"convolution {d}: tensors over 2^31 elements exceed the ILGPU kernels' 32-bit indexing");
    }

    /// <summary>Which tensor of a convolution a pass writes: the forward y, the input gradient x, the weight gradient w.</summary>
    private enum ConvWritten { X, W, Y }

    /// <summary>A convolution pass's three tensors on this device — x (N, Cin, H, W), w (Cout, CinG, KH, KW) and y (N,
    /// Cout, OH, OW), where the backward passes' y is dy and their x or w the gradient written — as float32 kernel
    /// views, with the geometry as kernel data (and y's buffer, which the bias gradient sums). The two tensors a pass
    /// reads are widened into float32 temporaries where they hold 16-bit values; Dispose returns those (after the
    /// pass's kernels are queued).</summary>
    private readonly struct ConvTensors(ConvShape shape, Buf x, Buf w, Buf y, IlgpuBackend device, Storage? wideX, Storage? wideW, Storage? wideY) : IDisposable
    {
        public readonly ConvShape Shape = shape;
        public readonly Buf Y = y;
        public readonly ArrayView<float> XView = device.F(x, (long)shape.Batch * shape.Cin * shape.InPlane);
        public readonly ArrayView<float> WView = device.F(w, (long)shape.Cout * shape.CinG * shape.Taps);
        public readonly ArrayView<float> YView = device.F(y, (long)shape.Batch * shape.Cout * shape.OutPlane);

        public void Dispose()
        {
            wideX?.Dispose();
            wideW?.Dispose();
            wideY?.Dispose();
        }
    }

    /// <summary>The tensors of a pass over <paramref name="d"/> that writes <paramref name="written"/> (see
    /// <see cref="ConvTensors"/>), after checking that they fit the kernels' 32-bit indexing.</summary>
    private ConvTensors OpenConv(in Conv2dDesc d, Buf x, Buf w, Buf y, ConvWritten written)
    {
        CheckConvSize(d);
        var shape = ConvShape.From(d);
        var wideX = written == ConvWritten.X ? null : Float32Copy(ref x, (long)d.N * d.Cin * d.H * d.W);
        var wideW = written == ConvWritten.W ? null : Float32Copy(ref w, (long)d.Cout * d.CinPerGroup * d.KH * d.KW);
        var wideY = written == ConvWritten.Y ? null : Float32Copy(ref y, (long)d.N * d.Cout * d.OH * d.OW);
        return new ConvTensors(shape, x, w, y, this, wideX, wideW, wideY);
    }

    /// <summary>The forward with the lab's used version (Conv/ConvIlgpuV2.cs) where the backend runs the lab's GEMM,
    /// else version 1 (GEMM v1, the CPU accelerator).</summary>
    public void Conv2dForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y) =>
        ConvForwardVersion(Sizes.GemmVersion == 1 ? 1 : Lab.ConvLab.BackendVersion, d, x, w, bias, y);

    /// <summary>The input gradient with the lab's used version where the backend runs the lab's GEMM, else version 1.</summary>
    public void Conv2dBackwardInput(in Conv2dDesc d, Buf dy, Buf w, Buf dx) =>
        ConvInputGradVersion(Sizes.GemmVersion == 1 ? 1 : Lab.ConvBackwardLab.BackendVersion, d, dy, w, dx);

    /// <summary>The weight gradient with the lab's used version where the backend runs the lab's GEMM, else version 1.</summary>
    public void Conv2dBackwardWeight(in Conv2dDesc d, Buf x, Buf dy, Buf dw, Buf? dbias) =>
        ConvWeightGradVersion(Sizes.GemmVersion == 1 ? 1 : Lab.ConvBackwardLab.BackendVersion, d, x, dy, dw, dbias);

    /// <summary>Up to <paramref name="wanted"/> equal slices of a reduction, none empty: (count, length).</summary>
    private static (int Count, int Length) Slices(int reduction, int wanted)
    {
        int length = Math.Max(1, (reduction + wanted - 1) / wanted);
        return (Math.Max(1, (reduction + length - 1) / length), length);
    }

    /// <summary>dbias[c] = Σ_(n, oh, ow) dy[n, c, oh, ow]: per-plane sums, then over the batch.</summary>
    private void ChannelSums(in Conv2dDesc d, Buf dy, Buf dbias)
    {
        int planes = d.N * d.Cout;
        if (d.N == 1) { ReduceSum(dy, dbias, planes, d.OH * d.OW, 1); return; }
        using var planeSums = Allocate(planes, DType.Float32, zero: false);
        ReduceSum(dy, new Buf(planeSums, 0), planes, d.OH * d.OW, 1);
        ReduceSum(new Buf(planeSums, 0), dbias, 1, d.N, d.Cout);
    }

    // ---- direct kernels -----------------------------------------------------------------------------------
    internal static void DirectConvForwardKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> bias, ArrayView<float> y,
        ConvShape s, int hasBias)
    {
        int outputs = s.Batch * s.Cout * s.OutPlane;
        for (int o = Grid.GlobalIndex.X; o < outputs; o = GridStrideNext(o, outputs, GridStrideStep))
        {
            int plane = o / s.OutPlane, pix = o - plane * s.OutPlane, n = plane / s.Cout, co = plane - n * s.Cout;
            int oh = pix / s.OW, ow = pix - oh * s.OW, g = co / s.CoutG;
            float acc = hasBias != 0 ? bias[co] : 0f;
            for (int ci = 0; ci < s.CinG; ci++)
                for (int kh = 0; kh < s.KH; kh++)
                    for (int kw = 0; kw < s.KW; kw++)
                        acc += w[((co * s.CinG + ci) * s.KH + kh) * s.KW + kw] * s.Input(x, n, g * s.CinG + ci, oh, ow, kh, kw);
            y[o] = acc;
        }
    }

    /// <summary>A thread per input element gathers from the outputs its taps fed (no atomics).</summary>
    internal static void DirectConvInputGradKernel(ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, ConvShape s)
    {
        int inputs = s.Batch * s.Cin * s.InPlane;
        for (int e = Grid.GlobalIndex.X; e < inputs; e = GridStrideNext(e, inputs, GridStrideStep))
        {
            int plane = e / s.InPlane, pix = e - plane * s.InPlane, n = plane / s.Cin, c = plane - n * s.Cin;
            int ih = pix / s.W, iw = pix - ih * s.W, g = c / s.CinG, ci = c - g * s.CinG;
            float acc = 0f;
            for (int cog = 0; cog < s.CoutG; cog++)
            {
                int co = g * s.CoutG + cog;
                for (int kh = 0; kh < s.KH; kh++)
                    for (int kw = 0; kw < s.KW; kw++)
                        acc += w[((co * s.CinG + ci) * s.KH + kh) * s.KW + kw] * s.OutputGradAt(dy, n, co, ih, iw, kh, kw);
            }
            dx[e] = acc;
        }
    }

    /// <summary>A thread per (slice, weight element) sums dy · input over its slice of (n, oh, ow) into
    /// partials[slice·weights + weight] (the weight gradient itself when there is one slice).</summary>
    internal static void DirectConvWeightGradKernel(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partials, ConvShape s, int sliceLength)
    {
        int weights = s.Cout * s.CinG * s.Taps, reduction = s.Batch * s.OutPlane;
        for (int item = Grid.GlobalIndex.X; item < partials.IntLength; item = GridStrideNext(item, partials.IntLength, GridStrideStep))
        {
            int slice = item / weights, e = item - slice * weights;
            int co = e / (s.CinG * s.Taps), rest = e - co * s.CinG * s.Taps, ci = rest / s.Taps, tap = rest - ci * s.Taps;
            int kh = tap / s.KW, kw = tap - kh * s.KW, c = co / s.CoutG * s.CinG + ci;
            int end = XMath.Min(reduction, (slice + 1) * sliceLength);
            float acc = 0f;
            for (int r = slice * sliceLength; r < end; r++)
            {
                int n = r / s.OutPlane, pix = r - n * s.OutPlane, oh = pix / s.OW;
                acc += dy[(n * s.Cout + co) * s.OutPlane + pix] * s.Input(x, n, c, oh, pix - oh * s.OW, kh, kw);
            }
            partials[item] = acc;
        }
    }
}
