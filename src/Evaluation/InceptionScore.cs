namespace MaskBit.Models.Metrics;

/// <summary>
/// Inception Score from unbiased Inception logits, over <see cref="Splits"/> consecutive parts of the images:
/// part s holds images [s·N/K, (s+1)·N/K) as in improved-GAN and torch-fidelity. Per part, with p_i =
/// softmax(logits_i) in float64 and P = Σ_i p_i over its n images, IS = exp((Σ_i Σ_c p_ic·log(p_ic + ε) −
/// Σ_c P_c·log(P_c/n + ε)) / n), ε = 1e-16 (the reference evaluator's form); the result is the mean over parts
/// and their population standard deviation (np.std). One part (the default) is the reference
/// TokenizerEvaluator's score and needs no image count in advance; more parts need the total count N.
/// </summary>
public sealed class InceptionScoreAccumulator
{
    /// <summary>The usual number of parts (improved-GAN, torch-fidelity; the ADM suite's 5,000-image parts of 50,000).</summary>
    public const int DefaultSplits = 10;

    /// <summary>Fewest images per part: a part of one image always scores exactly 1.</summary>
    public const int MinImagesPerSplit = 2;

    private const double Eps = 1e-16;
    private readonly long _totalImages;
    private readonly double[][] _probabilitySum, _plogpSum;
    private readonly double[] _probabilities;

    public int Classes { get; }
    public int Splits { get; }
    public long Count { get; private set; }

    /// <param name="totalImages">N, needed when <paramref name="splits"/> &gt; 1 (at least one image per part).</param>
    public InceptionScoreAccumulator(int classes, int splits = 1, long totalImages = 0)
    {
        if (splits < 1) throw new ArgumentOutOfRangeException(nameof(splits), splits, "at least one split");
        if (splits > 1 && totalImages < splits)
            throw new ArgumentException($"{splits} Inception Score splits need the total image count in advance (at least {splits}), got {totalImages}");
        Classes = classes;
        Splits = splits;
        _totalImages = splits == 1 ? long.MaxValue : totalImages;
        _probabilitySum = Enumerable.Range(0, splits).Select(_ => new double[classes]).ToArray();
        _plogpSum = Enumerable.Range(0, splits).Select(_ => new double[classes]).ToArray();
        _probabilities = new double[classes];
    }

    /// <summary>The parts to use for <paramref name="images"/> images when <paramref name="requested"/> are asked
    /// for: fewer when there are under <see cref="MinImagesPerSplit"/> images per part.</summary>
    public static int EffectiveSplits(long images, int requested) =>
        (int)Math.Clamp(images / MinImagesPerSplit, 1, Math.Max(requested, 1));

    /// <summary>First image of part s: ⌊s·N/K⌋ (numpy's preds[s·N//K : (s+1)·N//K]).</summary>
    private long SplitStart(int split) => split * _totalImages / Splits;

    /// <summary>The last part s with ⌊s·N/K⌋ ≤ index.</summary>
    private int SplitOf(long index) => Splits == 1 ? 0 : (int)(((index + 1) * Splits - 1) / _totalImages);

    public void Add(ReadOnlySpan<double> logits)
    {
        if (logits.Length != Classes) throw new ArgumentException($"logits row has {logits.Length} values, expected {Classes}");
        if (Count >= _totalImages) throw new InvalidOperationException($"more than the {_totalImages} images the Inception Score was set up for");
        int split = SplitOf(Count);
        double max = double.NegativeInfinity;
        foreach (double l in logits) max = Math.Max(max, l);
        double z = 0;
        for (int c = 0; c < Classes; c++) z += _probabilities[c] = Math.Exp(logits[c] - max);
        var probabilitySum = _probabilitySum[split];
        var plogpSum = _plogpSum[split];
        for (int c = 0; c < Classes; c++)
        {
            double p = _probabilities[c] / z;
            probabilitySum[c] += p;
            plogpSum[c] += p * Math.Log(p + Eps);
        }
        Count++;
    }

    /// <summary>The score of each part.</summary>
    public double[] SplitScores()
    {
        if (Count == 0) throw new InvalidOperationException("no images for the Inception Score");
        if (Splits > 1 && Count != _totalImages)
            throw new InvalidOperationException($"the Inception Score was set up for {_totalImages} images in {Splits} splits, got {Count}");
        var scores = new double[Splits];
        for (int s = 0; s < Splits; s++)
        {
            long n = Splits == 1 ? Count : SplitStart(s + 1) - SplitStart(s);
            double klSum = 0;
            for (int c = 0; c < Classes; c++)
                klSum += _plogpSum[s][c] - _probabilitySum[s][c] * Math.Log(_probabilitySum[s][c] / n + Eps);
            scores[s] = Math.Exp(klSum / n);
        }
        return scores;
    }

    /// <summary>Mean over the parts.</summary>
    public double Result() => SplitScores().Average();

    /// <summary>Mean and population standard deviation over the parts.</summary>
    public (double Mean, double Std) MeanAndStd()
    {
        var scores = SplitScores();
        double mean = scores.Average();
        return (mean, Math.Sqrt(scores.Sum(s => (s - mean) * (s - mean)) / scores.Length));
    }
}
