using System.Numerics.Tensors;
using CommunityToolkit.HighPerformance.Buffers;

namespace MaskBit.Kernels.Cpu;

// General square-window max / average pooling (torch floor mode) over independent (N·C) planes, split over
// planes. Output i covers input rows [i·stride − padding, i·stride − padding + kernel) clipped to the input.
public sealed partial class CpuBackend
{
    /// <summary>The clipped input range [Start, End) of output index i along one axis.</summary>
    private static (int Start, int End) PoolWindow(int i, int size, int kernel, int stride, int padding)
    {
        int start = i * stride - padding;
        return (Math.Max(start, 0), Math.Min(start + kernel, size));
    }

    public void MaxPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf x, Buf y, Buf argmax) =>
        WindowMaxPool(planes, h, w, oh, ow, i => PoolWindow(i, h, kernel, stride, padding), j => PoolWindow(j, w, kernel, stride, padding), x, y, argmax);

    public void MaxPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf dy, Buf argmax, Buf dx) =>
        AdaptiveMaxPoolBackward(planes, h, w, oh, ow, dy, argmax, dx);   // the same scatter-add of dy at argmax

    // Average pooling is separable: window sums along the width into a (H, OW) scratch, then along the height
    // as whole-row vector adds. The backward runs the same two passes transposed.
    public void AvgPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow,
        bool countIncludePad, Buf x, Buf y)
    {
        float[] X = Arr(x), Y = Arr(y);
        int xOff = Off(x), yOff = Off(y);
        CpuParallel.For(planes, (p0, p1) =>
        {
            using var rowSumsOwner = SpanOwner<float>.Allocate(h * ow);
            using var divisorsOwner = SpanOwner<float>.Allocate(ow);
            Span<float> rowSums = rowSumsOwner.Span, divisors = divisorsOwner.Span;
            for (int p = p0; p < p1; p++)
            {
                var plane = X.AsSpan(xOff + p * h * w, h * w);
                for (int r = 0; r < h; r++)
                {
                    var row = plane.Slice(r * w, w);
                    for (int j = 0; j < ow; j++)
                    {
                        var (c0, c1) = PoolWindow(j, w, kernel, stride, padding);
                        float s = 0f;
                        for (int c = c0; c < c1; c++) s += row[c];
                        rowSums[r * ow + j] = s;
                    }
                }
                for (int i = 0; i < oh; i++)
                {
                    var (r0, r1) = PoolWindow(i, h, kernel, stride, padding);
                    var dst = Y.AsSpan(yOff + (p * oh + i) * ow, ow);
                    rowSums.Slice(r0 * ow, ow).CopyTo(dst);
                    for (int r = r0 + 1; r < r1; r++) TensorPrimitives.Add(dst, rowSums.Slice(r * ow, ow), dst);
                    FillDivisors(divisors, r1 - r0, w, kernel, stride, padding, countIncludePad);
                    TensorPrimitives.Divide(dst, divisors, dst);
                }
            }
        }, costPerItem: (double)(h * ow + oh * ow) * kernel);
    }

    public void AvgPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow,
        bool countIncludePad, Buf dy, Buf dx)
    {
        float[] DY = Arr(dy), DX = Arr(dx);
        int dyOff = Off(dy), dxOff = Off(dx);
        CpuParallel.For(planes, (p0, p1) =>
        {
            using var rowGradsOwner = SpanOwner<float>.Allocate(h * ow);
            using var divisorsOwner = SpanOwner<float>.Allocate(ow);
            using var scaledOwner = SpanOwner<float>.Allocate(ow);
            Span<float> rowGrads = rowGradsOwner.Span, divisors = divisorsOwner.Span, scaled = scaledOwner.Span;
            for (int p = p0; p < p1; p++)
            {
                // rowGrads[r, j] = Σ over outputs i whose window holds row r of dy[i, j] / count(i, j).
                rowGrads.Clear();
                for (int i = 0; i < oh; i++)
                {
                    var (r0, r1) = PoolWindow(i, h, kernel, stride, padding);
                    FillDivisors(divisors, r1 - r0, w, kernel, stride, padding, countIncludePad);
                    TensorPrimitives.Divide(DY.AsSpan(dyOff + (p * oh + i) * ow, ow), divisors, scaled);
                    for (int r = r0; r < r1; r++)
                    {
                        var acc = rowGrads.Slice(r * ow, ow);
                        TensorPrimitives.Add(acc, scaled, acc);
                    }
                }
                var plane = DX.AsSpan(dxOff + p * h * w, h * w);
                plane.Clear();
                for (int r = 0; r < h; r++)
                {
                    var row = plane.Slice(r * w, w);
                    for (int j = 0; j < ow; j++)
                    {
                        var (c0, c1) = PoolWindow(j, w, kernel, stride, padding);
                        float g = rowGrads[r * ow + j];
                        for (int c = c0; c < c1; c++) row[c] += g;
                    }
                }
            }
        }, costPerItem: (double)(h * ow + oh * ow) * kernel);
    }

    /// <summary>The divisor of each output column of one output row whose window spans <paramref name="rows"/>
    /// input rows: kernel² with count_include_pad, else the number of window positions inside the input.</summary>
    private static void FillDivisors(Span<float> divisors, int rows, int w, int kernel, int stride, int padding, bool countIncludePad)
    {
        for (int j = 0; j < divisors.Length; j++)
        {
            var (c0, c1) = PoolWindow(j, w, kernel, stride, padding);
            divisors[j] = countIncludePad ? kernel * kernel : rows * (c1 - c0);
        }
    }
}
