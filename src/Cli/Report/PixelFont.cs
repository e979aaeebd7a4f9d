using System.Globalization;
using MaskBit.Models.Data;

namespace MaskBit.Cli.Report;

/// <summary>
/// The classic 5×7 bitmap font (letters, digits and the punctuation plots need; descenders use an eighth row)
/// for drawing labels into a <see cref="HostImage"/> without a font library. Each glyph is 5 columns, bit 0 the
/// top row; characters without a glyph draw as a blank.
/// </summary>
internal static class PixelFont
{
    public const int GlyphWidth = 5, GlyphHeight = 8, Advance = GlyphWidth + 1;
    /// <summary>Height of capitals and digits (the rows above the descender row).</summary>
    public const int CapHeight = 7;

    // char:five column bytes in hex (bit 0 = top row, bit 7 = descender row).
    private const string Table =
        "0:3E5149453E 1:00427F4000 2:4261514946 3:2141454B31 4:1814127F10 5:2745454539 6:3C4A494930 7:0171090503 " +
        "8:3649494936 9:064949291E a:2054545478 b:7F48444438 c:3844444420 d:384444487F e:3854545418 f:087E090102 " +
        "g:18A4A4A47C h:7F08040478 i:00447D4000 j:4080847D00 k:7F10284400 l:00417F4000 m:7C04180478 n:7C08040478 " +
        "o:3844444438 p:FC24242418 q:18242418FC r:7C08040408 s:4854545420 t:043F444020 u:3C4040207C v:1C2040201C " +
        "w:3C4030403C x:4428102844 y:1CA0A0A07C z:4464544C44 A:7E1111117E B:7F49494936 C:3E41414122 D:7F4141221C " +
        "E:7F49494941 F:7F09090901 G:3E4149497A H:7F0808087F I:00417F4100 J:2040413F01 K:7F08142241 L:7F40404040 " +
        "M:7F020C027F N:7F0408107F O:3E4141413E P:7F09090906 Q:3E4151215E R:7F09192946 S:4649494931 T:01017F0101 " +
        "U:3F4040403F V:1F2040201F W:3F4038403F X:6314081463 Y:0708700807 Z:6151494543 .:0060600000 ,:0050300000 " +
        "-:0808080808 +:08083E0808 _:4040404040 /:2010080402 (:001C224100 ):0041221C00 =:1414141414 ::0036360000 %:2313086462";

    private static readonly Dictionary<char, byte[]> Glyphs = Table.Split(' ').ToDictionary(
        entry => entry[0],
        entry => Enumerable.Range(0, GlyphWidth).Select(i => byte.Parse(entry.AsSpan(2 + 2 * i, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray());

    /// <summary>Width in pixels of <paramref name="text"/> at <paramref name="scale"/> (no trailing gap).</summary>
    public static int Measure(string text, int scale = 1) => text.Length == 0 ? 0 : (text.Length * Advance - 1) * scale;

    /// <summary>Draws <paramref name="text"/> with its top-left corner at (x, y); pixels outside the image are skipped.</summary>
    public static void Draw(HostImage image, string text, int x, int y, ReadOnlySpan<byte> color, int scale = 1)
    {
        foreach (char ch in text)
        {
            if (Glyphs.TryGetValue(ch, out var columns))
                for (int col = 0; col < GlyphWidth; col++)
                    for (int row = 0; row < GlyphHeight; row++)
                        if ((columns[col] >> row & 1) != 0)
                            Canvas.FillRect(image, x + col * scale, y + row * scale, scale, scale, color);
            x += Advance * scale;
        }
    }
}

/// <summary>Pixel primitives on an RGB <see cref="HostImage"/>, clipped to the image.</summary>
internal static class Canvas
{
    public static void FillRect(HostImage image, int x, int y, int width, int height, ReadOnlySpan<byte> color)
    {
        int x0 = Math.Max(0, x), y0 = Math.Max(0, y), x1 = Math.Min(image.Width, x + width), y1 = Math.Min(image.Height, y + height);
        for (int py = y0; py < y1; py++)
        {
            var row = image.Row(py);
            for (int px = x0; px < x1; px++) color.CopyTo(row.Slice(px * image.Channels, image.Channels));
        }
    }

    /// <summary>A line of the given thickness (a square pen stepped along the longer axis).</summary>
    public static void Line(HostImage image, double x0, double y0, double x1, double y1, ReadOnlySpan<byte> color, int thickness = 1)
    {
        int steps = (int)Math.Ceiling(Math.Max(Math.Abs(x1 - x0), Math.Abs(y1 - y0)));
        int half = thickness / 2;
        for (int i = 0; i <= steps; i++)
        {
            double t = steps == 0 ? 0 : (double)i / steps;
            int px = (int)Math.Round(x0 + (x1 - x0) * t), py = (int)Math.Round(y0 + (y1 - y0) * t);
            FillRect(image, px - half, py - half, thickness, thickness, color);
        }
    }
}
