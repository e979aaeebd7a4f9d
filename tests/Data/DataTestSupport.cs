using MaskBit.Models.Data;

namespace MaskBit.Tests.Data;

/// <summary>A fresh directory under the system temp folder, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "maskbit-data-" + Guid.NewGuid().ToString("N"));

    public TempDirectory() => Directory.CreateDirectory(Path);

    public string File(params string[] parts)
    {
        var path = System.IO.Path.Combine(new[] { Path }.Concat(parts).ToArray());
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        return path;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { /* best effort: a leftover temp folder is harmless */ }
    }
}

internal static class TestImages
{
    /// <summary>Uniform random bytes (exact-round-trip tests).</summary>
    public static HostImage Noise(int height, int width, int channels, int seed)
    {
        var image = new HostImage(height, width, channels);
        new Random(seed).NextBytes(image.Pixels);
        return image;
    }

    /// <summary>Smooth colour ramps (lossy codecs and resampling behave well on them).</summary>
    public static HostImage Gradient(int height, int width, int channels = 3, int phase = 0)
    {
        var image = new HostImage(height, width, channels);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int c = 0; c < channels; c++)
                    image.Pixels[(y * width + x) * channels + c] = (byte)((x * 200 / Math.Max(1, width - 1) + y * 50 / Math.Max(1, height - 1) + 40 * c + phase) % 256);
        return image;
    }
}

/// <summary>An in-memory dataset of gradients with configurable sizes and failing indices; counts loads.</summary>
internal sealed class SyntheticDataset : IImageDataset
{
    private readonly Func<int, (int Height, int Width)> _size;
    private readonly HashSet<int> _bad;
    private int _loads;

    public SyntheticDataset(int count, Func<int, (int, int)>? size = null, params int[] bad)
    {
        Count = count;
        _size = size ?? (i => (20 + i % 5, 24 + i % 3));
        _bad = bad.ToHashSet();
    }

    public int Count { get; }
    public int Loads => Volatile.Read(ref _loads);
    public string KeyOf(int index) => $"synthetic/{index:D3}";

    public RawSample Load(int index)
    {
        Interlocked.Increment(ref _loads);
        if (_bad.Contains(index)) throw new InvalidDataException($"{KeyOf(index)}: broken on purpose");
        var (h, w) = _size(index);
        return new RawSample(TestImages.Gradient(h, w, 3, phase: index * 7), index % 10, KeyOf(index));
    }
}
