using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Nearest 2× upsampling over independent (N·C) planes: a thread per output element (forward) or per input
// element summing its 2×2 block (backward). The pools live in PoolIlgpu.cs.
public sealed partial class IlgpuBackend
{
    private static readonly Action<ArrayView<float>, ArrayView<float>, PoolPlanes> UpsampleEntry = UpsampleNearest2xKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, PoolPlanes> UpsampleBackwardEntry = UpsampleNearest2xBackwardKernel;

    public void UpsampleNearest2xForward(int planes, int h, int w, Buf x, Buf y)
    {
        var p = Planes(planes, h, w, 2 * h, 2 * w);
        var (xv, yv) = PoolViews(p, x, y);
        if (yv.Length == 0) return;
        Kernel(UpsampleEntry)(GridStride(yv.Length, Sizes.ElementGroup), xv, yv, p);
    }

    public void UpsampleNearest2xBackward(int planes, int h, int w, Buf dy, Buf dx)
    {
        var p = Planes(planes, h, w, 2 * h, 2 * w);
        var (dxv, dyv) = PoolViews(p, dx, dy);
        if (dxv.Length == 0) return;
        Kernel(UpsampleBackwardEntry)(GridStride(dxv.Length, Sizes.ElementGroup), dyv, dxv, p);
    }

    internal static void UpsampleNearest2xKernel(ArrayView<float> x, ArrayView<float> y, PoolPlanes p)
    {
        int outPlane = p.OH * p.OW, outputs = p.Count * outPlane;
        for (int o = Grid.GlobalIndex.X; o < outputs; o = GridStrideNext(o, outputs, GridStrideStep))
        {
            int plane = o / outPlane, pix = o - plane * outPlane, i = pix / p.OW, j = pix - i * p.OW;
            y[o] = x[(plane * p.H + i / 2) * p.W + j / 2];
        }
    }

    internal static void UpsampleNearest2xBackwardKernel(ArrayView<float> dy, ArrayView<float> dx, PoolPlanes p)
    {
        int inPlane = p.H * p.W, inputs = p.Count * inPlane;
        for (int e = Grid.GlobalIndex.X; e < inputs; e = GridStrideNext(e, inputs, GridStrideStep))
        {
            int plane = e / inPlane, pix = e - plane * inPlane, r = pix / p.W, c = pix - r * p.W;
            int top = (plane * p.OH + 2 * r) * p.OW + 2 * c, bottom = top + p.OW;
            dx[e] = dy[top] + dy[top + 1] + dy[bottom] + dy[bottom + 1];
        }
    }
}
