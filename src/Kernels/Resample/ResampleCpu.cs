using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

// Pooling and nearest upsampling over independent (N·C) planes; every kernel is split over planes (the window max
// over planes and output rows).
public sealed partial class CpuBackend
{
    public void AvgPool2x2Forward(int planes, int h, int w, Buf x, Buf y)
    {
        float[] X = Arr(x), Y = Arr(y);
        int xOff = Off(x), yOff = Off(y), oh = h / 2, ow = w / 2;
        CpuParallel.For(planes, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
                for (int i = 0; i < oh; i++)
                {
                    int top = xOff + (p * h + 2 * i) * w, bottom = top + w, dst = yOff + (p * oh + i) * ow;
                    for (int j = 0; j < ow; j++)
                        Y[dst + j] = 0.25f * (X[top + 2 * j] + X[top + 2 * j + 1] + X[bottom + 2 * j] + X[bottom + 2 * j + 1]);
                }
        }, costPerItem: (double)h * w);
    }

    public void AvgPool2x2Backward(int planes, int h, int w, Buf dy, Buf dx)
    {
        float[] DY = Arr(dy), DX = Arr(dx);
        int dyOff = Off(dy), dxOff = Off(dx), oh = h / 2, ow = w / 2;
        CpuParallel.For(planes, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
            {
                // A dropped odd last row/column gets no gradient.
                if (h % 2 == 1 || w % 2 == 1) DX.AsSpan(dxOff + p * h * w, h * w).Clear();
                for (int i = 0; i < oh; i++)
                {
                    int top = dxOff + (p * h + 2 * i) * w, bottom = top + w, src = dyOff + (p * oh + i) * ow;
                    for (int j = 0; j < ow; j++)
                    {
                        float g = 0.25f * DY[src + j];
                        DX[top + 2 * j] = g; DX[top + 2 * j + 1] = g; DX[bottom + 2 * j] = g; DX[bottom + 2 * j + 1] = g;
                    }
                }
            }
        }, costPerItem: (double)h * w);
    }

    /// <summary>torch's adaptive bin [floor(i·in/out), ceil((i+1)·in/out)) of output index i.</summary>
    private static (int Start, int End) AdaptiveBin(int i, int inSize, int outSize) =>
        ((int)((long)i * inSize / outSize), (int)(((long)(i + 1) * inSize + outSize - 1) / outSize));

    public void AdaptiveMaxPoolForward(int planes, int h, int w, int oh, int ow, Buf x, Buf y, Buf argmax) =>
        WindowMaxPool(planes, h, w, oh, ow, i => AdaptiveBin(i, h, oh), j => AdaptiveBin(j, w, ow), x, y, argmax);

    /// <summary>Max over the window [rows(i)) × [cols(j)) of each output (i, j), shared by adaptive and strided max
    /// pooling. As torch: the first maximum in row-major window order wins; a NaN always wins (the last one). Split
    /// over (plane, output row); on the vector ISAs 8 outputs of a row at a time (<see cref="WindowMax8"/>).</summary>
    private static unsafe void WindowMaxPool(int planes, int h, int w, int oh, int ow, Func<int, (int Start, int End)> rows,
        Func<int, (int Start, int End)> cols, Buf x, Buf y, Buf argmax)
    {
        float[] X = Arr(x), Y = Arr(y);
        int[] A = IntArr(argmax);
        int xOff = Off(x), yOff = Off(y), aOff = Off(argmax);
        // The windows once per call, not per output (the discriminator's 8² → 16² upsampling has 1-element windows).
        var rowBins = Enumerable.Range(0, oh).Select(rows).ToArray();
        var colStarts = new int[ow];
        var colWidths = new int[ow];
        for (int j = 0; j < ow; j++) { var (c0, c1) = cols(j); colStarts[j] = c0; colWidths[j] = c1 - c0; }
        int vectorOutputs = CpuIsa.Current >= Isa.Avx2 ? ow / 8 * 8 : 0;
        CpuParallel.For(planes * oh, (t0, t1) =>
        {
            fixed (float* px = X, py = Y)
            fixed (int* pa = A, starts = colStarts, widths = colWidths)
                for (int t = t0; t < t1; t++)
                {
                    int p = t / oh, i = t % oh;
                    var (r0, r1) = rowBins[i];
                    float* plane = px + xOff + (long)p * h * w;
                    long o = yOff + (long)t * ow, oa = aOff + (long)t * ow;
                    int j = 0;
                    for (; j < vectorOutputs; j += 8) WindowMax8(plane, w, r0, r1, starts + j, widths + j, py + o + j, pa + oa + j);
                    for (; j < ow; j++)
                    {
                        int c0 = starts[j], c1 = c0 + widths[j], best = r0 * w + c0;
                        float max = float.NegativeInfinity;
                        for (int r = r0; r < r1; r++)
                            for (int c = c0; c < c1; c++)
                            {
                                float v = plane[r * w + c];
                                if (v > max || float.IsNaN(v)) { max = v; best = r * w + c; }
                            }
                        py[o + j] = max;
                        pa[oa + j] = best;
                    }
                }
        }, costPerItem: (double)Math.Max(h * w / Math.Max(oh, 1), ow) * 2);
    }

    /// <summary>The scalar loop's window max for 8 outputs of one row at once: every lane walks its window in
    /// row-major order (rows r0..r1 are shared, columns gathered from its own start; lanes past their width load
    /// nothing and keep their state), with the same comparison, so the same maximum and index come out.</summary>
    private static unsafe void WindowMax8(float* plane, int w, int r0, int r1, int* starts, int* widths, float* y, int* argmax)
    {
        var start = Avx.LoadVector256(starts);
        var width = Avx.LoadVector256(widths);
        int maxWidth = 0;
        for (int l = 0; l < 8; l++) maxWidth = Math.Max(maxWidth, widths[l]);
        var negativeInfinity = Vector256.Create(float.NegativeInfinity);
        var max = negativeInfinity;
        var best = start + Vector256.Create(r0 * w);
        for (int r = r0; r < r1; r++)
        {
            float* row = plane + (long)r * w;
            var rowStart = Vector256.Create(r * w);
            for (int c = 0; c < maxWidth; c++)
            {
                var offset = Vector256.Create(c);
                var inWindow = Vector256.GreaterThan(width, offset).AsSingle();
                var column = start + offset;
                var v = Avx2.GatherMaskVector256(negativeInfinity, row, column, inWindow, sizeof(float));
                var replace = (Vector256.GreaterThan(v, max) | ~Vector256.Equals(v, v)) & inWindow;
                max = Vector256.ConditionalSelect(replace, v, max);
                best = Vector256.ConditionalSelect(replace.AsInt32(), rowStart + column, best);
            }
        }
        max.Store(y);
        best.Store(argmax);
    }

    public void AdaptiveMaxPoolBackward(int planes, int h, int w, int oh, int ow, Buf dy, Buf argmax, Buf dx)
    {
        float[] DY = Arr(dy), DX = Arr(dx);
        int[] A = IntArr(argmax);
        int dyOff = Off(dy), aOff = Off(argmax), dxOff = Off(dx), outPlane = oh * ow;
        CpuParallel.For(planes, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
            {
                // Bins overlap when upsampling (or for non-divisible sizes): gradients accumulate.
                var plane = DX.AsSpan(dxOff + p * h * w, h * w);
                plane.Clear();
                for (int o = 0; o < outPlane; o++) plane[A[aOff + p * outPlane + o]] += DY[dyOff + p * outPlane + o];
            }
        }, costPerItem: (double)Math.Max(h * w, outPlane));
    }

    public void UpsampleNearest2xForward(int planes, int h, int w, Buf x, Buf y)
    {
        float[] X = Arr(x), Y = Arr(y);
        int xOff = Off(x), yOff = Off(y);
        CpuParallel.For(planes, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
                for (int i = 0; i < h; i++)
                {
                    int src = xOff + (p * h + i) * w, top = yOff + (p * 2 * h + 2 * i) * 2 * w;
                    for (int j = 0; j < w; j++) { float v = X[src + j]; Y[top + 2 * j] = v; Y[top + 2 * j + 1] = v; }
                    Array.Copy(Y, top, Y, top + 2 * w, 2 * w);
                }
        }, costPerItem: 4.0 * h * w);
    }

    public void UpsampleNearest2xBackward(int planes, int h, int w, Buf dy, Buf dx)
    {
        float[] DY = Arr(dy), DX = Arr(dx);
        int dyOff = Off(dy), dxOff = Off(dx);
        CpuParallel.For(planes, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
                for (int i = 0; i < h; i++)
                {
                    int dst = dxOff + (p * h + i) * w, top = dyOff + (p * 2 * h + 2 * i) * 2 * w, bottom = top + 2 * w;
                    for (int j = 0; j < w; j++)
                        DX[dst + j] = DY[top + 2 * j] + DY[top + 2 * j + 1] + DY[bottom + 2 * j] + DY[bottom + 2 * j + 1];
                }
        }, costPerItem: 4.0 * h * w);
    }
}
