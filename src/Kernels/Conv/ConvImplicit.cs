using System.Numerics.Tensors;

namespace MaskBit.Kernels.Cpu;

// General convolutions (any kernel, stride, padding, groups) as implicit GEMMs over ConvWindows: the packed GEMM
// reads the patch matrix as shifted windows of the laid-out input, so no pass writes patches.
// - forward:         y_g  = W_g · patches(x)                    (bands of columns per worker, or on small maps one
//                    GEMM per group with its columns split over the cores);
// - input gradient:  per stride phase (a, b) of dx, a stride-1 conv of dy with the phase's taps of W, flipped and
//                    transposed: dx[.., u·s + a − pad, ..] gathers exactly the taps kh ≡ a (mod s) (bands as the forward);
// - weight gradient: dWᵀ_g = patches · dY_gᵀ, the patches read in place through the forward's windows and row
//                    table (K = the spatial axis); with few output channels dW_g = dY_g · patchesᵀ, the patches packed.
// Scratch (windows, products) is sized per group of images, at most PassFloats unless one image needs more.
public sealed partial class CpuBackend
{
    /// <summary>Scratch budget in floats for one pass of images (layout + product). Tests shrink it to split
    /// batches into several passes.</summary>
    internal static long PassFloats { get; set; } = 1 << 22;

    private static int ImagesPerPass(long floatsPerImage, int images) =>
        (int)Math.Clamp(PassFloats / Math.Max(1, floatsPerImage), 1, images);

    /// <summary>Forward windows: every output reads rows oy..oy + (KH−1)/StrideH of its phase plane (stride 1:
    /// neighbouring rows and planes share their zero padding).</summary>
    private static ConvWindows InputWindows(in Conv2dDesc d, int images) =>
        d.StrideH == 1 && d.StrideW == 1
            ? new(d.Cin, images, 1, 1, d.PadTop, d.PadLeft, SharedPadSpan(d.H, d.PadTop, d.OH, d.KH), SharedPadSpan(d.W, d.PadLeft, d.OW, d.KW))
            : new(d.Cin, images, d.StrideH, d.StrideW, d.PadTop, d.PadLeft, d.OH + (d.KH - 1) / d.StrideH, d.OW + (d.KW - 1) / d.StrideW);

    /// <summary>Rows (or columns) per plane of a stride-1 layout whose data sits at [pad, pad + size) and whose
    /// outputs, read with `taps` taps, may reach up to `pad` rows into the next plane: that plane's leading zeros
    /// double as this one's trailing padding (the SAME 3×3 conv of an H-row map needs H + 1 rows, not H + 2). At
    /// least `outputs` rows, so that outputs do not overlap.</summary>
    private static int SharedPadSpan(int size, int pad, int outputs, int taps) =>
        Math.Max(Math.Max(size + pad, outputs + taps - 1 - pad), outputs);

    /// <summary>GEMM columns per band in the forward: a band's product (Cout × this) stays in L2 while the K blocks
    /// accumulate into it and while it is copied out. Tests shrink it to run small maps in bands.</summary>
    internal static int BandColumns { get; set; } = 1024;

    private void ImplicitForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        var body = new ForwardBody(this, d, x, bias, y);
        OperandPair.Run(w, ref body);
    }

    /// <summary>The forward with the weights' element type (float32 or 16-bit, widened as the GEMM packs them).</summary>
    private readonly unsafe struct ForwardBody(CpuBackend backend, Conv2dDesc d, Buf x, Buf? bias, Buf y) : IOperandBody
    {
        public void Run<TW>(TW* pw) where TW : unmanaged => backend.ImplicitForward(d, x, pw, bias, y);
    }

    private unsafe void ImplicitForward<TW>(in Conv2dDesc d, Buf x, TW* pw, Buf? bias, Buf y) where TW : unmanaged
    {
        int k = d.CinPerGroup * d.KH * d.KW, coutG = d.CoutPerGroup;
        var full = InputWindows(d, 1);
        // In bands of columns when there are enough for every worker to take two: each band's product is computed
        // and copied to y by one worker. A small map is one GEMM over all its columns instead, split over the workers.
        // A few output channels (ConvFewOutputs.cs) make a small product: one pass, whatever the map. Not on AVX-512,
        // whose 6×32 GEMM tile stays ahead of the 8-wide direct kernel there (bench/RESULTS.md, "few outputs").
        bool fewOutputs = coutG <= FewOutputs && CpuIsa.Current != Isa.Avx512;
        // The AVX2 tile (ConvDirect.cs) writes straight to y, also in one pass.
        bool direct = !fewOutputs && UsesDirectTile(coutG, full.Columns(d.OH, d.OW), (long)d.Cout * k);
        bool banded = !fewOutputs && !direct && full.Columns(d.OH, d.OW) >= 2 * CpuParallel.Workers * BandColumns;
        int perPass = ImagesPerPass(full.Floats + (banded || direct ? 0 : (long)d.Cout * full.Plane), d.N);
        var most = full with { Images = perPass };
        using var windows = Scratch(direct ? perPass * full.Floats : most.Floats);
        using var product = banded || direct ? null : Scratch((long)d.Cout * perPass * most.Plane);
        using var wideWeights = fewOutputs && typeof(TW) != typeof(float) ? Scratch((long)d.Cout * k) : null;
        if (wideWeights != null)
            for (int i = 0; i < d.Cout * k; i++) wideWeights.Floats[i] = OperandElements.ToFloat(pw + i);
        var rows = BufferPool<long>.Shared.Rent(d.Groups * k);
        try
        {
            float[] Y = Arr(y);
            for (int n0 = 0; n0 < d.N; n0 += perPass)
            {
                var l = full with { Images = Math.Min(perPass, d.N - n0) };
                if (direct) full.Fill(x, n0, l.Images, d.H, d.W, windows.Floats);   // a layout per image
                else l.Fill(x, n0, d.H, d.W, windows.Floats);
                for (int g = 0; g < d.Groups; g++)
                    TapRows(direct ? full : l, g * d.CinPerGroup, d.CinPerGroup, d.KH, d.KW, rows.AsSpan(g * k), (kh, kw) => (kh, kw));
                if (banded || direct)
                {
                    var target = new ProductTarget(Y, Off(y), n0, d.Cout, d.OH, d.OW, d.OH, d.OW, 0, 1, 0, 1, bias is Buf b0 ? Arr(b0) : null, bias is Buf b1 ? Off(b1) : 0);
                    if (direct) DirectProduct(full, l.Images, d.Groups, coutG, k, pw, windows.Floats, rows, target);
                    else BandedGemm(l, d.Groups, coutG, k, pw, windows.Floats, rows, target);
                    continue;
                }
                int width = l.Columns(d.OH, d.OW);
                float[] P = product!.Floats;
                for (int g = 0; g < d.Groups; g++)
                    fixed (float* pp = windows.Floats, pc = P, pwide = wideWeights?.Floats)
                    fixed (long* pr = &rows[g * k])
                    {
                        if (fewOutputs)
                            FewOutputsForward(coutG, width, k, (pwide != null ? pwide : (float*)pw) + (long)g * coutG * k, pp, pr,
                                pc + (long)g * coutG * width, width);
                        else
                            GemmSplit(coutG, width, k, new MatrixView<TW>(pw + (long)g * coutG * k, k, false),
                                new MatrixView<float>(pp, 0, false, pr), pc + (long)g * coutG * width, width);
                    }
                l.Scatter(P, width, d.Cout, d.OH, d.OW, Y, Off(y), n0, d.OH, d.OW, 0, 1, 0, 1,
                    bias is Buf b ? Arr(b) : null, bias is Buf bo ? Off(bo) : 0);
            }
        }
        finally { BufferPool<long>.Shared.Return(rows); }
    }

    /// <summary>Where the product's columns go: output (img, r, c) of a Rows × Cols map per image (column
    /// img·Plane + r·Wq + c of the windows) lands at Dst[Image0 + img, channel, Row0 + r·RowStep, Col0 + c·ColStep] of a
    /// Channels × H × W tensor at Offset, plus Bias[channel] when given.</summary>
    private readonly record struct ProductTarget(float[] Dst, int Offset, int Image0, int Channels, int H, int W, int Rows, int Cols,
        int Row0, int RowStep, int Col0, int ColStep, float[]? Bias, int BiasOffset);

    /// <summary>y_g = A_g · windows_g for every group, over one pass of images, in bands of GEMM columns (a multiple of
    /// the workers, each a whole number of register tiles, so no band but the last ends in a partial tile): per band
    /// every group's GEMM into a worker's product scratch, then the parts of output rows it covers copied to the
    /// target. A_g is (mG × k) at a + g·mG·k (pinned by the caller, float32 or 16-bit); rows holds each group's k tap
    /// offsets, group after group.</summary>
    private static unsafe void BandedGemm<TA>(ConvWindows l, int groups, int mG, int k, TA* a, float[] windows, long[] rows,
        ProductTarget t) where TA : unmanaged
    {
        nint aAddr = (nint)a;
        var isa = CpuIsa.Current;   // workers run outside the caller's CpuIsa.Use scope
        var blocking = Sgemm.BlockingFor(isa);
        int width = l.Columns(t.Rows, t.Cols), workers = CpuParallel.Workers;
        int bands = (width + BandColumns - 1) / BandColumns;
        bands = (bands + workers - 1) / workers * workers;
        int bandWidth = ((width + bands - 1) / bands + blocking.NR - 1) / blocking.NR * blocking.NR;
        bands = (width + bandWidth - 1) / bandWidth;
        CpuParallel.For(bands, (i0, i1) =>
        {
            var pool = BufferPool<float>.Shared;
            float[] packA = pool.Rent(blocking.PackedALength), packB = pool.Rent(blocking.PackedBLength);
            float[] product = pool.Rent(t.Channels * bandWidth);
            try
            {
                fixed (float* pa = packA, pb = packB, pc = product, pp = windows)
                fixed (long* pr = rows)
                    for (int band = i0; band < i1; band++)
                    {
                        int c0 = band * bandWidth, c1 = Math.Min(width, c0 + bandWidth), columns = c1 - c0;
                        for (int g = 0; g < groups; g++)
                            Sgemm.Run(isa, mG, columns, k, new MatrixView<TA>((TA*)aAddr + (long)g * mG * k, k, false),
                                new MatrixView<float>(pp, 0, false, pr + (long)g * k).At(0, c0), pc + (long)g * mG * columns, columns, 1f, 0f, pa, pb);
                        CopyBand(l, t, pc, columns, c0, c1);
                    }
            }
            finally { pool.Return(packA); pool.Return(packB); pool.Return(product); }
        }, costPerItem: 2.0 * t.Channels * k * bandWidth);
    }

    /// <summary>The valid outputs among product columns [c0, c1) (row stride `columns`) to the target.</summary>
    private static unsafe void CopyBand(ConvWindows l, ProductTarget t, float* product, int columns, int c0, int c1)
    {
        for (int c = 0; c < t.Channels; c++)
        {
            float add = t.Bias == null ? 0f : t.Bias[t.BiasOffset + c];
            for (int row = c0 / l.Wq; row * l.Wq < c1; row++)
            {
                int img = row / l.Hq, r = row % l.Hq, rowStart = row * l.Wq;
                int lo = Math.Max(c0, rowStart), hi = Math.Min(c1, rowStart + t.Cols);
                if (r >= t.Rows || lo >= hi) continue;
                var src = new ReadOnlySpan<float>(product + (long)c * columns + (lo - c0), hi - lo);
                int start = t.Offset + (((t.Image0 + img) * t.Channels + c) * t.H + t.Row0 + r * t.RowStep) * t.W + t.Col0 + (lo - rowStart) * t.ColStep;
                if (t.ColStep == 1)
                {
                    var dst = t.Dst.AsSpan(start, hi - lo);
                    if (add == 0f) src.CopyTo(dst); else TensorPrimitives.Add(src, add, dst);
                }
                else
                    for (int j = 0; j < src.Length; j++) t.Dst[start + j * t.ColStep] = src[j] + add;
            }
        }
    }

    /// <summary>rows[(c, i, j)] = the window offset of channel c0 + c at tap tap(i, j), for c &lt; channels,
    /// i &lt; th, j &lt; tw (row-major).</summary>
    private static void TapRows(in ConvWindows l, int c0, int channels, int th, int tw, Span<long> rows, Func<int, int, (int, int)> tap)
    {
        for (int c = 0, r = 0; c < channels; c++)
            for (int i = 0; i < th; i++)
                for (int j = 0; j < tw; j++)
                {
                    var (kh, kw) = tap(i, j);
                    rows[r++] = l.TapOffset(c0 + c, kh, kw);
                }
    }

    /// <summary>C (m×n, row stride ldc) = A·B + beta·C for views the Buf-based Gemm cannot express, split over
    /// the cores by ranges of the longer side: each worker packs all of the operand along the other side, so the
    /// smaller of A and B is the one packed twice.</summary>
    private static unsafe void GemmSplit<TA>(int m, int n, int k, MatrixView<TA> a, MatrixView<float> b, float* c, int ldc, float beta = 0f)
        where TA : unmanaged
    {
        // Workers run outside the caller's CpuIsa.Use scope, so the ISA travels explicitly.
        var isa = CpuIsa.Current;
        var blocking = Sgemm.BlockingFor(isa);
        bool byColumns = n >= m;
        int unit = byColumns ? blocking.NR : Sgemm.MR, extent = byColumns ? n : m;
        int workers = Math.Max(1, Math.Min(CpuParallel.Workers, extent / unit));
        nint cAddr = (nint)c;
        CpuParallel.For(workers, (w0, w1) =>
        {
            float[] packA = BufferPool<float>.Shared.Rent(blocking.PackedALength), packB = BufferPool<float>.Shared.Rent(blocking.PackedBLength);
            try
            {
                fixed (float* pa = packA, pb = packB)
                    for (int wk = w0; wk < w1; wk++)
                    {
                        int lo = SplitPoint(extent, wk, workers, unit), hi = SplitPoint(extent, wk + 1, workers, unit);
                        if (lo >= hi) continue;
                        if (byColumns) Sgemm.Run(isa, m, hi - lo, k, a, b.At(0, lo), (float*)cAddr + lo, ldc, 1f, beta, pa, pb);
                        else Sgemm.Run(isa, hi - lo, n, k, a.At(lo, 0), b, (float*)cAddr + (long)lo * ldc, ldc, 1f, beta, pa, pb);
                    }
            }
            finally
            {
                BufferPool<float>.Shared.Return(packA);
                BufferPool<float>.Shared.Return(packB);
            }
        }, costPerItem: 2.0 * m * n * k / workers);
    }

    // ---- input gradient -------------------------------------------------------------------------------------

    /// <summary>Stride phase (a, b) of the input gradient: the inputs ih = u·StrideH + a − PadTop for u in
    /// [U0, U1) (likewise iw with v, b), which receive exactly the taps kh = a + t·StrideH, t &lt; Th (kw alike).
    /// Th = 0 when the stride exceeds the kernel: no tap reaches those inputs.</summary>
    private readonly record struct InputPhase(int A, int B, int Th, int Tw, int U0, int U1, int V0, int V1, long WeightOffset)
    {
        public int Rows => U1 - U0;
        public int Cols => V1 - V0;
        public int Taps => Th * Tw;
        // In the phase's stride-1 conv, output u reads dy rows u − Th + 1 .. u: window row 0 is dy row U0 − (Th − 1).
        public int RowShift => Th - 1 - U0;
        public int ColShift => Tw - 1 - V0;
    }

    private static List<InputPhase> InputPhases(in Conv2dDesc d)
    {
        var phases = new List<InputPhase>();
        long weightOffset = 0;
        for (int a = 0; a < d.StrideH; a++)
            for (int b = 0; b < d.StrideW; b++)
            {
                int th = (d.KH - a + d.StrideH - 1) / d.StrideH, tw = (d.KW - b + d.StrideW - 1) / d.StrideW;
                var (u0, u1) = ValidTaps(a, d.PadTop, d.StrideH, d.H, int.MaxValue);
                var (v0, v1) = ValidTaps(b, d.PadLeft, d.StrideW, d.W, int.MaxValue);
                if (th <= 0 || tw <= 0 || u0 == u1 || v0 == v1) continue;
                phases.Add(new InputPhase(a, b, th, tw, u0, u1, v0, v1, weightOffset));
                weightOffset += (long)d.Cin * d.CoutPerGroup * th * tw;
            }
        return phases;
    }

    private unsafe void ImplicitBackwardInput(in Conv2dDesc d, Buf dy, Buf w, Buf dx)
    {
        var phases = InputPhases(d);
        if (d.StrideH > d.KH || d.StrideW > d.KW) Fill(dx, (long)d.N * d.Cin * d.H * d.W, 0f);
        if (phases.Count == 0) return;
        // One layout of dy serves every phase: shifted by the largest RowShift/ColShift, each phase offsets its taps.
        int padTop = phases.Max(p => p.RowShift), padLeft = phases.Max(p => p.ColShift);
        int hq = phases.Max(p => p.Rows + p.Th - 1 + padTop - p.RowShift), wq = phases.Max(p => p.Cols + p.Tw - 1 + padLeft - p.ColShift);
        if (d.StrideH == 1 && d.StrideW == 1 && padTop >= 0 && padLeft >= 0)
        {
            hq = SharedPadSpan(d.OH, padTop, d.H, d.KH);
            wq = SharedPadSpan(d.OW, padLeft, d.W, d.KW);
        }
        var full = new ConvWindows(d.Cout, 1, 1, 1, padTop, padLeft, hq, wq);
        int cinG = d.CinPerGroup, coutG = d.CoutPerGroup;
        // The AVX2 tile (ConvDirect.cs) when every phase has a whole tile of columns in one image, else in bands (see
        // ImplicitForward) when every phase has enough columns.
        long phaseWeights = (long)d.Cin * coutG;
        bool direct = phases.All(p => UsesDirectTile(cinG, full.Columns(p.Rows, p.Cols), phaseWeights * p.Taps));
        bool banded = !direct && phases.All(p => full.Columns(p.Rows, p.Cols) >= 2 * CpuParallel.Workers * BandColumns);
        int perPass = ImagesPerPass(full.Floats + (banded || direct ? 0 : (long)d.Cin * full.Plane), d.N);
        using var weights = Scratch((long)d.Cin * coutG * d.KH * d.KW);
        FlipWeights(d, phases, w, weights.Floats);
        using var windows = Scratch(direct ? perPass * full.Floats : (full with { Images = perPass }).Floats);
        using var product = banded || direct ? null : Scratch((long)d.Cin * perPass * full.Plane);
        var rows = BufferPool<long>.Shared.Rent(d.Groups * coutG * d.KH * d.KW);
        try
        {
            float[] DX = Arr(dx);
            for (int n0 = 0; n0 < d.N; n0 += perPass)
            {
                var l = full with { Images = Math.Min(perPass, d.N - n0) };
                if (direct) full.Fill(dy, n0, l.Images, d.OH, d.OW, windows.Floats);   // a layout per image
                else l.Fill(dy, n0, d.OH, d.OW, windows.Floats);
                foreach (var ph in phases)
                {
                    int width = l.Columns(ph.Rows, ph.Cols), k = coutG * ph.Taps;
                    int dr = padTop - ph.RowShift, dc = padLeft - ph.ColShift;
                    for (int g = 0; g < d.Groups; g++)
                        TapRows(direct ? full : l, g * coutG, coutG, ph.Th, ph.Tw, rows.AsSpan(g * k), (i, j) => (i + dr, j + dc));
                    var target = new ProductTarget(DX, Off(dx), n0, d.Cin, d.H, d.W, ph.Rows, ph.Cols,
                        ph.U0 * d.StrideH + ph.A - d.PadTop, d.StrideH, ph.V0 * d.StrideW + ph.B - d.PadLeft, d.StrideW, null, 0);
                    if (banded || direct)
                    {
                        fixed (float* pw = weights.Floats)
                            if (direct) DirectProduct(full, l.Images, d.Groups, cinG, k, pw + ph.WeightOffset, windows.Floats, rows, target);
                            else BandedGemm(l, d.Groups, cinG, k, pw + ph.WeightOffset, windows.Floats, rows, target);
                        continue;
                    }
                    float[] P = product!.Floats;
                    for (int g = 0; g < d.Groups; g++)
                        fixed (float* pw = weights.Floats, pp = windows.Floats, pc = P)
                        fixed (long* pr = &rows[g * k])
                            GemmSplit(cinG, width, k, new MatrixView<float>(pw + ph.WeightOffset + (long)g * cinG * k, k, false),
                                new MatrixView<float>(pp, 0, false, pr), pc + (long)g * cinG * width, width);
                    l.Scatter(P, width, d.Cin, ph.Rows, ph.Cols, DX, Off(dx), n0, d.H, d.W,
                        target.Row0, d.StrideH, target.Col0, d.StrideW);
                }
            }
        }
        finally { BufferPool<long>.Shared.Return(rows); }
    }

    /// <summary>Per phase and group, the GEMM operand [ci][co][i][j] = W[g·CoutG + co, ci, a + (Th−1−i)·s, b + (Tw−1−j)·s]
    /// (transposed, and flipped so that the phase's conv reads dy forwards); 16-bit weights are widened on the way.</summary>
    private static void FlipWeights(Conv2dDesc d, List<InputPhase> phases, Buf w, float[] dst)
    {
        var weightRows = new SourceRows((CpuStorage)w.Storage, Off(w), CpuIsa.Current);
        // Blocks of input channels: each reads W's rows in order and writes one stream per channel of the block
        // (a plain channel-by-channel loop would read W at a stride of a page per element).
        const int block = 16;
        int cinG = d.CinPerGroup, coutG = d.CoutPerGroup, taps = d.KH * d.KW, blocks = (d.Cin + block - 1) / block;
        CpuParallel.For(phases.Count * blocks, (p0, p1) =>
        {
            Span<int> tapAt = stackalloc int[taps];
            Span<float> src = stackalloc float[taps];
            for (int p = p0; p < p1; p++)
            {
                var ph = phases[p / blocks];
                for (int i = 0, q = 0; i < ph.Th; i++)
                    for (int j = 0; j < ph.Tw; j++)
                        tapAt[q++] = (ph.A + (ph.Th - 1 - i) * d.StrideH) * d.KW + ph.B + (ph.Tw - 1 - j) * d.StrideW;
                var phaseTaps = tapAt[..ph.Taps];
                int c0 = p % blocks * block, c1 = Math.Min(d.Cin, c0 + block);
                for (int co = 0; co < coutG; co++)
                    for (int c = c0; c < c1; c++)
                    {
                        weightRows.Gather(((c / cinG * coutG + co) * cinG + c % cinG) * taps, 1, src);
                        var to = dst.AsSpan((int)(ph.WeightOffset + ((long)c * coutG + co) * ph.Taps), ph.Taps);
                        for (int q = 0; q < to.Length; q++) to[q] = src[phaseTaps[q]];
                    }
            }
        }, costPerItem: (double)block * coutG * taps);
    }

    // ---- weight gradient ------------------------------------------------------------------------------------

    private unsafe void ImplicitBackwardWeight(in Conv2dDesc d, Buf x, Buf dy, Buf dw)
    {
        int cinG = d.CinPerGroup, coutG = d.CoutPerGroup, k = cinG * d.KH * d.KW;
        var full = InputWindows(d, 1);
        // dY in the windows' column numbering (stride 1, no padding: zeros past OH and OW, so the wrapped columns
        // of the windows add nothing).
        var gradFull = new ConvWindows(d.Cout, 1, 1, 1, 0, 0, full.Hq, full.Wq);
        int perPass = ImagesPerPass(full.Floats + gradFull.Floats, d.N);
        // With a register tile's width of output channels or more, dWᵀ_g (taps × CoutG) = patches · dY_gᵀ: the
        // patches are read in place through the row table and only dY is packed (a transpose shared by every tap).
        // Fewer channels would leave most of each tile's columns empty; many (measured: 512, AVX-512 −18%) make a
        // block of taps too large to stay in L2 across the panels of dY. Both: dW_g = dY_g · patchesᵀ, patches packed.
        bool transposed = coutG >= Sgemm.NR && coutG <= Sgemm.InPlaceConvRows;
        using var windows = Scratch((full with { Images = perPass }).Floats);
        using var grads = Scratch((gradFull with { Images = perPass }).Floats);
        using var gradT = transposed ? Scratch((long)d.Groups * k * coutG) : null;
        var rows = BufferPool<long>.Shared.Rent(k);
        try
        {
            for (int n0 = 0; n0 < d.N; n0 += perPass)
            {
                var l = full with { Images = Math.Min(perPass, d.N - n0) };
                var gl = gradFull with { Images = l.Images };
                l.Fill(x, n0, d.H, d.W, windows.Floats);
                gl.Fill(dy, n0, d.OH, d.OW, grads.Floats);
                int columns = l.Columns(d.OH, d.OW);
                float beta = n0 == 0 ? 0f : 1f;
                for (int g = 0; g < d.Groups; g++)
                {
                    // The patches' rows (taps) are the forward's windows.
                    TapRows(l, g * cinG, cinG, d.KH, d.KW, rows, (kh, kw) => (kh, kw));
                    fixed (float* pg = grads.Floats, pp = windows.Floats, pw = Arr(dw), pt = gradT?.Floats)
                    fixed (long* pr = rows)
                    {
                        var dyG = pg + (long)g * coutG * gl.ChannelStride;
                        if (coutG <= FewOutputs)
                            FewOutputsWeightGradient(coutG, columns, k, dyG, gl.ChannelStride, pp, pr, pw + Off(dw) + (long)g * coutG * k, beta);
                        else if (transposed)
                            GemmSplit(k, coutG, columns, new MatrixView<float>(pp, 0, false, pr), new MatrixView<float>(dyG, gl.ChannelStride, true),
                                pt + (long)g * k * coutG, coutG, beta);
                        else
                            GemmSplit(coutG, k, columns, new MatrixView<float>(dyG, gl.ChannelStride, false), new MatrixView<float>(pp, 0, true, pr),
                                pw + Off(dw) + (long)g * coutG * k, k, beta);
                    }
                }
            }
            if (transposed)
            {
                float[] T = gradT!.Floats, DW = Arr(dw);
                for (int g = 0; g < d.Groups; g++)
                    for (int co = 0; co < coutG; co++)
                        for (int q = 0; q < k; q++)
                            DW[Off(dw) + ((long)g * coutG + co) * k + q] = T[((long)g * k + q) * coutG + co];
            }
        }
        finally { BufferPool<long>.Shared.Return(rows); }
    }
}
