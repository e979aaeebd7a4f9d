using MaskBit.Autograd;
using MaskBit.Models.Interop;
using MaskBit.Models.Perceptual;

namespace MaskBit.Models.Metrics;

/// <summary>The FID InceptionV3 (<see cref="InceptionV3"/>) as an <see cref="IFeatureExtractor"/>: pool features
/// (2048, for FID) and unbiased logits (1008, for the Inception Score) of uint8 images, in batches.</summary>
public sealed class InceptionFeatureExtractor(InceptionV3 network, int batchSize = InceptionFeatureExtractor.DefaultBatchSize) : IFeatureExtractor
{
    /// <summary>Images per forward pass: the 299×299 activations of one image take tens of MB.</summary>
    public const int DefaultBatchSize = 8;

    /// <summary>Where the weights come from, for messages.</summary>
    public const string WeightsDescription = "pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or a safetensors copy of it";

    /// <summary>Size of the pool features (what FID statistics describe).</summary>
    public const int PoolFeatures = 2048;

    public int FeatureDim => PoolFeatures;
    public int LogitsDim => 1008;

    /// <summary>Loads the FID Inception weights (a torch checkpoint or safetensors with pytorch-fid's keys:
    /// <c>Conv2d_1a_3x3.conv.weight</c>, …, <c>fc.bias</c>). BatchNorm's <c>num_batches_tracked</c> may be
    /// absent (eval mode never reads it); any other missing, unexpected or mis-shaped entry is an error naming
    /// the file.</summary>
    public static InceptionFeatureExtractor Load(string path, int batchSize = DefaultBatchSize)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Inception weights not found: {path}", path);
        var network = new InceptionV3();
        using (TensorScope.Begin())
        {
            var problems = ModuleCheckpoint.LoadInto(network, CheckpointFile.Load(path), strict: false)
                .Where(p => !(p.StartsWith("missing key", StringComparison.Ordinal) && p.Contains(".num_batches_tracked'", StringComparison.Ordinal)))
                .ToList();
            if (problems.Count > 0)
                throw new InvalidDataException($"{path}: not the FID InceptionV3 weights ({WeightsDescription}): {problems.Count} problems:\n  " +
                                               string.Join("\n  ", problems.Take(5)) + (problems.Count > 5 ? $"\n  … and {problems.Count - 5} more" : ""));
        }
        return new InceptionFeatureExtractor(network, batchSize);
    }

    public InceptionOutputs Extract(ReadOnlySpan<byte> images, int count, int height, int width)
    {
        int imageSize = 3 * height * width;
        if (count < 1 || images.Length != count * imageSize)
            throw new ArgumentException($"{images.Length} bytes are not {count} RGB images of {height}×{width}");
        var features = new double[count * FeatureDim];
        var logits = new double[count * LogitsDim];
        var pixels = new int[Math.Min(batchSize, count) * imageSize];
        for (int start = 0; start < count; start += batchSize)
        {
            int n = Math.Min(batchSize, count - start);
            for (int i = 0; i < n * imageSize; i++) pixels[i] = images[start * imageSize + i];
            using var scope = TensorScope.Begin();
            using var noGrad = Tape.NoGrad();
            var output = network.Forward(Tensor.FromInts(pixels.AsSpan(0, n * imageSize), new[] { n, 3, height, width }));
            Copy(output.Pool2048.ToArray(), features.AsSpan(start * FeatureDim));
            Copy(output.LogitsUnbiased.ToArray(), logits.AsSpan(start * LogitsDim));
        }
        return new InceptionOutputs(count, features, logits);
    }

    private static void Copy(float[] source, Span<double> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = source[i];
    }
}
