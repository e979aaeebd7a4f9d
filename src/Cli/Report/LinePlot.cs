using System.Globalization;
using MaskBit.Models.Data;

namespace MaskBit.Cli.Report;

/// <summary>One curve: (x, y) points in x order; non-finite values break the line.</summary>
public sealed record PlotSeries(string Name, IReadOnlyList<(double X, double Y)> Points);

/// <summary>One chart: a title, an x-axis label and its curves (each with its own colour and a legend entry).</summary>
public sealed record PlotPanel(string Title, string XLabel, IReadOnlyList<PlotSeries> Series);

/// <summary>
/// A small managed line-plot rasterizer: panels side by side in one RGB image, each with axes, "nice" ticks
/// (1, 2, 5 × 10^k) with labels and grid lines, one colour per curve and a legend — enough for loss curves
/// without a plotting library. Write the result with <see cref="ImageIO.Write"/>.
/// </summary>
public static class LinePlot
{
    private const int MarginLeft = 62, MarginRight = 14, MarginTop = 30, MarginBottom = 36, TickLength = 4;

    private static readonly byte[] Background = { 255, 255, 255 }, Ink = { 40, 40, 40 }, Grid = { 225, 225, 225 }, Muted = { 90, 90, 90 };

    /// <summary>Matplotlib's first colours, so the curves look familiar.</summary>
    private static readonly byte[][] Palette =
    {
        new byte[] { 31, 119, 180 }, new byte[] { 255, 127, 14 }, new byte[] { 44, 160, 44 },
        new byte[] { 214, 39, 40 }, new byte[] { 148, 103, 189 }, new byte[] { 140, 86, 75 },
    };

    public static HostImage Render(IReadOnlyList<PlotPanel> panels, int panelWidth = 480, int panelHeight = 320)
    {
        if (panels.Count == 0) throw new ArgumentException("a plot needs at least one panel", nameof(panels));
        if (panelWidth < MarginLeft + MarginRight + 40 || panelHeight < MarginTop + MarginBottom + 40)
            throw new ArgumentOutOfRangeException(nameof(panelWidth), $"panels of {panelWidth}×{panelHeight} pixels leave no room for the plot area");
        var image = new HostImage(panelHeight, panelWidth * panels.Count, 3);
        Canvas.FillRect(image, 0, 0, image.Width, image.Height, Background);
        for (int i = 0; i < panels.Count; i++) DrawPanel(image, panels[i], i * panelWidth, panelWidth, panelHeight);
        return image;
    }

    private static void DrawPanel(HostImage image, PlotPanel panel, int originX, int width, int height)
    {
        int left = originX + MarginLeft, right = originX + width - MarginRight, top = MarginTop, bottom = height - MarginBottom;
        PixelFont.Draw(image, panel.Title, originX + (width - PixelFont.Measure(panel.Title, 2)) / 2, 8, Ink, scale: 2);
        PixelFont.Draw(image, panel.XLabel, (left + right - PixelFont.Measure(panel.XLabel)) / 2, height - 12, Muted);

        var finite = panel.Series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
        if (finite.Count == 0)
        {
            Frame(image, left, top, right, bottom);
            const string empty = "no data yet";
            PixelFont.Draw(image, empty, (left + right - PixelFont.Measure(empty)) / 2, (top + bottom) / 2, Muted);
            return;
        }
        var x = Axis.Fit(finite.Min(p => p.X), finite.Max(p => p.X));
        var y = Axis.Fit(finite.Min(p => p.Y), finite.Max(p => p.Y));
        double Px(double v) => left + (v - x.Min) / (x.Max - x.Min) * (right - left);
        double Py(double v) => bottom - (v - y.Min) / (y.Max - y.Min) * (bottom - top);

        foreach (var tick in y.Ticks())
        {
            int py = (int)Math.Round(Py(tick));
            Canvas.FillRect(image, left + 1, py, right - left - 1, 1, Grid);
            Canvas.FillRect(image, left - TickLength, py, TickLength, 1, Ink);
            string label = y.Format(tick);
            PixelFont.Draw(image, label, left - TickLength - 3 - PixelFont.Measure(label), py - PixelFont.CapHeight / 2, Ink);
        }
        foreach (var tick in x.Ticks())
        {
            int px = (int)Math.Round(Px(tick));
            Canvas.FillRect(image, px, top + 1, 1, bottom - top - 1, Grid);
            Canvas.FillRect(image, px, bottom + 1, 1, TickLength, Ink);
            string label = x.Format(tick);
            PixelFont.Draw(image, label, px - PixelFont.Measure(label) / 2, bottom + TickLength + 4, Ink);
        }
        Frame(image, left, top, right, bottom);

        for (int s = 0; s < panel.Series.Count; s++)
        {
            var color = Palette[s % Palette.Length];
            (double X, double Y)? previous = null;
            foreach (var p in panel.Series[s].Points)
            {
                if (!double.IsFinite(p.X) || !double.IsFinite(p.Y)) { previous = null; continue; }
                var from = previous ?? p;
                Canvas.Line(image, Px(from.X), Py(from.Y), Px(p.X), Py(p.Y), color, thickness: 2);
                previous = p;
            }
        }
        Legend(image, panel.Series, right, top);
    }

    private static void Frame(HostImage image, int left, int top, int right, int bottom)
    {
        Canvas.FillRect(image, left, top, right - left + 1, 1, Ink);
        Canvas.FillRect(image, left, bottom, right - left + 1, 1, Ink);
        Canvas.FillRect(image, left, top, 1, bottom - top + 1, Ink);
        Canvas.FillRect(image, right, top, 1, bottom - top + 1, Ink);
    }

    /// <summary>A boxed legend in the top-right corner of the plot area: a colour swatch and the name per curve.</summary>
    private static void Legend(HostImage image, IReadOnlyList<PlotSeries> series, int right, int top)
    {
        if (series.Count == 0) return;
        const int swatch = 16, gap = 5, rowHeight = 12, padding = 6;
        int width = padding * 2 + swatch + gap + series.Max(s => PixelFont.Measure(s.Name));
        int height = padding * 2 + series.Count * rowHeight - (rowHeight - PixelFont.GlyphHeight);
        int boxLeft = right - 6 - width, boxTop = top + 6;
        Canvas.FillRect(image, boxLeft, boxTop, width, height, Background);
        Frame(image, boxLeft, boxTop, boxLeft + width, boxTop + height);
        for (int s = 0; s < series.Count; s++)
        {
            int rowTop = boxTop + padding + s * rowHeight;
            Canvas.FillRect(image, boxLeft + padding, rowTop + 2, swatch, 3, Palette[s % Palette.Length]);
            PixelFont.Draw(image, series[s].Name, boxLeft + padding + swatch + gap, rowTop, Ink);
        }
    }

    /// <summary>An axis range widened to whole multiples of a 1-2-5 tick step (about five ticks).</summary>
    private readonly record struct Axis(double Min, double Max, double Step)
    {
        public static Axis Fit(double min, double max)
        {
            if (max - min < 1e-12 * Math.Max(1, Math.Abs(max))) { min -= 0.5 * Math.Max(1e-3, Math.Abs(min)); max += 0.5 * Math.Max(1e-3, Math.Abs(max)); }
            double raw = (max - min) / 5, magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
            double step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(f => f * magnitude).First(s => s >= raw * 0.999);
            return new Axis(Math.Floor(min / step) * step, Math.Ceiling(max / step) * step, step);
        }

        public IEnumerable<double> Ticks()
        {
            long count = (long)Math.Round((Max - Min) / Step);
            for (long i = 0; i <= count; i++) yield return Min + i * Step;
        }

        /// <summary>Fixed-point with as many decimals as the step needs; exponent form for very large or small values.</summary>
        public string Format(double value)
        {
            if (Math.Abs(value) < Step * 1e-6) return "0";
            double largest = Math.Max(Math.Abs(Min), Math.Abs(Max));
            if (largest >= 1e6 || Step < 1e-4) return value.ToString("0.##e+0", CultureInfo.InvariantCulture);
            int decimals = Math.Max(0, (int)-Math.Floor(Math.Log10(Step) + 1e-9));
            return value.ToString("F" + decimals, CultureInfo.InvariantCulture);
        }
    }
}
