using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// The convolution forward's versions of the kernel lab (src/Kernels/Lab/ConvLab.cs):
//   v1: ConvForwardProduct through GEMM v1 — each staged patch value costs four integer divisions (k into channel and
//       tap, j into image and pixel);
//   v2: the same product through the backend's GEMM version (128×128 tiles, split-K);
//   v3: index tables instead of divisions: a launch first writes, per k, the offset of (ci, kh, kw) in an image and
//       (kh, kw), and per output column j the offset of its window's corner and (ih0, iw0); a staged value is then two
//       table reads (the tap's is the same for a warp staging across columns), two adds and a bounds test.
public sealed partial class IlgpuBackend
{
    /// <summary>An entry of the convolution index tables: an element offset and the row and column it stands for.</summary>
    public struct ConvIndex
    {
        public int Offset, Row, Col;
    }

    /// <summary>Forward as <see cref="ConvForwardProduct"/>, reading the patch matrix through index tables:
    /// B(k, j) = x[Columns[j].Offset + g·CinG·H·W + Taps[k].Offset] where (Columns[j].Row + Taps[k].Row,
    /// Columns[j].Col + Taps[k].Col) lies inside the image, else 0.</summary>
    public struct ConvForwardTabledProduct : ITiledProduct
    {
        public ConvShape S;
        public int HasBias;
        /// <summary>Per k = (ci, kh, kw): ci·H·W + kh·W + kw, kh, kw.</summary>
        public ArrayView<ConvIndex> Taps;
        /// <summary>Per j = (n, oh, ow): n·Cin·H·W + ih0·W + iw0, ih0, iw0 with ih0 = oh·stride − pad (iw0 alike).</summary>
        public ArrayView<ConvIndex> Columns;

        public readonly int M => S.CoutG;
        public readonly int N => S.Batch * S.OutPlane;
        public readonly int K => S.CinG * S.Taps;
        public readonly int Items => S.Groups;
        public readonly bool AAlongK => true;
        public readonly bool BAlongK => false;

        public readonly float LoadA(ArrayView<float> w, int g, int i, int k) => w[(g * S.CoutG + i) * K + k];

        public readonly float LoadB(ArrayView<float> x, int g, int k, int j)
        {
            var tap = Taps[k];
            var column = Columns[j];
            int ih = column.Row + tap.Row, iw = column.Col + tap.Col;
            return (uint)ih < (uint)S.H && (uint)iw < (uint)S.W ? x[column.Offset + g * S.CinG * S.InPlane + tap.Offset] : 0f;
        }

        public readonly void Store(ArrayView<float> y, ArrayView<float> bias, int g, int i, int j, float value)
        {
            int co = g * S.CoutG + i, n = j / S.OutPlane;
            y[(n * S.Cout + co) * S.OutPlane + j - n * S.OutPlane] = HasBias != 0 ? value + bias[co] : value;
        }
    }

    internal static readonly Action<ArrayView<ConvIndex>, ArrayView<ConvIndex>, ConvShape> ConvForwardTablesEntry = ConvForwardTablesKernel;

    /// <summary>Fills the tables of <see cref="ConvForwardTabledProduct"/> (the divisions, once per k and per j).</summary>
    internal static void ConvForwardTablesKernel(ArrayView<ConvIndex> taps, ArrayView<ConvIndex> columns, ConvShape s)
    {
        int k = taps.IntLength, n = columns.IntLength, count = k > n ? k : n;
        for (int e = Grid.GlobalIndex.X; e < count; e = GridStrideNext(e, count, GridStrideStep))
        {
            if (e < k)
            {
                int ci = e / s.Taps, tap = e - ci * s.Taps, kh = tap / s.KW, kw = tap - kh * s.KW;
                taps[e] = new ConvIndex { Offset = ci * s.InPlane + kh * s.W + kw, Row = kh, Col = kw };
            }
            if (e < n)
            {
                int image = e / s.OutPlane, pix = e - image * s.OutPlane, oh = pix / s.OW, ow = pix - oh * s.OW;
                int ih0 = oh * s.StrideH - s.PadTop, iw0 = ow * s.StrideW - s.PadLeft;
                columns[e] = new ConvIndex { Offset = image * s.Cin * s.InPlane + ih0 * s.W + iw0, Row = ih0, Col = iw0 };
            }
        }
    }

    /// <summary>The implicit-GEMM forward with conv version <paramref name="version"/> of the lab (1, 2 or 3 above;
    /// shapes for the direct kernel take it whatever the version).</summary>
    internal void ConvForwardVersion(int version, in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        CheckConvSize(d);
        if ((long)d.N * d.Cout * d.OH * d.OW == 0) return;
        using var wideX = Float32Copy(ref x, (long)d.N * d.Cin * d.H * d.W);
        using var wideW = Float32Copy(ref w, (long)d.Cout * d.CinPerGroup * d.KH * d.KW);
        var shape = ConvShape.From(d);
        var xv = ConvInput(d, x);
        var wv = ConvWeight(d, w);
        var yv = ConvOutput(d, y);
        var bv = bias is Buf b ? F(b, d.Cout) : wv;   // any view when there is no bias: it is never read
        int hasBias = bias.HasValue ? 1 : 0;
        if (UseDirectConv(d))
        {
            Kernel(DirectForwardEntry)(GridStride((long)d.N * d.Cout * d.OH * d.OW, Sizes.ElementGroup), xv, wv, bv, yv, shape, hasBias);
            return;
        }
        switch (version)
        {
            case 1: RunTiled(1, wv, xv, yv, bv, new ConvForwardProduct { S = shape, HasBias = hasBias }); break;
            case 2: RunTiled(Lab.GemmLab.BackendVersion, wv, xv, yv, bv, new ConvForwardProduct { S = shape, HasBias = hasBias }); break;
            case 3:
                int k = shape.CinG * shape.Taps, n = d.N * d.OH * d.OW;
                using (var tables = Allocate(3L * (k + n), DType.Int32, zero: false))
                {
                    var all = I(new Buf(tables, 0), 3L * (k + n)).Cast<ConvIndex>();
                    var product = new ConvForwardTabledProduct { S = shape, HasBias = hasBias, Taps = all.SubView(0, k), Columns = all.SubView(k, n) };
                    Kernel(ConvForwardTablesEntry)(GridStride(Math.Max(k, n), Sizes.ElementGroup), product.Taps, product.Columns, shape);
                    // The tables go back to the pool after the launch is queued: later work on the stream reuses them.
                    RunTiled(Lab.GemmLab.BackendVersion, wv, xv, yv, bv, product);
                }
                break;
            default: throw new ArgumentOutOfRangeException(nameof(version), version, "conv forward versions are 1, 2 and 3");
        }
    }
}
