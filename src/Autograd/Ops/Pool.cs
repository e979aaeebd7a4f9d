using MaskBit.Kernels;

namespace MaskBit.Autograd;

// General square-window pooling of NCHW maps (torch's floor mode).
public static partial class F
{
    /// <summary>torch.nn.functional.max_pool2d(x, kernel, stride, padding) (stride defaults to the kernel).
    /// The gradient goes to the first maximum of each window and accumulates where windows overlap.</summary>
    public static Tensor MaxPool2d(Tensor x, int kernel, int? stride = null, int padding = 0)
    {
        var (planes, h, w) = Planes(x, "max_pool2d");
        var (s, oh, ow) = PoolGeometry("max_pool2d", h, w, kernel, stride, padding);
        var shape = new[] { x.Size(0), x.Size(1), oh, ow };
        var y = Tensor.Empty(shape, x.Device);
        var argmax = Tensor.Empty(shape, x.Device, DType.Int32);
        x.Device.MaxPool2dForward(planes, h, w, kernel, s, padding, oh, ow, x.Buf, y.Buf, argmax.Buf);
        Tape.Record(y, "max_pool2d", new[] { x }, [argmax], g =>
        {
            var dx = Tensor.Empty(x.Shape, x.Device);
            x.Device.MaxPool2dBackward(planes, h, w, kernel, s, padding, oh, ow, g.Buf, argmax.Buf, dx.Buf);
            return new[] { dx };
        });
        return y;
    }

    /// <summary>torch.nn.functional.avg_pool2d(x, kernel, stride, padding, count_include_pad) (stride defaults to
    /// the kernel). Without count_include_pad a window is averaged over its positions inside the input only.</summary>
    public static Tensor AvgPool2d(Tensor x, int kernel, int? stride = null, int padding = 0, bool countIncludePad = true)
    {
        var (planes, h, w) = Planes(x, "avg_pool2d");
        var (s, oh, ow) = PoolGeometry("avg_pool2d", h, w, kernel, stride, padding);
        var y = Tensor.Empty(new[] { x.Size(0), x.Size(1), oh, ow }, x.Device);
        x.Device.AvgPool2dForward(planes, h, w, kernel, s, padding, oh, ow, countIncludePad, x.Buf, y.Buf);
        Tape.Record(y, "avg_pool2d", new[] { x }, [], g =>
        {
            var dx = Tensor.Empty(x.Shape, x.Device);
            x.Device.AvgPool2dBackward(planes, h, w, kernel, s, padding, oh, ow, countIncludePad, g.Buf, dx.Buf);
            return new[] { dx };
        });
        return y;
    }

    /// <summary>adaptive_avg_pool2d(x, 1) flattened: the mean over H and W, shape (N, C).</summary>
    public static Tensor GlobalAvgPool2d(Tensor x)
    {
        var (_, h, w) = Planes(x, "global_avg_pool2d");
        return x.Reshape(x.Size(0), x.Size(1), h * w).Mean(2);
    }

    /// <summary>Validates a pooling window as torch does (padding at most half the kernel, so every window
    /// holds an input position) and returns the stride and the floor-mode output size.</summary>
    private static (int Stride, int OH, int OW) PoolGeometry(string op, int h, int w, int kernel, int? stride, int padding)
    {
        int s = stride ?? kernel;
        if (kernel < 1 || s < 1 || padding < 0 || 2 * padding > kernel)
            throw new ArgumentException($"{op}: kernel {kernel}, stride {s}, padding {padding} (padding must be at most half the kernel)");
        int oh = Conv2dDesc.OutSize(h, kernel, s, padding, padding), ow = Conv2dDesc.OutSize(w, kernel, s, padding, padding);
        if (h + 2 * padding < kernel || w + 2 * padding < kernel)
            throw new ArgumentException($"{op}: kernel {kernel} is larger than the padded {h}×{w} input");
        return (s, oh, ow);
    }
}
