using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Pooling and resizing of NCHW maps.
public static partial class F
{
    /// <summary>avg_pool2d(x, 2) (stride 2; an odd last row/column is dropped).</summary>
    public static Tensor AvgPool2d2x2(Tensor x)
    {
        var (planes, h, w) = Planes(x, "avg_pool2d");
        var y = Tensor.Empty(new[] { x.Size(0), x.Size(1), h / 2, w / 2 }, x.Device);
        x.Device.AvgPool2x2Forward(planes, h, w, x.Buf, y.Buf);
        Tape.Record(y, "avg_pool2d", new[] { x }, [], g =>
        {
            var dx = Tensor.Empty(x.Shape, x.Device);
            x.Device.AvgPool2x2Backward(planes, h, w, g.Buf, dx.Buf);
            return new[] { dx };
        });
        return y;
    }

    /// <summary>torch.nn.AdaptiveMaxPool2d((oh, ow)); also upsamples (repeats) when the map is smaller. The
    /// gradient goes to the first maximum of each bin and accumulates where bins overlap.</summary>
    public static Tensor AdaptiveMaxPool2d(Tensor x, int oh, int ow)
    {
        var (planes, h, w) = Planes(x, "adaptive_max_pool2d");
        if (oh < 1 || ow < 1) throw new ArgumentOutOfRangeException(nameof(oh), $"adaptive_max_pool2d to {oh}×{ow}");
        var shape = new[] { x.Size(0), x.Size(1), oh, ow };
        var y = Tensor.Empty(shape, x.Device);
        var argmax = Tensor.Empty(shape, x.Device, DType.Int32);
        x.Device.AdaptiveMaxPoolForward(planes, h, w, oh, ow, x.Buf, y.Buf, argmax.Buf);
        Tape.Record(y, "adaptive_max_pool2d", new[] { x }, [argmax], g =>
        {
            var dx = Tensor.Empty(x.Shape, x.Device);
            x.Device.AdaptiveMaxPoolBackward(planes, h, w, oh, ow, g.Buf, argmax.Buf, dx.Buf);
            return new[] { dx };
        });
        return y;
    }

    /// <summary>interpolate(x, scale_factor=2, mode="nearest").</summary>
    public static Tensor UpsampleNearest2x(Tensor x)
    {
        var (planes, h, w) = Planes(x, "upsample_nearest2x");
        var y = Tensor.Empty(new[] { x.Size(0), x.Size(1), 2 * h, 2 * w }, x.Device);
        x.Device.UpsampleNearest2xForward(planes, h, w, x.Buf, y.Buf);
        Tape.Record(y, "upsample_nearest2x", new[] { x }, [], g =>
        {
            var dx = Tensor.Empty(x.Shape, x.Device);
            x.Device.UpsampleNearest2xBackward(planes, h, w, g.Buf, dx.Buf);
            return new[] { dx };
        });
        return y;
    }

    /// <summary>interpolate(x, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False).
    /// The resize is separable, y = A_h·X·A_wᵀ per plane with host-computed weight matrices, so it runs (and
    /// back-propagates) as two GEMMs that share the weights across planes (width pass first, as aten).</summary>
    public static Tensor InterpolateBilinearAntialias(Tensor x, int oh, int ow)
    {
        var (planes, h, w) = Planes(x, "interpolate");
        var rows = Tensor.FromArray(AntialiasWeights(h, oh), new[] { oh, h }, x.Device);
        var colsT = Tensor.FromArray(Transpose(AntialiasWeights(w, ow), ow, w), new[] { w, ow }, x.Device);
        var widthPass = Tensor.MatMul(x.Reshape(planes * h, w), colsT);      // one GEMM over all rows
        var y = ApplyToEachPlane(rows, widthPass.Reshape(planes, h, ow));
        return y.Reshape(x.Size(0), x.Size(1), oh, ow);
    }

    /// <summary>y[p] = A·X[p] for every plane p with one (OUT, IN) matrix A that needs no gradient: a batched
    /// GEMM reading A with batch stride 0; the backward is the same with Aᵀ.</summary>
    private static Tensor ApplyToEachPlane(Tensor a, Tensor x)
    {
        int planes = x.Size(0), inRows = x.Size(1), cols = x.Size(2), outRows = a.Size(0);
        var y = Tensor.Empty(new[] { planes, outRows, cols }, x.Device);
        x.Device.Gemm(new GemmDesc(outRows, cols, inRows, Batch: planes, StrideA: 0, StrideB: (long)inRows * cols,
            StrideC: (long)outRows * cols), a.Buf, x.Buf, y.Buf);
        Tape.Record(y, "apply_to_each_plane", new[] { x }, [a], g =>
        {
            var dx = Tensor.Empty(x.Shape, x.Device);
            x.Device.Gemm(new GemmDesc(inRows, cols, outRows, TransA: true, Batch: planes, StrideA: 0,
                StrideB: (long)outRows * cols, StrideC: (long)inRows * cols), a.Buf, g.Buf, dx.Buf);
            return new[] { dx };
        });
        return y;
    }

    private static float[] Transpose(float[] m, int rows, int cols)
    {
        var t = new float[m.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) t[j * rows + i] = m[i * cols + j];
        return t;
    }

    /// <summary>PyTorch's antialiased bilinear weights of one axis (the PIL scheme of aten's
    /// _upsample_bilinear2d_aa): output i is centred at s·(i + ½) in input pixels, s = in/out; the triangle
    /// filter's support is max(s, 1) and, when downsampling, its argument is scaled by 1/s; each row is
    /// normalised to sum 1. Computed in float32 as aten does for float tensors. Returns the (out, in)
    /// interpolation matrix.</summary>
    internal static float[] AntialiasWeights(int inSize, int outSize)
    {
        float scale = (float)inSize / outSize;
        float support = scale >= 1f ? scale : 1f;      // interp_size/2 = 1 for the triangle, times the scale
        float invScale = scale >= 1f ? 1f / scale : 1f;
        var weights = new float[inSize * outSize];
        var row = new float[inSize];
        for (int i = 0; i < outSize; i++)
        {
            float center = scale * (i + 0.5f);
            int lo = Math.Max((int)(center - support + 0.5f), 0);
            int hi = Math.Min((int)(center + support + 0.5f), inSize);
            float total = 0;
            for (int j = lo; j < hi; j++)
            {
                float t = MathF.Abs((j - center + 0.5f) * invScale);
                row[j] = t < 1f ? 1f - t : 0f;
                total += row[j];
            }
            for (int j = lo; j < hi; j++) weights[i * inSize + j] = total != 0f ? row[j] / total : 0f;
        }
        return weights;
    }

    private static (int Planes, int H, int W) Planes(Tensor x, string op)
    {
        if (x.Rank != 4) throw new ArgumentException($"{op} needs an (N, C, H, W) tensor, got {x}");
        return (x.Size(0) * x.Size(1), x.Size(2), x.Size(3));
    }
}
