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

    /// <summary>Lays out images [image0, image0 + Images) of the NCHW tensor at src (Channels × h × w each) into dst.
    /// A bfloat16/float16 source is widened row by row as it is laid out: the layout is the convolution's packing.</summary>
    public void Fill(Buf src, int image0, int h, int w, float[] dst) => Fill(src, image0, 1, h, w, dst);

    /// <summary><see cref="Fill"/> of `layouts` groups of Images images each, group i at dst[i·Floats…] (with Images
    /// = 1, one layout per image: its channels Plane apart instead of a batch of planes apart).</summary>
    public void Fill(Buf src, int image0, int layouts, int h, int w, float[] dst)
    {
        var l = this;
        var rows = new SourceRows((CpuStorage)src.Storage, CpuBackend.Off(src), CpuIsa.Current);
        int planes = Channels * StrideH * StrideW * Images;
        for (int i = 0; i < layouts; i++) dst.AsSpan((int)(i * Floats) + Channels * ChannelStride, Slack).Clear();
        CpuParallel.For(planes * layouts, (q0, q1) =>
        {
            for (int q = q0; q < q1; q++)
            {
                int layout = q / planes, p = q % planes;
                int img = p % l.Images, rest = p / l.Images, b = rest % l.StrideW, a = rest / l.StrideW % l.StrideH, c = rest / l.StrideW / l.StrideH;
                var plane = dst.AsSpan((int)(layout * l.Floats) + p * l.Plane, l.Plane);
                int source = ((image0 + layout * l.Images + img) * l.Channels + c) * h * w;
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
                    rows.Gather(source + (i * l.StrideH + a - l.PadTop) * w + colLo * l.StrideW + b - l.PadLeft, l.StrideW, row[colLo..colHi]);
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

}

/// <summary>Strided runs of a float32, bfloat16 or float16 tensor read as float32 (the ISA travels explicitly: the
/// callers are worker threads).</summary>
internal readonly struct SourceRows(CpuStorage storage, int offset, Isa isa)
{
    /// <summary>The contiguous run source[start, start + length) as float32: the tensor itself when it is float32,
    /// else widened into <paramref name="scratch"/>.</summary>
    public ReadOnlySpan<float> Run(int start, int length, Span<float> scratch)
    {
        if (storage.DType == DType.Float32) return storage.Floats.AsSpan(offset + start, length);
        Gather(start, 1, scratch[..length]);
        return scratch[..length];
    }

    /// <summary>seg[o] = source[start + o·stride] as float32; the caller clipped the indices to the tensor.</summary>
    public void Gather(int start, int stride, Span<float> seg)
    {
        start += offset;
        ref float c0 = ref MemoryMarshal.GetReference(seg);
        if (storage.DType == DType.Float32)
        {
            var floats = storage.Floats;
            if (stride == 1) { floats.AsSpan(start, seg.Length).CopyTo(seg); return; }
            ref float s0 = ref floats[start];
            for (int o = 0; o < seg.Length; o++) Unsafe.Add(ref c0, o) = Unsafe.Add(ref s0, o * stride);
            return;
        }
        var halves = storage.Halves;
        if (stride == 1) { HalfConversion.Widen(halves.AsSpan(start, seg.Length), seg, storage.DType, isa); return; }
        var dtype = storage.DType;
        for (int o = 0; o < seg.Length; o++) Unsafe.Add(ref c0, o) = HalfBits.ToFloat(halves[start + o * stride], dtype);
    }
}
