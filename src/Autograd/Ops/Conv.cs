using MaskBit.Kernels;

namespace MaskBit.Autograd;

/// <summary>Zero padding of a 2-D conv per side, in torch's F.pad order for the last two axes.</summary>
public readonly record struct Padding2d(int Left, int Right, int Top, int Bottom)
{
    public static Padding2d Symmetric(int p) => new(p, p, p, p);
}

// 2-D convolution (NCHW), TF-style SAME padding and the blur of the reference's BlurBlock.
public static partial class F
{
    /// <summary>torch.nn.functional.conv2d on an explicitly (possibly asymmetrically) zero-padded input:
    /// x (N, Cin, H, W), weight (Cout, Cin/groups, KH, KW), bias (Cout) or null. Under <see cref="Autocast"/> x and
    /// the weight are rounded to 16 bits (accumulation, bias and output in float32).</summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias = null, int stride = 1, Padding2d padding = default, int groups = 1)
    {
        if (x.Rank != 4 || weight.Rank != 4)
            throw new ArgumentException($"conv2d needs x (N,C,H,W) and weight (Cout,Cin/groups,KH,KW), got {x} and {weight}");
        int n = x.Shape[0], cin = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        int cout = weight.Shape[0], kh = weight.Shape[2], kw = weight.Shape[3];
        if (groups < 1 || cin % groups != 0 || cout % groups != 0 || weight.Shape[1] != cin / groups)
            throw new ArgumentException($"conv2d: input {ShapeUtil.Format(x.Shape)}, weight {ShapeUtil.Format(weight.Shape)} and groups={groups} do not fit");
        if (bias != null && (bias.Rank != 1 || bias.Shape[0] != cout))
            throw new ArgumentException($"conv2d: bias {ShapeUtil.Format(bias.Shape)} for {cout} output channels");
        if (stride < 1 || padding.Left < 0 || padding.Right < 0 || padding.Top < 0 || padding.Bottom < 0)
            throw new ArgumentException($"conv2d: stride {stride}, padding {padding}");
        int oh = Conv2dDesc.OutSize(h, kh, stride, padding.Top, padding.Bottom);
        int ow = Conv2dDesc.OutSize(w, kw, stride, padding.Left, padding.Right);
        if (h + padding.Top + padding.Bottom < kh || w + padding.Left + padding.Right < kw)
            throw new ArgumentException($"conv2d: kernel {kh}×{kw} is larger than the padded input {ShapeUtil.Format(x.Shape)} + {padding}");

        var d = new Conv2dDesc(n, cin, h, w, cout, kh, kw, stride, stride, padding.Top, padding.Left, oh, ow, groups);
        var y = Tensor.Empty(new[] { n, cout, oh, ow }, x.Device);
        // Under autocast the operands (and what the backward keeps of them) are 16-bit copies; see Autocast.
        var precision = Autocast.DType;
        Tensor xKept = Autocast.Lower(x, precision), weightKept = Autocast.Lower(weight, precision);
        x.Device.Conv2dForward(d, xKept.Buf, weightKept.Buf, bias?.Buf, y.Buf);   // the kernels read 16-bit operands directly
        var inputs = bias == null ? new[] { x, weight } : new[] { x, weight, bias };
        Tape.Record(y, "conv2d", inputs, [xKept, weightKept], g =>
        {
            using var operands = new KernelOperands();
            var gradient = operands.Lowered(g, precision);
            Tensor? dx = null, dw = null, db = null;
            if (Tape.NeedsGrad(x))
            {
                dx = Tensor.Empty(x.Shape, x.Device);
                x.Device.Conv2dBackwardInput(d, gradient, weightKept.Buf, dx.Buf);
            }
            bool biasGrad = bias != null && Tape.NeedsGrad(bias);
            if (Tape.NeedsGrad(weight))
            {
                dw = Tensor.Empty(weight.Shape, x.Device);
                db = biasGrad ? Tensor.Empty(bias!.Shape, x.Device) : null;
                x.Device.Conv2dBackwardWeight(d, xKept.Buf, gradient, dw.Buf, db?.Buf);
            }
            else if (biasGrad) db = g.Sum(new[] { 0, 2, 3 });
            return bias == null ? new[] { dx, dw } : new[] { dx, dw, db };
        });
        return y;
    }

    /// <summary>The reference's TF SAME padding of one axis (golden convention 1): the total
    /// max((⌈i/s⌉ − 1)·s + (k − 1)·d + 1 − i, 0), split with the extra element after (bottom/right).</summary>
    public static (int Before, int After) SamePadding(int inSize, int kernel, int stride, int dilation = 1)
    {
        int outSize = (inSize + stride - 1) / stride;
        int total = Math.Max((outSize - 1) * stride + (kernel - 1) * dilation + 1 - inSize, 0);
        return (total / 2, total - total / 2);
    }

    /// <summary>SAME padding of a (KH, KW) kernel on an H×W input, as (left, right, top, bottom).</summary>
    public static Padding2d SamePadding2d(int h, int w, int kh, int kw, int stride)
    {
        var (top, bottom) = SamePadding(h, kh, stride);
        var (left, right) = SamePadding(w, kw, stride);
        return new Padding2d(left, right, top, bottom);
    }

    /// <summary>The reference's Conv2dSame: conv2d with the SAME padding of the input's size (output ⌈H/s⌉×⌈W/s⌉).</summary>
    public static Tensor Conv2dSame(Tensor x, Tensor weight, Tensor? bias = null, int stride = 1, int groups = 1) =>
        Conv2d(x, weight, bias, stride, SamePadding2d(x.Size(2), x.Size(3), weight.Size(2), weight.Size(3), stride), groups);

    /// <summary>Row <paramref name="size"/> − 1 of Pascal's triangle: the reference's blur taps
    /// (3 → 1,2,1; 4 → 1,3,3,1; 5 → 1,4,6,4,1).</summary>
    public static float[] BinomialTaps(int size)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size));
        var taps = new float[size];
        taps[0] = 1;
        for (int i = 1; i < size; i++)
            for (int j = i; j > 0; j--) taps[j] += taps[j - 1];
        return taps;
    }

    /// <summary>BlurBlock's kernel buffer (1, 1, k, k): the outer product of the taps, normalised to sum 1
    /// (golden convention 2).</summary>
    public static Tensor BlurKernel(ReadOnlySpan<float> taps, IBackend? device = null)
    {
        int k = taps.Length;
        double sum = 0;
        foreach (var t in taps) sum += t;
        var kernel = new float[k * k];
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) kernel[i * k + j] = (float)(taps[i] * (double)taps[j] / (sum * sum));
        return Tensor.FromArray(kernel, new[] { 1, 1, k, k }, device);
    }

    /// <summary>BlurBlock forward: a depthwise stride-2 conv with SAME padding, every channel filtered by the
    /// (1, 1, k, k) <paramref name="kernel"/> (a buffer: no gradient flows into it).</summary>
    public static Tensor Blur(Tensor x, Tensor kernel)
    {
        int channels = x.Size(1);
        var perChannel = kernel.Detach().BroadcastTo(new[] { channels, 1, kernel.Size(2), kernel.Size(3) });
        return Conv2dSame(x, perChannel, null, stride: 2, groups: channels);
    }
}
