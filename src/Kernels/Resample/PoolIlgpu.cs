using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Window pooling (max, average; strided or adaptive windows) on an ILGPU accelerator over independent (N·C)
// planes. Forwards run a thread per output over its window; backwards run a thread per input element that
// gathers from the outputs whose windows hold it, so overlapping windows need no atomics and every sum is taken
// in the same order on every run.
public sealed partial class IlgpuBackend
{
    /// <summary>The windows of a pooling along both axes: output index → clipped input range, and its inverse,
    /// input index → the range of outputs whose windows contain it.</summary>
    internal interface IPoolWindows
    {
        PoolPlanes Planes { get; }
        void Rows(int i, out int start, out int end);
        void Cols(int j, out int start, out int end);
        void RowsCovering(int r, out int first, out int end);
        void ColsCovering(int c, out int first, out int end);
    }

    /// <summary>Plane count and sizes of a pooling (input h × w, output oh × ow).</summary>
    public struct PoolPlanes
    {
        public int Count, H, W, OH, OW;
    }

    /// <summary>torch max_pool2d / avg_pool2d windows (square, floor mode): output i reads i·stride − padding +
    /// [0, kernel), clipped to the input.</summary>
    public struct StridedWindows : IPoolWindows
    {
        public PoolPlanes P;
        public int Kernel, Stride, Padding;

        public readonly PoolPlanes Planes => P;
        public readonly void Rows(int i, out int start, out int end) => Window(i, P.H, out start, out end);
        public readonly void Cols(int j, out int start, out int end) => Window(j, P.W, out start, out end);
        public readonly void RowsCovering(int r, out int first, out int end) => Covering(r, P.OH, out first, out end);
        public readonly void ColsCovering(int c, out int first, out int end) => Covering(c, P.OW, out first, out end);

        private readonly void Window(int i, int size, out int start, out int end)
        {
            int s = i * Stride - Padding;
            start = s < 0 ? 0 : s;
            end = s + Kernel < size ? s + Kernel : size;
        }

        /// <summary>Outputs i with i·stride − padding ≤ r &lt; i·stride − padding + kernel.</summary>
        private readonly void Covering(int r, int outSize, out int first, out int end)
        {
            int top = r + Padding;                       // i·stride ≤ top < i·stride + kernel
            int low = top - Kernel + 1;
            first = low <= 0 ? 0 : (low + Stride - 1) / Stride;
            int last = top / Stride + 1;
            end = last < outSize ? last : outSize;
        }
    }

    /// <summary>torch AdaptiveMaxPool2d bins: output i covers [⌊i·in/out⌋, ⌈(i+1)·in/out⌉); input r lies in the
    /// bins [⌊r·out/in⌋, ⌈(r+1)·out/in⌉) (several when upsampling).</summary>
    public struct AdaptiveWindows : IPoolWindows
    {
        public PoolPlanes P;

        public readonly PoolPlanes Planes => P;
        public readonly void Rows(int i, out int start, out int end) => Bin(i, P.H, P.OH, out start, out end);
        public readonly void Cols(int j, out int start, out int end) => Bin(j, P.W, P.OW, out start, out end);
        public readonly void RowsCovering(int r, out int first, out int end) => Bin(r, P.OH, P.H, out first, out end);
        public readonly void ColsCovering(int c, out int first, out int end) => Bin(c, P.OW, P.W, out first, out end);

        private static void Bin(int i, int inSize, int outSize, out int start, out int end)
        {
            start = (int)((long)i * inSize / outSize);
            end = (int)(((long)(i + 1) * inSize + outSize - 1) / outSize);
        }
    }

    /// <summary>The average pool's divisor of output (i, j): kernel² with count_include_pad, else the number of
    /// window positions inside the input.</summary>
    public struct AvgPoolArgs
    {
        public StridedWindows Windows;
        public int CountIncludePad;

        public readonly float Divisor(int i, int j)
        {
            if (CountIncludePad != 0) return Windows.Kernel * Windows.Kernel;
            Windows.Rows(i, out int r0, out int r1);
            Windows.Cols(j, out int c0, out int c1);
            return (r1 - r0) * (c1 - c0);
        }
    }

    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<int>, StridedWindows> StridedMaxEntry = MaxPoolKernel<StridedWindows>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<int>, AdaptiveWindows> AdaptiveMaxEntry = MaxPoolKernel<AdaptiveWindows>;
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<float>, StridedWindows> StridedMaxBackwardEntry = MaxPoolBackwardKernel<StridedWindows>;
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<float>, AdaptiveWindows> AdaptiveMaxBackwardEntry = MaxPoolBackwardKernel<AdaptiveWindows>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, AvgPoolArgs> AvgPoolEntry = AvgPoolKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, AvgPoolArgs> AvgPoolBackwardEntry = AvgPoolBackwardKernel;

    private static PoolPlanes Planes(int planes, int h, int w, int oh, int ow)
    {
        if ((long)planes * Math.Max(h * w, oh * ow) > int.MaxValue) throw new NotSupportedException($"pooling over {planes} planes of {h}×{w} → {oh}×{ow} exceeds 32-bit indexing");
        return new PoolPlanes { Count = planes, H = h, W = w, OH = oh, OW = ow };
    }

    private static StridedWindows Strided(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow) =>
        new() { P = Planes(planes, h, w, oh, ow), Kernel = kernel, Stride = stride, Padding = padding };

    private (ArrayView<float> In, ArrayView<float> Out) PoolViews(PoolPlanes p, Buf input, Buf output) =>
        (F(input, (long)p.Count * p.H * p.W), F(output, (long)p.Count * p.OH * p.OW));

    public void MaxPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf x, Buf y, Buf argmax)
    {
        var win = Strided(planes, h, w, kernel, stride, padding, oh, ow);
        var (xv, yv) = PoolViews(win.P, x, y);
        if (yv.Length == 0) return;
        Kernel(StridedMaxEntry)(GridStride(yv.Length, Sizes.ElementGroup), xv, yv, I(argmax, yv.Length), win);
    }

    public void MaxPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf dy, Buf argmax, Buf dx)
    {
        var win = Strided(planes, h, w, kernel, stride, padding, oh, ow);
        var (dxv, dyv) = PoolViews(win.P, dx, dy);
        if (dxv.Length == 0) return;
        Kernel(StridedMaxBackwardEntry)(
            GridStride(dxv.Length, Sizes.ElementGroup), dyv, I(argmax, dyv.Length), dxv, win);
    }

    public void AdaptiveMaxPoolForward(int planes, int h, int w, int oh, int ow, Buf x, Buf y, Buf argmax)
    {
        var win = new AdaptiveWindows { P = Planes(planes, h, w, oh, ow) };
        var (xv, yv) = PoolViews(win.P, x, y);
        if (yv.Length == 0) return;
        Kernel(AdaptiveMaxEntry)(GridStride(yv.Length, Sizes.ElementGroup), xv, yv, I(argmax, yv.Length), win);
    }

    public void AdaptiveMaxPoolBackward(int planes, int h, int w, int oh, int ow, Buf dy, Buf argmax, Buf dx)
    {
        var win = new AdaptiveWindows { P = Planes(planes, h, w, oh, ow) };
        var (dxv, dyv) = PoolViews(win.P, dx, dy);
        if (dxv.Length == 0) return;
        Kernel(AdaptiveMaxBackwardEntry)(
            GridStride(dxv.Length, Sizes.ElementGroup), dyv, I(argmax, dyv.Length), dxv, win);
    }

    public void AvgPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow,
        bool countIncludePad, Buf x, Buf y)
    {
        var args = new AvgPoolArgs { Windows = Strided(planes, h, w, kernel, stride, padding, oh, ow), CountIncludePad = countIncludePad ? 1 : 0 };
        var (xv, yv) = PoolViews(args.Windows.P, x, y);
        if (yv.Length == 0) return;
        Kernel(AvgPoolEntry)(GridStride(yv.Length, Sizes.ElementGroup), xv, yv, args);
    }

    public void AvgPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow,
        bool countIncludePad, Buf dy, Buf dx)
    {
        var args = new AvgPoolArgs { Windows = Strided(planes, h, w, kernel, stride, padding, oh, ow), CountIncludePad = countIncludePad ? 1 : 0 };
        var (dxv, dyv) = PoolViews(args.Windows.P, dx, dy);
        if (dxv.Length == 0) return;
        Kernel(AvgPoolBackwardEntry)(GridStride(dxv.Length, Sizes.ElementGroup), dyv, dxv, args);
    }

    /// <summary>2×2 stride-2 average pooling is avg_pool2d(2, 2, 0): odd trailing rows/columns are dropped the
    /// same way, and dividing by 4 equals multiplying by ¼ exactly.</summary>
    public void AvgPool2x2Forward(int planes, int h, int w, Buf x, Buf y) =>
        AvgPool2dForward(planes, h, w, 2, 2, 0, h / 2, w / 2, countIncludePad: true, x, y);

    public void AvgPool2x2Backward(int planes, int h, int w, Buf dy, Buf dx) =>
        AvgPool2dBackward(planes, h, w, 2, 2, 0, h / 2, w / 2, countIncludePad: true, dy, dx);

    // ---- kernels ------------------------------------------------------------------------------------------
    /// <summary>As torch: the first maximum in row-major window order wins; a NaN always wins.</summary>
    internal static void MaxPoolKernel<TWindows>(ArrayView<float> x, ArrayView<float> y, ArrayView<int> argmax, TWindows win)
        where TWindows : struct, IPoolWindows
    {
        var p = win.Planes;
        int outPlane = p.OH * p.OW, outputs = p.Count * outPlane;
        for (int o = Grid.GlobalIndex.X; o < outputs; o = GridStrideNext(o, outputs, GridStrideStep))
        {
            int plane = o / outPlane, pix = o - plane * outPlane, i = pix / p.OW, j = pix - i * p.OW;
            win.Rows(i, out int r0, out int r1);
            win.Cols(j, out int c0, out int c1);
            int planeBase = plane * p.H * p.W, best = r0 * p.W + c0;
            float max = float.NegativeInfinity;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                {
                    float v = x[planeBase + r * p.W + c];
                    if (v > max || XMath.IsNaN(v)) { max = v; best = r * p.W + c; }
                }
            y[o] = max;
            argmax[o] = best;
        }
    }

    /// <summary>dx[e] = Σ dy[o] over the outputs o whose window holds e and whose argmax is e, in output order.</summary>
    internal static void MaxPoolBackwardKernel<TWindows>(ArrayView<float> dy, ArrayView<int> argmax, ArrayView<float> dx, TWindows win)
        where TWindows : struct, IPoolWindows
    {
        var p = win.Planes;
        int inPlane = p.H * p.W, outPlane = p.OH * p.OW, inputs = p.Count * inPlane;
        for (int e = Grid.GlobalIndex.X; e < inputs; e = GridStrideNext(e, inputs, GridStrideStep))
        {
            int plane = e / inPlane, pix = e - plane * inPlane, r = pix / p.W, c = pix - r * p.W;
            win.RowsCovering(r, out int i0, out int i1);
            win.ColsCovering(c, out int j0, out int j1);
            float acc = 0f;
            for (int i = i0; i < i1; i++)
                for (int j = j0; j < j1; j++)
                {
                    int o = plane * outPlane + i * p.OW + j;
                    if (argmax[o] == pix) acc += dy[o];
                }
            dx[e] = acc;
        }
    }

    internal static void AvgPoolKernel(ArrayView<float> x, ArrayView<float> y, AvgPoolArgs args)
    {
        var win = args.Windows;
        var p = win.P;
        int outPlane = p.OH * p.OW, outputs = p.Count * outPlane;
        for (int o = Grid.GlobalIndex.X; o < outputs; o = GridStrideNext(o, outputs, GridStrideStep))
        {
            int plane = o / outPlane, pix = o - plane * outPlane, i = pix / p.OW, j = pix - i * p.OW;
            win.Rows(i, out int r0, out int r1);
            win.Cols(j, out int c0, out int c1);
            int planeBase = plane * p.H * p.W;
            float sum = 0f;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++) sum += x[planeBase + r * p.W + c];
            y[o] = sum / args.Divisor(i, j);
        }
    }

    /// <summary>dx[e] = Σ dy[o] / divisor(o) over the outputs whose window holds e.</summary>
    internal static void AvgPoolBackwardKernel(ArrayView<float> dy, ArrayView<float> dx, AvgPoolArgs args)
    {
        var win = args.Windows;
        var p = win.P;
        int inPlane = p.H * p.W, outPlane = p.OH * p.OW, inputs = p.Count * inPlane;
        for (int e = Grid.GlobalIndex.X; e < inputs; e = GridStrideNext(e, inputs, GridStrideStep))
        {
            int plane = e / inPlane, pix = e - plane * inPlane, r = pix / p.W, c = pix - r * p.W;
            win.RowsCovering(r, out int i0, out int i1);
            win.ColsCovering(c, out int j0, out int j1);
            float acc = 0f;
            for (int i = i0; i < i1; i++)
                for (int j = j0; j < j1; j++) acc += dy[plane * outPlane + i * p.OW + j] / args.Divisor(i, j);
            dx[e] = acc;
        }
    }
}
