using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MaskBit.Kernels.Cpu;

/// <summary>
/// A group of images laid out so that every tap of a convolution reads one shifted window, which lets the packed
/// GEMM read the patch matrix through a row-offset table (<see cref="MatrixView"/>) instead of an im2col copy.
/// Each channel is split into StrideH × StrideW phase planes of Hq × Wq:
/// element [c, a, b, image, i, j] = source[image, c, i·StrideH + a − PadTop, j·StrideW + b − PadLeft] (zero outside).
/// GEMM column img·Plane + oy·Wq + ox stands for output (img, oy, ox), and tap (kh, kw) of channel c reads it at
/// <see cref="TapOffset"/>(c, kh, kw) + column: the phase absorbs the stride, so every tap is a plain shift. Columns
/// with ox ≥ OW (or rows past OH) wrap into the next row or image; callers compute and drop them, or zero them.
/// </summary>
internal readonly record struct ConvWindows(int Channels, int Images, int StrideH, int StrideW, int PadTop, int PadLeft, int Hq, int Wq)
{
    public int Plane => Hq * Wq;

    /// <summary>Distance between consecutive channels (the leading dimension of a transposed tap view).</summary>
    public int ChannelStride => StrideH * StrideW * Images * Plane;

    /// <summary>The planes plus trailing zeros: with shared padding the last plane's outputs read into them.</summary>
    public long Floats => (long)Channels * ChannelStride + Slack;

    private int Slack => (Math.Max(PadTop, 0) + 1) * Wq;

    public long TapOffset(int c, int kh, int kw) =>
        ((long)(c * StrideH + kh % StrideH) * StrideW + kw % StrideW) * Images * Plane + (long)(kh / StrideH) * Wq + kw / StrideW;

    /// <summary>GEMM columns that cover outputs (rows × cols) of every image: up to the last valid one.</summary>
    public int Columns(int rows, int cols) => (Images - 1) * Plane + (rows - 1) * Wq + cols;

    /// <summary>Lays out images [image0, image0 + Images) of the NCHW tensor src (Channels × h × w each) into dst.</summary>
    public void Fill(float[] src, int srcOff, int image0, int h, int w, float[] dst)
    {
        var l = this;
        dst.AsSpan(Channels * ChannelStride, Slack).Clear();
        CpuParallel.For(Channels * StrideH * StrideW * Images, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
            {
                int img = p % l.Images, rest = p / l.Images, b = rest % l.StrideW, a = rest / l.StrideW % l.StrideH, c = rest / l.StrideW / l.StrideH;
                var plane = dst.AsSpan(p * l.Plane, l.Plane);
                var source = src.AsSpan(srcOff + ((image0 + img) * l.Channels + c) * h * w, h * w);
                var (rowLo, rowHi) = CpuBackend.ValidTaps(a, l.PadTop, l.StrideH, h, l.Hq);
                var (colLo, colHi) = CpuBackend.ValidTaps(b, l.PadLeft, l.StrideW, w, l.Wq);
                if (colLo == colHi || rowLo == rowHi) { plane.Clear(); continue; }
                plane[..(rowLo * l.Wq)].Clear();
                plane[(rowHi * l.Wq)..].Clear();
                for (int i = rowLo; i < rowHi; i++)
                {
                    var row = plane.Slice(i * l.Wq, l.Wq);
                    row[..colLo].Clear();
                    row[colHi..].Clear();
                    Gather(source.Slice((i * l.StrideH + a - l.PadTop) * w), colLo * l.StrideW + b - l.PadLeft, l.StrideW, row[colLo..colHi]);
                }
            }
        }, costPerItem: Plane);
    }

    /// <summary>The inverse view for results: dst[image0 + img, c, row0 + r·rowStep, col0 + c'·colStep] =
    /// product[c·ld + img·Plane + r·Wq + c'] (+ bias[c]) for r &lt; rows, c' &lt; cols; dst has `channels` channels of h × w.</summary>
    public void Scatter(float[] product, int ld, int channels, int rows, int cols, float[] dst, int dstOff, int image0, int h, int w,
        int row0, int rowStep, int col0, int colStep, float[]? bias = null, int biasOff = 0)
    {
        var l = this;
        CpuParallel.For(channels * Images, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
            {
                int c = p / l.Images, img = p % l.Images;
                float add = bias == null ? 0f : bias[biasOff + c];
                var target = dst.AsSpan(dstOff + ((image0 + img) * channels + c) * h * w, h * w);
                for (int r = 0; r < rows; r++)
                {
                    var src = product.AsSpan(c * ld + img * l.Plane + r * l.Wq, cols);
                    var row = target.Slice((row0 + r * rowStep) * w);
                    if (colStep == 1)
                    {
                        var d = row.Slice(col0, cols);
                        if (add == 0f) src.CopyTo(d); else TensorPrimitives.Add(src, add, d);
                    }
                    else
                    {
                        ref float d0 = ref row[col0];
                        for (int j = 0; j < cols; j++) Unsafe.Add(ref d0, j * colStep) = src[j] + add;
                    }
                }
            }
        }, costPerItem: (double)rows * cols);
    }

    /// <summary>seg[o] = src[start + o·stride]; the caller clipped the indices to src.</summary>
    private static void Gather(Span<float> src, int start, int stride, Span<float> seg)
    {
        if (stride == 1) { src.Slice(start, seg.Length).CopyTo(seg); return; }
        ref float s0 = ref src[start];
        ref float c0 = ref MemoryMarshal.GetReference(seg);
        for (int o = 0; o < seg.Length; o++) Unsafe.Add(ref c0, o) = Unsafe.Add(ref s0, o * stride);
    }
}
