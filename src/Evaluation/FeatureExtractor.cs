namespace MaskBit.Models.Metrics;

/// <summary>Inception outputs for a batch of images, row-major float64: `Features` (Count × FeatureDim, the
/// "2048" pool features) and `Logits` (Count × LogitsDim, the 1008 `logits_unbiased` = features·fc.weightᵀ
/// without bias). Logits may be null where only features are needed (the real images of rFID).</summary>
public sealed class InceptionOutputs
{
    public int Count { get; }
    public int FeatureDim { get; }
    public double[] Features { get; }
    public double[]? Logits { get; }
    public int LogitsDim => Logits == null ? 0 : Logits.Length / Count;

    public InceptionOutputs(int count, double[] features, double[]? logits = null)
    {
        if (count <= 0 || features.Length % count != 0 || (logits != null && logits.Length % count != 0))
            throw new ArgumentException($"features ({features.Length}) and logits ({logits?.Length}) are not {count} rows");
        Count = count;
        FeatureDim = features.Length / count;
        Features = features;
        Logits = logits;
    }

    public ReadOnlySpan<double> FeatureRow(int i) => Features.AsSpan(i * FeatureDim, FeatureDim);
    public ReadOnlySpan<double> LogitsRow(int i) =>
        (Logits ?? throw new InvalidOperationException("these Inception outputs have no logits")).AsSpan(i * LogitsDim, LogitsDim);
}

/// <summary>The FID InceptionV3 as the evaluator uses it: uint8 NCHW RGB images (N, 3, H, W) in, pool features
/// (2048) and unbiased logits (1008) out.</summary>
public interface IFeatureExtractor
{
    int FeatureDim { get; }
    int LogitsDim { get; }
    InceptionOutputs Extract(ReadOnlySpan<byte> images, int count, int height, int width);
}
