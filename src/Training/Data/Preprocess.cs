using System.Runtime.InteropServices;
using CommunityToolkit.HighPerformance;
using CommunityToolkit.HighPerformance.Buffers;

namespace MaskBit.Models.Data;

/// <summary>Resampling filter of <see cref="Preprocess.Resize(HostImage, int, int, Interpolation)"/> (the
/// reference's `interpolation` setting: bilinear, bicubic or nearest).</summary>
public enum Interpolation { Bilinear, Bicubic, Nearest }

/// <summary>An axis-aligned pixel rectangle: rows [Top, Top+Height), columns [Left, Left+Width).</summary>
public readonly record struct CropBox(int Top, int Left, int Height, int Width);

/// <summary>
/// Data-loader image ops on host HWC buffers (uint8 as decoded, or float), modelled on what torchvision does to
/// PIL images: resampling is separable and antialiased when downscaling (the filter support widens with the
/// scale factor, as in PIL's resize), crops are integer rectangles, and all randomness comes from the
/// <see cref="Random"/> passed in, so a seeded generator reproduces a sample exactly.
/// </summary>
public static class Preprocess
{
    // ---- resizing ----------------------------------------------------------------------------------------

    public static Interpolation ParseInterpolation(string name) => name.ToLowerInvariant() switch
    {
        "bilinear" => Interpolation.Bilinear,
        "bicubic" => Interpolation.Bicubic,
        "nearest" => Interpolation.Nearest,
        _ => throw new ArgumentException($"interpolation must be bilinear, bicubic or nearest, not '{name}'"),
    };

    /// <summary>Output size when the shorter side is scaled to <paramref name="shorterSide"/> (torchvision
    /// Resize(int): the longer side is scaled by the same factor, truncated).</summary>
    public static (int Height, int Width) ShorterSideSize(int height, int width, int shorterSide)
    {
        if (shorterSide <= 0) throw new ArgumentOutOfRangeException(nameof(shorterSide), shorterSide, "size must be positive");
        if (height <= width) return (shorterSide, Math.Max(1, (int)((long)shorterSide * width / height)));
        return (Math.Max(1, (int)((long)shorterSide * height / width)), shorterSide);
    }

    public static HostImage ResizeShorterSide(HostImage image, int shorterSide, Interpolation mode = Interpolation.Bilinear)
    {
        var (h, w) = ShorterSideSize(image.Height, image.Width, shorterSide);
        return Resize(image, h, w, mode);
    }

    public static HostImage Resize(HostImage image, int height, int width, Interpolation mode = Interpolation.Bilinear)
        => ResizedCrop(image, new CropBox(0, 0, image.Height, image.Width), height, width, mode);

    /// <summary>Cuts <paramref name="box"/> out of the image and resizes it to height × width (torchvision
    /// resized_crop): resampling taps stay inside the box, as if the crop had been taken first.</summary>
    public static HostImage ResizedCrop(HostImage image, CropBox box, int height, int width, Interpolation mode = Interpolation.Bilinear)
    {
        var output = new HostImage(height, width, image.Channels);
        ResizeHwc<byte>(image.Pixels, image.Height, image.Width, image.Channels, box, output.Pixels, height, width, mode);
        return output;
    }

    /// <summary>Resizes the <paramref name="box"/> region of an HWC buffer into an HWC buffer of
    /// outHeight × outWidth. Byte outputs are rounded and clamped to 0..255; float outputs are left as computed
    /// (bicubic may overshoot slightly, as in torchvision on float tensors).</summary>
    public static void ResizeHwc<T>(ReadOnlySpan<T> source, int height, int width, int channels, CropBox box,
        Span<T> destination, int outHeight, int outWidth, Interpolation mode) where T : unmanaged
    {
        if (source.Length != height * width * channels) throw new ArgumentException($"source holds {source.Length} values, not {height}x{width}x{channels}");
        if (box.Height <= 0 || box.Width <= 0 || box.Top < 0 || box.Left < 0 || box.Top + box.Height > height || box.Left + box.Width > width)
            throw new ArgumentException($"crop {box} lies outside a {height}x{width} image");
        if (outHeight <= 0 || outWidth <= 0) throw new ArgumentException($"output size {outHeight}x{outWidth} must be positive");
        if (destination.Length != outHeight * outWidth * channels) throw new ArgumentException($"destination holds {destination.Length} values, not {outHeight}x{outWidth}x{channels}");

        var columns = ResampleTaps.Compute(box.Width, outWidth, mode);
        var rows = ResampleTaps.Compute(box.Height, outHeight, mode);

        // Horizontal pass over the box's rows into a float intermediate (box.Height × outWidth), then the
        // vertical pass into the destination. PIL rounds the intermediate to 8 bits; keeping it in float
        // changes results by at most one step of 1/255 and is the more accurate choice.
        // Images are viewed as 2-D (rows × width·channels) so a crop is a slice, not offset arithmetic.
        int outRowLength = outWidth * channels;
        var cropped = source.AsSpan2D(height, width * channels)
            .Slice(box.Top, box.Left * channels, box.Height, box.Width * channels);
        using var betweenOwner = SpanOwner<float>.Allocate(box.Height * outRowLength);
        using var sourceRowOwner = SpanOwner<float>.Allocate(box.Width * channels);
        using var accumulatorOwner = SpanOwner<float>.Allocate(outRowLength);
        var between = betweenOwner.Span.AsSpan2D(box.Height, outRowLength);
        Span<float> sourceRow = sourceRowOwner.Span, accumulator = accumulatorOwner.Span;
        Span<float> pixel = stackalloc float[channels];
        for (int y = 0; y < box.Height; y++)
        {
            ToFloat(cropped.GetRowSpan(y), sourceRow);
            var dstRow = between.GetRowSpan(y);
            for (int x = 0; x < outWidth; x++)
            {
                var weights = columns.WeightsOf(x);
                var taps = sourceRow.Slice(columns.Start[x] * channels, weights.Length * channels);
                pixel.Clear();
                for (int k = 0, t = 0; k < weights.Length; k++)
                    for (int c = 0; c < channels; c++, t++) pixel[c] += weights[k] * taps[t];
                pixel.CopyTo(dstRow.Slice(x * channels, channels));
            }
        }

        var output = destination.AsSpan2D(outHeight, outRowLength);
        for (int y = 0; y < outHeight; y++)
        {
            var weights = rows.WeightsOf(y);
            accumulator.Clear();
            for (int k = 0; k < weights.Length; k++)
            {
                float weight = weights[k];
                var srcRow = between.GetRowSpan(rows.Start[y] + k);
                for (int i = 0; i < outRowLength; i++) accumulator[i] += weight * srcRow[i];
            }
            FromFloat<T>(accumulator, output.GetRowSpan(y));
        }
    }

    private static void ToFloat<T>(ReadOnlySpan<T> source, Span<float> destination) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) { MemoryMarshal.Cast<T, float>(source).CopyTo(destination); return; }
        if (typeof(T) != typeof(byte)) throw new NotSupportedException($"image buffers hold bytes or floats, not {typeof(T).Name}");
        var bytes = MemoryMarshal.Cast<T, byte>(source);
        for (int i = 0; i < bytes.Length; i++) destination[i] = bytes[i];
    }

    /// <summary>Floats stored as-is, or rounded (half up) and clamped to 0..255 for byte images.</summary>
    private static void FromFloat<T>(ReadOnlySpan<float> source, Span<T> destination) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) { source.CopyTo(MemoryMarshal.Cast<T, float>(destination)); return; }
        if (typeof(T) != typeof(byte)) throw new NotSupportedException($"image buffers hold bytes or floats, not {typeof(T).Name}");
        var bytes = MemoryMarshal.Cast<T, byte>(destination);
        for (int i = 0; i < source.Length; i++) bytes[i] = (byte)Math.Clamp((int)(source[i] + 0.5f), 0, 255);
    }

    /// <summary>Per-output-pixel filter taps along one axis, computed like PIL's precompute_coeffs: output pixel
    /// i samples around centre (i + 0.5)·scale; when downscaling the filter is stretched by the scale
    /// (antialiasing); taps are clipped to the input and renormalised.</summary>
    private sealed class ResampleTaps
    {
        public required int[] Start { get; init; }
        public required int[] Count { get; init; }
        public required float[] Weights { get; init; }
        public required int MaxTaps { get; init; }

        public ReadOnlySpan<float> WeightsOf(int i) => Weights.AsSpan(i * MaxTaps, Count[i]);

        public static ResampleTaps Compute(int inSize, int outSize, Interpolation mode)
        {
            double scale = (double)inSize / outSize;
            var start = new int[outSize];
            var count = new int[outSize];
            if (mode == Interpolation.Nearest)
            {
                var ones = new float[outSize];
                Array.Fill(ones, 1f);
                for (int i = 0; i < outSize; i++) { start[i] = Math.Min((int)((i + 0.5) * scale), inSize - 1); count[i] = 1; }
                return new ResampleTaps { Start = start, Count = count, Weights = ones, MaxTaps = 1 };
            }

            double support = mode == Interpolation.Bicubic ? 2.0 : 1.0;
            double filterScale = Math.Max(scale, 1.0);
            double reach = support * filterScale;
            int maxTaps = (int)Math.Ceiling(reach) * 2 + 1;
            var weights = new float[outSize * maxTaps];
            var raw = new double[maxTaps];
            for (int i = 0; i < outSize; i++)
            {
                double center = (i + 0.5) * scale;
                int lo = Math.Max((int)(center - reach + 0.5), 0);
                int hi = Math.Min((int)(center + reach + 0.5), inSize);
                double total = 0;
                for (int x = lo; x < hi; x++)
                {
                    double w = Kernel(mode, (x - center + 0.5) / filterScale);
                    raw[x - lo] = w;
                    total += w;
                }
                start[i] = lo; count[i] = hi - lo;
                for (int k = 0; k < count[i]; k++) weights[i * maxTaps + k] = (float)(total != 0 ? raw[k] / total : 0);
            }
            return new ResampleTaps { Start = start, Count = count, Weights = weights, MaxTaps = maxTaps };
        }

        private static double Kernel(Interpolation mode, double x)
        {
            x = Math.Abs(x);
            if (mode == Interpolation.Bilinear) return x < 1 ? 1 - x : 0;
            const double a = -0.5; // PIL's bicubic (torchvision on PIL images)
            if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
            if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
            return 0;
        }
    }

    // ---- crops and flips ---------------------------------------------------------------------------------

    /// <summary>Copies a rectangle out of the image; parts of the box outside the image are zero (torchvision
    /// pads when a center crop is larger than the image).</summary>
    public static HostImage Crop(HostImage image, CropBox box)
    {
        var output = new HostImage(box.Height, box.Width, image.Channels);
        CropHwc<byte>(image.Pixels, image.Height, image.Width, image.Channels, box, output.Pixels);
        return output;
    }

    public static void CropHwc<T>(ReadOnlySpan<T> source, int height, int width, int channels, CropBox box, Span<T> destination) where T : unmanaged
    {
        if (destination.Length != box.Height * box.Width * channels) throw new ArgumentException($"destination does not hold a {box.Height}x{box.Width}x{channels} crop");
        destination.Clear();
        int x0 = Math.Max(box.Left, 0), x1 = Math.Min(box.Left + box.Width, width);
        int y0 = Math.Max(box.Top, 0), y1 = Math.Min(box.Top + box.Height, height);
        if (x1 <= x0 || y1 <= y0) return;
        source.AsSpan2D(height, width * channels).Slice(y0, x0 * channels, y1 - y0, (x1 - x0) * channels)
            .CopyTo(destination.AsSpan2D(box.Height, box.Width * channels)
                .Slice(y0 - box.Top, (x0 - box.Left) * channels, y1 - y0, (x1 - x0) * channels));
    }

    /// <summary>The centred box of the given size (torchvision CenterCrop: offsets round half to even).</summary>
    public static CropBox CenterBox(int height, int width, int cropHeight, int cropWidth)
        => new((int)Math.Round((height - cropHeight) / 2.0), (int)Math.Round((width - cropWidth) / 2.0), cropHeight, cropWidth);

    public static HostImage CenterCrop(HostImage image, int size)
        => Crop(image, CenterBox(image.Height, image.Width, size, size));

    public static HostImage FlipHorizontal(HostImage image)
    {
        var output = new HostImage(image.Height, image.Width, image.Channels, (byte[])image.Pixels.Clone());
        FlipHorizontalHwc<byte>(output.Pixels, image.Height, image.Width, image.Channels);
        return output;
    }

    /// <summary>Mirrors an HWC buffer left–right in place.</summary>
    public static void FlipHorizontalHwc<T>(Span<T> pixels, int height, int width, int channels) where T : unmanaged
    {
        var image = pixels.AsSpan2D(height, width * channels);
        for (int y = 0; y < height; y++)
        {
            var row = image.GetRowSpan(y);
            for (int l = 0, r = width - 1; l < r; l++, r--)
                for (int c = 0; c < channels; c++)
                    (row[l * channels + c], row[r * channels + c]) = (row[r * channels + c], row[l * channels + c]);
        }
    }

    // ---- random resized crop -----------------------------------------------------------------------------

    /// <summary>
    /// A crop box with area fraction in [<paramref name="minScale"/>, <paramref name="maxScale"/>] of the image
    /// and aspect ratio (width/height) log-uniform in [<paramref name="minRatio"/>, <paramref name="maxRatio"/>]
    /// at a uniform position (torchvision RandomResizedCrop.get_params: ten tries, then a centre crop clamped
    /// to the ratio range).
    /// </summary>
    public static CropBox RandomResizedCropBox(int height, int width, Random rng, double minScale = 0.08, double maxScale = 1.0,
        double minRatio = 3.0 / 4.0, double maxRatio = 4.0 / 3.0)
    {
        if (!(minScale > 0 && minScale <= maxScale && maxScale <= 1)) throw new ArgumentException($"scale range ({minScale}, {maxScale}) must satisfy 0 < min <= max <= 1");
        if (!(minRatio > 0 && minRatio <= maxRatio)) throw new ArgumentException($"ratio range ({minRatio}, {maxRatio}) must satisfy 0 < min <= max");
        double area = (double)height * width;
        double logMin = Math.Log(minRatio), logMax = Math.Log(maxRatio);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double targetArea = area * (minScale + rng.NextDouble() * (maxScale - minScale));
            double ratio = Math.Exp(logMin + rng.NextDouble() * (logMax - logMin));
            int w = (int)Math.Round(Math.Sqrt(targetArea * ratio));
            int h = (int)Math.Round(Math.Sqrt(targetArea / ratio));
            if (w > 0 && w <= width && h > 0 && h <= height)
                return new CropBox(rng.Next(0, height - h + 1), rng.Next(0, width - w + 1), h, w);
        }
        double inRatio = (double)width / height;
        int cropW = width, cropH = height;
        if (inRatio < minRatio) cropH = (int)Math.Round(cropW / minRatio);
        else if (inRatio > maxRatio) cropW = (int)Math.Round(cropH * maxRatio);
        return new CropBox((height - cropH) / 2, (width - cropW) / 2, cropH, cropW);
    }
}

/// <summary>
/// The reference's ImageNet transform (data/webdataset_reader.py ImageNetTransform) on host images.
/// Training: random resized crop to resolution² (area scale in [min_scale, 1], aspect ratio in [3/4, 4/3] with
/// aspect-ratio augmentation, else 1) and a horizontal flip with probability ½ — or, with random cropping off,
/// the evaluation transform. Evaluation: resize the shorter side to resolution, then centre crop.
/// </summary>
public sealed class ImageTransform
{
    public int Resolution { get; }
    public bool UseRandomCrop { get; }
    public double MinScale { get; }
    public double MinAspectRatio { get; }
    public double MaxAspectRatio { get; }
    public Interpolation Interpolation { get; }

    public ImageTransform(int resolution, bool useAspectRatioAug = true, bool useRandomCrop = true, double minScale = 0.05,
        Interpolation interpolation = Interpolation.Bilinear)
    {
        if (resolution <= 0) throw new ArgumentOutOfRangeException(nameof(resolution), resolution, "resolution must be positive");
        (MinAspectRatio, MaxAspectRatio) = useAspectRatioAug ? (3.0 / 4.0, 4.0 / 3.0) : (1.0, 1.0);
        if (!useRandomCrop)
        {
            // Same checks as the reference: without random crops these settings would be silently ignored.
            if (minScale != 1.0) throw new ArgumentException("min_scale must be 1.0 when use_random_crop is false");
            if (useAspectRatioAug) throw new ArgumentException("use_aspect_ratio_aug must be false when use_random_crop is false");
        }
        Resolution = resolution; UseRandomCrop = useRandomCrop; MinScale = minScale; Interpolation = interpolation;
    }

    /// <summary>The training augmentation, drawing all randomness from <paramref name="rng"/>.</summary>
    public HostImage Train(HostImage image, Random rng)
    {
        if (!UseRandomCrop) return Eval(image);
        var box = Preprocess.RandomResizedCropBox(image.Height, image.Width, rng, MinScale, 1.0, MinAspectRatio, MaxAspectRatio);
        var output = Preprocess.ResizedCrop(image, box, Resolution, Resolution, Interpolation);
        if (rng.NextDouble() < 0.5) Preprocess.FlipHorizontalHwc<byte>(output.Pixels, output.Height, output.Width, output.Channels);
        return output;
    }

    /// <summary>The deterministic evaluation transform.</summary>
    public HostImage Eval(HostImage image)
        => Preprocess.CenterCrop(Preprocess.ResizeShorterSide(image, Resolution, Interpolation), Resolution);
}
