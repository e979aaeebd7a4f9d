using MaskBit.Autograd;
using MaskBit.Kernels;
using StbImageSharp;
using StbImageWriteSharp;
using ReadComponents = StbImageSharp.ColorComponents;
using WriteComponents = StbImageWriteSharp.ColorComponents;

namespace MaskBit.Models.Data;

/// <summary>
/// PNG / JPEG reading and writing (managed stb ports) and conversion between 8-bit HWC images and float
/// tensors (C,H,W) in [0,1], the convention of torchvision's ToTensor / save_image.
/// </summary>
public static class ImageIO
{
    public const int DefaultJpegQuality = 95;

    // ---- decoding -----------------------------------------------------------------------------------------

    /// <summary>Reads an image file as <paramref name="channels"/> channels: 3 converts gray/RGBA to RGB (alpha
    /// dropped, as PIL's convert("RGB")), 1 converts colour to luma (e.g. Fashion-MNIST), 4 keeps alpha.</summary>
    /// <exception cref="InvalidDataException">The file cannot be read or is not a decodable image; the message
    /// names the file and the reason.</exception>
    public static HostImage Read(string path, int channels = 3)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            string reason = e switch { FileNotFoundException or DirectoryNotFoundException => "no such file", UnauthorizedAccessException => "permission denied", _ => "the file cannot be read" };
            throw new InvalidDataException($"{path}: cannot read image file: {reason}", e);
        }
        return Decode(bytes, path, channels);
    }

    /// <summary>Decodes encoded image bytes (PNG, JPEG; stb also takes BMP, GIF, TGA). <paramref name="name"/>
    /// identifies the source (file or sample key) in errors.</summary>
    public static HostImage Decode(byte[] encoded, string name, int channels = 3)
    {
        var wanted = channels switch
        {
            1 => ReadComponents.Grey,
            3 => ReadComponents.RedGreenBlue,
            4 => ReadComponents.RedGreenBlueAlpha,
            _ => throw new ArgumentException($"images are decoded to 1, 3 or 4 channels, not {channels}"),
        };
        if (encoded.Length == 0) throw new InvalidDataException($"{name}: not an image: the data is empty");
        if (JpegHeaderProblem(encoded) is { } problem)
            throw new InvalidDataException($"{name}: cannot decode image ({encoded.Length} bytes): {problem}");
        ImageResult result;
        try { result = ImageResult.FromMemory(encoded, wanted); }
        catch (Exception e)
        {
            // The decoder is a pure function of the bytes, so whatever it throws (its own InvalidOperationException
            // or an index error deep in a malformed stream) means the data is bad. stb's reasons are terse
            // ("unknown image type", "bad IDAT"), and empty for some truncated data.
            // Its messages come from a fixed-size C buffer: the NULs that pad them are cut off.
            var message = new string(e.Message.Where(c => !char.IsControl(c)).ToArray()).Trim();
            var reason = e is InvalidOperationException && message.Length > 0 ? message : "corrupt or truncated image data";
            throw new InvalidDataException($"{name}: cannot decode image ({encoded.Length} bytes): {reason}", e);
        }
        if (result.Data == null || result.Width <= 0 || result.Height <= 0)
            throw new InvalidDataException($"{name}: cannot decode image ({encoded.Length} bytes): decoder returned no pixels");
        return new HostImage(result.Height, result.Width, channels, result.Data);
    }

    /// <summary>For JPEG data, why its marker segments up to the start of scan are incomplete (null when they
    /// are whole, or the data is not JPEG). StbImageSharp loops forever on some JPEGs cut inside a header segment
    /// (an 8-byte SOI + APP0 prefix, found by the fuzz suite), so those never reach it.</summary>
    private static string? JpegHeaderProblem(ReadOnlySpan<byte> data)
    {
        if (data.Length < 2 || data[0] != 0xFF || data[1] != 0xD8) return null;
        int pos = 2;
        while (true)
        {
            while (pos < data.Length && data[pos] == 0xFF && pos + 1 < data.Length && data[pos + 1] == 0xFF) pos++;   // fill bytes
            if (pos + 1 >= data.Length) return "JPEG data ends before its image data (no start of scan)";
            if (data[pos] != 0xFF) return $"JPEG marker expected at byte {pos}";
            byte marker = data[pos + 1];
            if (marker is >= 0xD0 and <= 0xD7 or 0x01) { pos += 2; continue; }   // markers without a length
            if (marker == 0xD9) return "JPEG data ends (EOI) before any image data";
            if (pos + 4 > data.Length) return $"JPEG segment 0x{marker:X2} at byte {pos} is cut off";
            int length = (data[pos + 2] << 8) | data[pos + 3];
            if (length < 2 || pos + 2 + length > data.Length) return $"JPEG segment 0x{marker:X2} at byte {pos} is cut off or has a bad length ({length})";
            if (marker == 0xDA)
                return pos + 2 + length < data.Length ? null : "JPEG data ends right after its scan header";
            pos += 2 + length;
        }
    }

    // ---- encoding -----------------------------------------------------------------------------------------

    /// <summary>Writes PNG or JPEG, chosen by the extension (.png, .jpg, .jpeg).</summary>
    public static void Write(string path, HostImage image, int jpegQuality = DefaultJpegQuality)
    {
        var ext = Path.GetExtension(path).ToLowerInvariant();
        byte[] bytes = ext switch
        {
            ".png" => EncodePng(image),
            ".jpg" or ".jpeg" => EncodeJpeg(image, jpegQuality),
            _ => throw new ArgumentException($"{path}: cannot tell the image format from extension '{ext}' (use .png, .jpg or .jpeg)"),
        };
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        File.WriteAllBytes(path, bytes);
    }

    public static byte[] EncodePng(HostImage image)
    {
        using var stream = new MemoryStream();
        new ImageWriter().WritePng(image.Pixels, image.Width, image.Height, WriterComponents(image.Channels), stream);
        return stream.ToArray();
    }

    /// <summary>Baseline JPEG; RGBA is written without its alpha (JPEG has none).</summary>
    public static byte[] EncodeJpeg(HostImage image, int quality = DefaultJpegQuality)
    {
        if (quality is < 1 or > 100) throw new ArgumentOutOfRangeException(nameof(quality), quality, "JPEG quality is 1..100");
        using var stream = new MemoryStream();
        new ImageWriter().WriteJpg(image.Pixels, image.Width, image.Height, WriterComponents(image.Channels), stream, quality);
        return stream.ToArray();
    }

    private static WriteComponents WriterComponents(int channels) => channels switch
    {
        1 => WriteComponents.Grey,
        3 => WriteComponents.RedGreenBlue,
        _ => WriteComponents.RedGreenBlueAlpha,
    };

    // ---- tensors ------------------------------------------------------------------------------------------

    /// <summary>An image as a float32 tensor (C,H,W) with values byte/255 (torchvision ToTensor).</summary>
    public static Tensor ToTensor(HostImage image, IBackend? device = null)
    {
        var chw = new float[image.Pixels.Length];
        WriteChw(image, chw);
        return Tensor.FromArray(chw, new[] { image.Channels, image.Height, image.Width }, device);
    }

    /// <summary>Writes byte/255 in channel-major (C,H,W) order into <paramref name="destination"/>, which holds
    /// at least H·W·C floats: the loader fills batch buffers with this directly.</summary>
    public static void WriteChw(HostImage image, Span<float> destination)
    {
        int plane = image.Height * image.Width, c = image.Channels;
        if (destination.Length < plane * c) throw new ArgumentException($"destination holds {destination.Length} floats, image needs {plane * c}");
        var src = image.Pixels;
        const float scale = 1f / 255f;
        for (int ch = 0; ch < c; ch++)
        {
            var dst = destination.Slice(ch * plane, plane);
            for (int p = 0, s = ch; p < plane; p++, s += c) dst[p] = src[s] * scale;
        }
    }

    /// <summary>A (C,H,W) tensor with C = 1, 3 or 4 and values in [0,1] back to 8 bits: clamp, ·255, round half
    /// up (torchvision save_image).</summary>
    public static HostImage FromTensor(Tensor chw)
    {
        if (chw.Rank != 3 || chw.Shape[0] is not (1 or 3 or 4))
            throw new ArgumentException($"expected an image tensor (C,H,W) with C = 1, 3 or 4, got {chw}");
        return FromChw(chw.ToArray(), chw.Shape[0], chw.Shape[1], chw.Shape[2]);
    }

    internal static HostImage FromChw(ReadOnlySpan<float> chw, int channels, int height, int width)
    {
        var image = new HostImage(height, width, channels);
        int plane = height * width;
        var dst = image.Pixels;
        for (int ch = 0; ch < channels; ch++)
        {
            var src = chw.Slice(ch * plane, plane);
            for (int p = 0, d = ch; p < plane; p++, d += channels)
                dst[d] = (byte)Math.Clamp(src[p] * 255f + 0.5f, 0f, 255f);
        }
        return image;
    }

    // ---- grids --------------------------------------------------------------------------------------------

    /// <summary>Tiles images (all of one size and channel count) into one image, <paramref name="nrow"/> per
    /// row, with <paramref name="padding"/> pixels of <paramref name="padValue"/> around and between them —
    /// the layout of torchvision's make_grid, for reconstruction and sample grids.</summary>
    public static HostImage MakeGrid(IReadOnlyList<HostImage> images, int nrow = 8, int padding = 2, byte padValue = 0)
    {
        if (images.Count == 0) throw new ArgumentException("a grid needs at least one image");
        if (nrow <= 0) throw new ArgumentOutOfRangeException(nameof(nrow), nrow, "nrow must be positive");
        if (padding < 0) throw new ArgumentOutOfRangeException(nameof(padding), padding, "padding must not be negative");
        var first = images[0];
        int h = first.Height, w = first.Width, c = first.Channels;
        for (int i = 1; i < images.Count; i++)
            if (images[i].Height != h || images[i].Width != w || images[i].Channels != c)
                throw new ArgumentException($"grid image {i} is {images[i]}, image 0 is {first}: all must match");

        int cols = Math.Min(nrow, images.Count), rows = (images.Count + cols - 1) / cols;
        var grid = new HostImage(rows * (h + padding) + padding, cols * (w + padding) + padding, c);
        Array.Fill(grid.Pixels, padValue);
        for (int i = 0; i < images.Count; i++)
        {
            int top = (i / cols) * (h + padding) + padding, left = (i % cols) * (w + padding) + padding;
            for (int y = 0; y < h; y++)
                images[i].Row(y).CopyTo(grid.Row(top + y).Slice(left * c, w * c));
        }
        return grid;
    }

    /// <summary>Grid of a batch tensor (N,C,H,W) or a single image (C,H,W) with values in [0,1].</summary>
    public static HostImage MakeGrid(Tensor images, int nrow = 8, int padding = 2, float padValue = 0f)
    {
        if (images.Rank == 3) images = images.Reshape(1, images.Shape[0], images.Shape[1], images.Shape[2]);
        if (images.Rank != 4 || images.Shape[1] is not (1 or 3 or 4))
            throw new ArgumentException($"expected images (N,C,H,W) with C = 1, 3 or 4, got {images}");
        int n = images.Shape[0], c = images.Shape[1], h = images.Shape[2], w = images.Shape[3], size = c * h * w;
        var all = images.ToArray();
        var tiles = new HostImage[n];
        for (int i = 0; i < n; i++) tiles[i] = FromChw(all.AsSpan(i * size, size), c, h, w);
        return MakeGrid(tiles, nrow, padding, (byte)Math.Clamp(padValue * 255f + 0.5f, 0f, 255f));
    }

    public static void SaveGrid(string path, Tensor images, int nrow = 8, int padding = 2, float padValue = 0f)
        => Write(path, MakeGrid(images, nrow, padding, padValue));
}
