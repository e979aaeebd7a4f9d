using System.IO.Compression;
using System.Runtime.InteropServices;
using MaskBit.Models.Interop;

namespace MaskBit.Models.Metrics;

/// <summary>
/// The reference side of gFID, from an ADM-style .npz as the ADM suite's <c>read_statistics</c> takes it: the
/// Inception statistics <c>mu</c> (D) and <c>sigma</c> (D, D) when the file has them (the reference's
/// <c>train_imagenet256_stats.npz</c>, or the ADM reference batches, which also hold the images), else the
/// reference images in <c>arr_0</c> (N, H, W, 3) uint8, whose statistics are computed here. Only the needed
/// arrays are read, and <c>arr_0</c> is streamed in batches, so a 50,000-image batch never sits in memory.
/// </summary>
public static class ReferenceStatistics
{
    /// <summary>Images read from <c>arr_0</c> per Inception call.</summary>
    public const int ImagesPerRead = 64;

    /// <summary>Whether <paramref name="path"/> holds <c>mu</c> and <c>sigma</c> (else its images need an Inception network).</summary>
    public static bool HasStatistics(string path)
    {
        using var zip = Open(path);
        return zip.GetEntry("mu.npy") != null && zip.GetEntry("sigma.npy") != null;
    }

    /// <summary>The statistics of <paramref name="path"/>: its mu / sigma, else those of the <c>arr_0</c> images
    /// through <paramref name="network"/> (progress: images done, total).</summary>
    public static GaussianStatistics Load(string path, IFeatureExtractor? network, Action<long, long>? progress = null)
    {
        using var zip = Open(path);
        if (zip.GetEntry("mu.npy") is { } muEntry && zip.GetEntry("sigma.npy") is { } sigmaEntry)
        {
            var mu = ReadArray(path, muEntry);
            var sigma = ReadArray(path, sigmaEntry);
            if (mu.Shape.Length != 1 || sigma.Shape.Length != 2 || sigma.Shape[0] != mu.Shape[0] || sigma.Shape[1] != mu.Shape[0])
                throw new InvalidDataException($"{path}: mu [{string.Join(",", mu.Shape)}] and sigma [{string.Join(",", sigma.Shape)}] are not (D) and (D, D)");
            return new GaussianStatistics(mu.ToFloat64(), sigma.ToFloat64());
        }
        var images = zip.GetEntry("arr_0.npy")
            ?? throw new InvalidDataException($"{path}: neither 'mu' and 'sigma' nor reference images 'arr_0' (arrays: {string.Join(", ", zip.Entries.Select(e => e.FullName))})");
        if (network == null) throw new InvalidOperationException($"{path} holds reference images (arr_0), not statistics: computing them needs the Inception network");
        return FromImages(path, images, network, progress);
    }

    private static ZipArchive Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"reference statistics not found: {path}", path);
        try { return ZipFile.OpenRead(path); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path}: not an .npz archive ({e.Message})", e); }
    }

    private static NpyArray ReadArray(string path, ZipArchiveEntry entry)
    {
        using var stream = entry.Open();
        return Npy.Read(stream, entry.Length, $"{path}:{entry.FullName}");
    }

    private static GaussianStatistics FromImages(string path, ZipArchiveEntry entry, IFeatureExtractor network, Action<long, long>? progress)
    {
        string where = $"{path}:{entry.FullName}";
        using var stream = entry.Open();
        var (type, shape, _) = Npy.ReadHeader(stream, entry.Length, where);
        if (type != NpyType.UInt8 || shape.Length != 4 || shape[3] != 3)
            throw new InvalidDataException($"{where}: reference images must be uint8 (N, H, W, 3), got {type.ToString().ToLowerInvariant()} [{string.Join(", ", shape)}]");
        int n = shape[0], height = shape[1], width = shape[2];
        if (n < 2) throw new InvalidDataException($"{where}: a covariance needs at least 2 reference images, got {n}");
        int imageBytes = height * width * 3;
        var moments = new FeatureMoments(network.FeatureDim);
        var hwc = new byte[Math.Min(ImagesPerRead, n) * imageBytes];
        var chw = new byte[hwc.Length];
        for (int start = 0; start < n; start += ImagesPerRead)
        {
            int count = Math.Min(ImagesPerRead, n - start);
            int length = count * imageBytes;
            int read = stream.ReadAtLeast(hwc.AsSpan(0, length), length, throwOnEndOfStream: false);
            if (read != length) throw new InvalidDataException($"{where}: truncated at image {start + read / imageBytes} of {n}");
            ToChannelsFirst(hwc.AsSpan(0, length), chw.AsSpan(0, length), count, height * width);
            var outputs = network.Extract(chw.AsSpan(0, length), count, height, width);
            for (int i = 0; i < count; i++) moments.Add(outputs.FeatureRow(i));
            progress?.Invoke(start + count, n);
        }
        return moments.ToStatistics();
    }

    /// <summary>(N, H·W, 3) → (N, 3, H·W).</summary>
    private static void ToChannelsFirst(ReadOnlySpan<byte> hwc, Span<byte> chw, int count, int pixels)
    {
        for (int i = 0; i < count; i++)
        {
            var source = hwc.Slice(i * pixels * 3, pixels * 3);
            var target = chw.Slice(i * pixels * 3, pixels * 3);
            for (int p = 0; p < pixels; p++)
                for (int c = 0; c < 3; c++) target[c * pixels + p] = source[p * 3 + c];
        }
    }

    /// <summary>Writes <paramref name="statistics"/> as an ADM-style .npz (mu, sigma float64), atomically.</summary>
    public static void Save(string path, GaussianStatistics statistics) =>
        Npy.WriteNpz(path, new Dictionary<string, NpyArray>
        {
            ["mu"] = new(NpyType.Float64, new[] { statistics.Dim }, MemoryMarshal.AsBytes(statistics.Mu.AsSpan()).ToArray()),
            ["sigma"] = new(NpyType.Float64, new[] { statistics.Dim, statistics.Dim }, MemoryMarshal.AsBytes(statistics.Sigma.AsSpan()).ToArray()),
        });
}
