namespace MaskBit.Models.Data;

/// <summary>
/// A decoded image on the host: 8-bit samples in height × width × channels (HWC, row-major) order, the layout
/// that decoders produce and that the data-loader ops (<see cref="Preprocess"/>) work on. Channels is 1 (gray),
/// 3 (RGB) or 4 (RGBA).
/// </summary>
public sealed class HostImage
{
    public int Height { get; }
    public int Width { get; }
    public int Channels { get; }
    public byte[] Pixels { get; }

    public HostImage(int height, int width, int channels, byte[]? pixels = null)
    {
        if (height <= 0 || width <= 0) throw new ArgumentException($"image size {height}x{width} must be positive");
        if (channels is not (1 or 3 or 4)) throw new ArgumentException($"an image has 1, 3 or 4 channels, not {channels}");
        long length = (long)height * width * channels;
        if (pixels != null && pixels.Length != length)
            throw new ArgumentException($"{pixels.Length} bytes do not fill a {height}x{width}x{channels} image");
        Height = height; Width = width; Channels = channels;
        Pixels = pixels ?? new byte[length];
    }

    public int RowLength => Width * Channels;
    public Span<byte> Row(int y) => Pixels.AsSpan(y * RowLength, RowLength);
    public byte this[int y, int x, int c] => Pixels[(y * Width + x) * Channels + c];

    public override string ToString() => $"HostImage {Height}x{Width}x{Channels}";
}
