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

/// <summary>Inception Score over all images as one split: with p_i = softmax(logits_i) in float64 and
/// P = Σ_i p_i, IS = exp((Σ_i Σ_c p_ic·log(p_ic + ε) − Σ_c P_c·log(P_c/N + ε)) / N), ε = 1e-16.</summary>
public sealed class InceptionScoreAccumulator(int classes)
{
    private const double Eps = 1e-16;
    private readonly double[] _probabilitySum = new double[classes];
    private readonly double[] _plogpSum = new double[classes];
    private readonly double[] _probabilities = new double[classes];

    public int Classes { get; } = classes;
    public long Count { get; private set; }

    public void Add(ReadOnlySpan<double> logits)
    {
        if (logits.Length != Classes) throw new ArgumentException($"logits row has {logits.Length} values, expected {Classes}");
        double max = double.NegativeInfinity;
        foreach (double l in logits) max = Math.Max(max, l);
        double z = 0;
        for (int c = 0; c < Classes; c++) z += _probabilities[c] = Math.Exp(logits[c] - max);
        for (int c = 0; c < Classes; c++)
        {
            double p = _probabilities[c] / z;
            _probabilitySum[c] += p;
            _plogpSum[c] += p * Math.Log(p + Eps);
        }
        Count++;
    }

    public double Result()
    {
        if (Count == 0) throw new InvalidOperationException("no images for the Inception Score");
        double klSum = 0;
        for (int c = 0; c < Classes; c++)
            klSum += _plogpSum[c] - _probabilitySum[c] * Math.Log(_probabilitySum[c] / Count + Eps);
        return Math.Exp(klSum / Count);
    }
}
