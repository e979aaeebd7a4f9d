using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// The convolution's versions of the kernel lab (src/Kernels/Lab/ConvLab.cs), for the forward and both backward passes:
//   v1: the implicit-GEMM products of Conv/ConvIlgpu.cs through GEMM v1 — each staged value costs integer divisions
//       (k into channel and tap, j into image and pixel; the input gradient also tests the stride phase with two more);
//   v2: the same products through the backend's GEMM version (128×128 tiles, split-K);
//   v3: index tables instead of divisions: a launch first writes per k and per j what the divisions gave (offsets and
//       the row and column they stand for); a staged value is then two table reads (the tap's is the same for a warp
//       staging across columns), two adds and a bounds test.
// The weight gradient's v1 and v2 cut the reduction into slices themselves; its v3 leaves that to GEMM v3's split-K.
public sealed partial class IlgpuBackend
{
    /// <summary>An entry of the convolution index tables: an element offset, the row and column it stands for, and a
    /// second offset (which one is said where each table is described).</summary>
    public struct ConvIndex
    {
        public int Offset, Row, Col, Aux;
    }

    /// <summary>x at patch entry (tap, column) of group g, zero in the padding: the forward's B(k, j) and the weight
    /// gradient's B(k, j) with the roles of k and j swapped (tables of <see cref="ConvTablesKernel"/>).</summary>
    private static float PatchValue(ArrayView<float> x, in ConvShape s, int g, ConvIndex tap, ConvIndex column)
    {
        int ih = column.Row + tap.Row, iw = column.Col + tap.Col;
        return (uint)ih < (uint)s.H && (uint)iw < (uint)s.W ? x[column.Offset + g * s.CinG * s.InPlane + tap.Offset] : 0f;
    }

    /// <summary>Forward as <see cref="ConvForwardProduct"/>, reading the patch matrix through index tables.</summary>
    public struct ConvForwardTabledProduct : ITiledProduct
    {
        public ConvShape S;
        public int HasBias;
        /// <summary>Per k = (ci, kh, kw): ci·H·W + kh·W + kw, kh, kw.</summary>
        public ArrayView<ConvIndex> Taps;
        /// <summary>Per j = (n, oh, ow): n·Cin·H·W + ih0·W + iw0, ih0, iw0 with ih0 = oh·stride − pad (iw0 alike), and
        /// as Aux the offset of y[n, 0, oh, ow].</summary>
        public ArrayView<ConvIndex> Columns;

        public readonly int M => S.CoutG;
        public readonly int N => S.Batch * S.OutPlane;
        public readonly int K => S.CinG * S.Taps;
        public readonly int Items => S.Groups;
        public readonly bool AAlongK => true;
        public readonly bool BAlongK => false;

        public readonly float LoadA(ArrayView<float> w, int g, int i, int k) => w[(g * S.CoutG + i) * K + k];

        public readonly float LoadB(ArrayView<float> x, int g, int k, int j) => PatchValue(x, S, g, Taps[k], Columns[j]);

        public readonly void Store(ArrayView<float> y, ArrayView<float> bias, int g, int i, int j, float value)
        {
            int co = g * S.CoutG + i;
            y[Columns[j].Aux + co * S.OutPlane] = HasBias != 0 ? value + bias[co] : value;
        }
    }

    /// <summary>Weight gradient as <see cref="ConvWeightGradProduct"/> without slices of its own (GEMM v3 splits K),
    /// through the forward's tables: A(i, k) = dy[Columns[k].Aux + channel offset], B(k, j) = the patch value of
    /// tap j at column k.</summary>
    public struct ConvWeightGradTabledProduct : ITiledProduct
    {
        public ConvShape S;
        /// <summary>Per j = (ci, kh, kw), as <see cref="ConvForwardTabledProduct.Taps"/>.</summary>
        public ArrayView<ConvIndex> Taps;
        /// <summary>Per k = (n, oh, ow), as <see cref="ConvForwardTabledProduct.Columns"/> (Aux: the offset of dy[n, 0, oh, ow]).</summary>
        public ArrayView<ConvIndex> Columns;

        public readonly int M => S.CoutG;
        public readonly int N => S.CinG * S.Taps;
        public readonly int K => S.Batch * S.OutPlane;
        public readonly int Items => S.Groups;
        public readonly bool AAlongK => true;   // consecutive k are neighbouring output positions
        public readonly bool BAlongK => true;

        public readonly float LoadA(ArrayView<float> dy, int g, int i, int k) => dy[Columns[k].Aux + (g * S.CoutG + i) * S.OutPlane];

        public readonly float LoadB(ArrayView<float> x, int g, int k, int j) => PatchValue(x, S, g, Taps[j], Columns[k]);

        public readonly void Store(ArrayView<float> dw, ArrayView<float> unused, int g, int i, int j, float value) =>
            dw[(g * S.CoutG + i) * N + j] = value;
    }

    /// <summary>
    /// Input gradient as <see cref="ConvInputGradProduct"/> through index tables that also take the stride phase out of
    /// the gather. Write kh = ah·StrideH + bh and ih + PadTop = qh·StrideH + rh (0 ≤ bh, rh &lt; StrideH): tap kh
    /// of input ih reads output oh = qh − ah exactly when bh = rh. The tables store Row = qh + rh·Span per input and
    /// Row = ah + bh·Span per tap, with a span wider than any qh − ah (<see cref="ConvShape.PhaseSpanH"/>), so
    /// that one unsigned test of the difference against OH checks both the phase and the range (columns alike).
    /// </summary>
    public struct ConvInputGradTabledProduct : ITiledProduct
    {
        public ConvShape S;
        /// <summary>Per k = (co, kh, kw): co·OH·OW − ah·OW − aw, ah + bh·SpanH, aw + bw·SpanW, and as Aux the offset of
        /// w[co, 0, kh, kw].</summary>
        public ArrayView<ConvIndex> Taps;
        /// <summary>Per j = (n, ih, iw): n·Cout·OH·OW + qh·OW + qw, qh + rh·SpanH, qw + rw·SpanW, and as Aux the
        /// offset of dx[n, 0, ih, iw].</summary>
        public ArrayView<ConvIndex> Columns;

        public readonly int M => S.CinG;
        public readonly int N => S.Batch * S.InPlane;
        public readonly int K => S.CoutG * S.Taps;
        public readonly int Items => S.Groups;
        public readonly bool AAlongK => true;
        public readonly bool BAlongK => false;

        public readonly float LoadA(ArrayView<float> w, int g, int i, int k) => w[Taps[k].Aux + (g * S.CoutG * S.CinG + i) * S.Taps];

        public readonly float LoadB(ArrayView<float> dy, int g, int k, int j)
        {
            var tap = Taps[k];
            var column = Columns[j];
            int oh = column.Row - tap.Row, ow = column.Col - tap.Col;
            return (uint)oh < (uint)S.OH && (uint)ow < (uint)S.OW ? dy[column.Offset + g * S.CoutG * S.OutPlane + tap.Offset] : 0f;
        }

        public readonly void Store(ArrayView<float> dx, ArrayView<float> unused, int g, int i, int j, float value) =>
            dx[Columns[j].Aux + (g * S.CinG + i) * S.InPlane] = value;
    }

    internal static readonly Action<ArrayView<ConvIndex>, ArrayView<ConvIndex>, ConvShape> ConvTablesEntry = ConvTablesKernel;
    internal static readonly Action<ArrayView<ConvIndex>, ArrayView<ConvIndex>, ConvShape> ConvInputGradTablesEntry = ConvInputGradTablesKernel;

    /// <summary>Fills the tables of <see cref="ConvForwardTabledProduct"/> and <see cref="ConvWeightGradTabledProduct"/>
    /// (the divisions, once per tap and per output position).</summary>
    internal static void ConvTablesKernel(ArrayView<ConvIndex> taps, ArrayView<ConvIndex> columns, ConvShape s)
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
                columns[e] = new ConvIndex { Offset = image * s.Cin * s.InPlane + ih0 * s.W + iw0, Row = ih0, Col = iw0, Aux = image * s.Cout * s.OutPlane + pix };
            }
        }
    }

    /// <summary>Fills the tables of <see cref="ConvInputGradTabledProduct"/> (per tap of a group's output channels,
    /// per input position).</summary>
    internal static void ConvInputGradTablesKernel(ArrayView<ConvIndex> taps, ArrayView<ConvIndex> columns, ConvShape s)
    {
        int k = taps.IntLength, n = columns.IntLength, count = k > n ? k : n;
        int spanH = s.PhaseSpanH, spanW = s.PhaseSpanW;
        for (int e = Grid.GlobalIndex.X; e < count; e = GridStrideNext(e, count, GridStrideStep))
        {
            if (e < k)
            {
                int co = e / s.Taps, tap = e - co * s.Taps, kh = tap / s.KW, kw = tap - kh * s.KW;
                int ah = kh / s.StrideH, bh = kh - ah * s.StrideH, aw = kw / s.StrideW, bw = kw - aw * s.StrideW;
                taps[e] = new ConvIndex { Offset = co * s.OutPlane - ah * s.OW - aw, Row = ah + bh * spanH, Col = aw + bw * spanW, Aux = co * s.CinG * s.Taps + tap };
            }
            if (e < n)
            {
                int image = e / s.InPlane, pix = e - image * s.InPlane, ih = pix / s.W, iw = pix - ih * s.W;
                int qh = (ih + s.PadTop) / s.StrideH, rh = ih + s.PadTop - qh * s.StrideH;
                int qw = (iw + s.PadLeft) / s.StrideW, rw = iw + s.PadLeft - qw * s.StrideW;
                columns[e] = new ConvIndex { Offset = image * s.Cout * s.OutPlane + qh * s.OW + qw, Row = qh + rh * spanH, Col = qw + rw * spanW, Aux = image * s.Cin * s.InPlane + pix };
            }
        }
    }

    /// <summary>Tap and column tables of <paramref name="taps"/> + <paramref name="columns"/> entries from the pool,
    /// filled by <paramref name="fill"/>; the storage goes back to the pool when disposed, after the launches that
    /// read it are queued (later work on the stream reuses it).</summary>
    private (Storage Storage, ArrayView<ConvIndex> Taps, ArrayView<ConvIndex> Columns) ConvTables(
        Action<ArrayView<ConvIndex>, ArrayView<ConvIndex>, ConvShape> fill, ConvShape shape, int taps, int columns)
    {
        const int IntsPerEntry = 4;   // ConvIndex
        var storage = Allocate((long)IntsPerEntry * (taps + columns), DType.Int32, zero: false);
        var all = I(new Buf(storage, 0), (long)IntsPerEntry * (taps + columns)).Cast<ConvIndex>();
        var (tapView, columnView) = (all.SubView(0, taps), all.SubView(taps, columns));
        Kernel(fill)(GridStride(Math.Max(taps, columns), Sizes.ElementGroup), tapView, columnView, shape);
        return (storage, tapView, columnView);
    }

    /// <summary>The GEMM version a conv version runs on: v1 on GEMM v1, the others on the GEMM family's used version.</summary>
    private static int ConvGemmVersion(int version) => version == 1 ? 1 : Lab.GemmLab.BackendVersion;

    private static void RequireConvVersion(int version)
    {
        if (version is < 1 or > 3) throw new ArgumentOutOfRangeException(nameof(version), version, "conv versions are 1, 2 and 3");
    }

    /// <summary>The forward with conv version <paramref name="version"/> of the lab (1, 2 or 3 above; shapes for the
    /// direct kernel take it whatever the version).</summary>
    internal void ConvForwardVersion(int version, in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        RequireConvVersion(version);
        if ((long)d.N * d.Cout * d.OH * d.OW == 0) return;
        using var t = OpenConv(d, x, w, y, ConvWritten.Y);
        var bv = bias is Buf b ? F(b, d.Cout) : t.WView;   // any view when there is no bias: it is never read
        int hasBias = bias.HasValue ? 1 : 0;
        if (UseDirectConv(d))
        {
            Kernel(DirectForwardEntry)(GridStride((long)d.N * d.Cout * d.OH * d.OW, Sizes.ElementGroup), t.XView, t.WView, bv, t.YView, t.Shape, hasBias);
            return;
        }
        if (version < 3)
        {
            RunTiled(ConvGemmVersion(version), t.WView, t.XView, t.YView, bv, new ConvForwardProduct { S = t.Shape, HasBias = hasBias });
            return;
        }
        var (tables, taps, columns) = ConvTables(ConvTablesEntry, t.Shape, t.Shape.CinG * t.Shape.Taps, d.N * d.OH * d.OW);
        using (tables)
            RunTiled(ConvGemmVersion(version), t.WView, t.XView, t.YView, bv, new ConvForwardTabledProduct { S = t.Shape, HasBias = hasBias, Taps = taps, Columns = columns });
    }

    /// <summary>The input gradient with conv version <paramref name="version"/>.</summary>
    internal void ConvInputGradVersion(int version, in Conv2dDesc d, Buf dy, Buf w, Buf dx)
    {
        RequireConvVersion(version);
        if ((long)d.N * d.Cin * d.H * d.W == 0) return;
        using var t = OpenConv(d, dx, w, dy, ConvWritten.X);
        if (UseDirectConv(d))
        {
            Kernel(DirectInputGradEntry)(GridStride((long)d.N * d.Cin * d.H * d.W, Sizes.ElementGroup), t.YView, t.WView, t.XView, t.Shape);
            return;
        }
        if (version < 3)
        {
            RunTiled(ConvGemmVersion(version), t.WView, t.YView, t.XView, t.XView, new ConvInputGradProduct { S = t.Shape });
            return;
        }
        var (tables, taps, columns) = ConvTables(ConvInputGradTablesEntry, t.Shape, t.Shape.CoutG * t.Shape.Taps, d.N * d.H * d.W);
        using (tables)
            RunTiled(ConvGemmVersion(version), t.WView, t.YView, t.XView, t.XView, new ConvInputGradTabledProduct { S = t.Shape, Taps = taps, Columns = columns });
    }

    /// <summary>The weight gradient (and the bias gradient when asked) with conv version <paramref name="version"/>.</summary>
    internal void ConvWeightGradVersion(int version, in Conv2dDesc d, Buf x, Buf dy, Buf dw, Buf? dbias)
    {
        RequireConvVersion(version);
        using var t = OpenConv(d, x, dw, dy, ConvWritten.W);
        if (dbias is Buf db) ChannelSums(d, t.Y, db);
        long weights = t.WView.Length;
        int reduction = d.N * d.OH * d.OW, slices, sliceLength;
        if (UseDirectConv(d))
        {
            // A thread per (weight, slice of the reduction), as many slices as fill the device.
            long threads = (long)Sizes.MaxElementGroups * Sizes.ElementGroup * 4;
            (slices, sliceLength) = Slices(reduction, (int)Math.Clamp(threads / weights, 1, (reduction + 63) / 64));
            using var directPartials = slices == 1 ? null : Allocate(slices * weights, DType.Float32, zero: false);
            var target = directPartials == null ? t.WView : F(new Buf(directPartials, 0), slices * weights);
            Kernel(DirectWeightGradEntry)(GridStride(slices * weights, Sizes.ElementGroup), t.XView, t.YView, target, t.Shape, sliceLength);
            if (directPartials != null) ReduceSum(new Buf(directPartials, 0), dw, 1, slices, (int)weights);
            return;
        }
        if (version == 3)
        {
            var (tables, taps, columns) = ConvTables(ConvTablesEntry, t.Shape, t.Shape.CinG * t.Shape.Taps, reduction);
            using (tables)
                RunTiled(ConvGemmVersion(version), t.YView, t.XView, t.WView, t.WView, new ConvWeightGradTabledProduct { S = t.Shape, Taps = taps, Columns = columns });
            return;
        }

        // Too few output tiles to occupy the device: cut the reduction over (n, oh, ow) into slices whose
        // partial weight gradients are summed afterwards (deterministic, unlike atomics). Every slice keeps at
        // least a few K steps of work.
        int size = TileSize;
        long tiles = (long)d.Groups * ((d.CoutPerGroup + size - 1) / size) * ((d.CinPerGroup * d.KH * d.KW + size - 1) / size);
        (slices, sliceLength) = Slices(reduction, (int)Math.Clamp(Sizes.MaxElementGroups / tiles, 1, Math.Max(1, reduction / (4 * size))));
        var product = new ConvWeightGradProduct { S = t.Shape, Splits = slices, SliceLength = sliceLength };
        if (slices == 1) { RunTiled(ConvGemmVersion(version), t.YView, t.XView, t.WView, t.WView, product); return; }

        using var partials = Allocate(slices * weights, DType.Float32, zero: false);
        var pv = F(new Buf(partials, 0), slices * weights);
        RunTiled(ConvGemmVersion(version), t.YView, t.XView, pv, pv, product);
        ReduceSum(new Buf(partials, 0), dw, 1, slices, (int)weights);
    }
}
