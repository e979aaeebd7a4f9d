namespace MaskBit.Models.Metrics;

/// <summary>
/// Inception Score from unbiased Inception logits, over parts of the images. Two ways to cut them:
/// <list type="bullet">
/// <item><description><see cref="Splits"/> consecutive parts of N images (the constructor): part s holds images
/// [⌊s·N/K⌋, ⌊(s+1)·N/K⌋) as in improved-GAN and torch-fidelity; K = 1 (the default) is the reference
/// TokenizerEvaluator's score and needs no image count in advance.</description></item>
/// <item><description>Parts of a fixed size (<see cref="InParts"/>): part s holds images [s·S, (s+1)·S), the last one
/// possibly shorter — the ADM suite's <c>compute_inception_score(split_size=5000)</c> that the reference's
/// eval_maskbit reports (10 parts of 50,000 images). It needs no count in advance either.</description></item>
/// </list>
/// Per part, with p_i = softmax(logits_i) in float64 and P = Σ_i p_i over its n images, IS = exp((Σ_i Σ_c
/// p_ic·log(p_ic + ε) − Σ_c P_c·log(P_c/n + ε)) / n), ε = 1e-16 (the reference evaluator's form); the result is
/// the mean over parts and their population standard deviation (np.std). Only two float64 rows per part are kept,
/// so memory does not grow with the images; accumulators over disjoint image ranges <see cref="Merge"/>.
/// </summary>
public sealed class InceptionScoreAccumulator
{
    /// <summary>The ADM suite's part size (the reference's gFID evaluation: 10 parts of 50,000 images).</summary>
    public const int AdmSplitSize = 5000;

    /// <summary>Fewest images per part: a part of one image always scores exactly 1.</summary>
    public const int MinImagesPerSplit = 2;

    private const double Eps = 1e-16;
    private readonly long _totalImages;
    private readonly long _splitSize;
    // Per part: Σ p_i, Σ p_i·log(p_i + ε) (per class) and the images added; parts of a fixed size are created as reached.
    private readonly List<double[]> _probabilitySum = new(), _plogpSum = new();
    private readonly List<long> _counts = new();
    private readonly double[] _probabilities;

    public int Classes { get; }

    /// <summary>Parts: K of the constructor, or as many fixed-size parts as the images added reach.</summary>
    public int Splits => _counts.Count;

    /// <summary>The fixed part size of <see cref="InParts"/>; 0 for K consecutive parts.</summary>
    public long SplitSize => _splitSize;

    public long Count { get; private set; }

    /// <param name="totalImages">N, needed when <paramref name="splits"/> &gt; 1 (at least one image per part).</param>
    public InceptionScoreAccumulator(int classes, int splits = 1, long totalImages = 0)
    {
        if (splits < 1) throw new ArgumentOutOfRangeException(nameof(splits), splits, "at least one split");
        if (splits > 1 && totalImages < splits)
            throw new ArgumentException($"{splits} Inception Score splits need the total image count in advance (at least {splits}), got {totalImages}");
        Classes = classes;
        _totalImages = splits == 1 ? long.MaxValue : totalImages;
        for (int s = 0; s < splits; s++) AddPart();
        _probabilities = new double[classes];
    }

    private InceptionScoreAccumulator(int classes, long splitSize)
    {
        if (splitSize < 1) throw new ArgumentOutOfRangeException(nameof(splitSize), splitSize, "at least one image per part");
        Classes = classes;
        _splitSize = splitSize;
        _totalImages = long.MaxValue;
        _probabilities = new double[classes];
    }

    /// <summary>Parts of <paramref name="splitSize"/> consecutive images, the last one possibly shorter (the ADM
    /// suite's split_size).</summary>
    public static InceptionScoreAccumulator InParts(int classes, long splitSize = AdmSplitSize) => new(classes, splitSize);

    private void AddPart()
    {
        _probabilitySum.Add(new double[Classes]);
        _plogpSum.Add(new double[Classes]);
        _counts.Add(0);
    }

    /// <summary>The parts to use for <paramref name="images"/> images when <paramref name="requested"/> are asked
    /// for: fewer when there are under <see cref="MinImagesPerSplit"/> images per part.</summary>
    public static int EffectiveSplits(long images, int requested) =>
        (int)Math.Clamp(images / MinImagesPerSplit, 1, Math.Max(requested, 1));

    /// <summary>First image of part s: ⌊s·N/K⌋ (numpy's preds[s·N//K : (s+1)·N//K]).</summary>
    private long SplitStart(int split) => split * _totalImages / Splits;

    /// <summary>The part of image <paramref name="index"/>: index / S for fixed-size parts, else the last part s
    /// with ⌊s·N/K⌋ ≤ index.</summary>
    private int SplitOf(long index) =>
        _splitSize > 0 ? checked((int)(index / _splitSize))
        : Splits == 1 ? 0 : (int)(((index + 1) * Splits - 1) / _totalImages);

    /// <summary>Adds the next image (its index is <see cref="Count"/>).</summary>
    public void Add(ReadOnlySpan<double> logits) => Add(logits, Count);

    /// <summary>Adds image <paramref name="index"/> of the whole evaluation: an accumulator may hold any range of
    /// the images (one rank's share), to be <see cref="Merge"/>d with the others'.</summary>
    public void Add(ReadOnlySpan<double> logits, long index)
    {
        if (logits.Length != Classes) throw new ArgumentException($"logits row has {logits.Length} values, expected {Classes}");
        if (index < 0 || index >= _totalImages) throw new InvalidOperationException($"image {index} is outside the {_totalImages} images the Inception Score was set up for");
        int split = SplitOf(index);
        while (_splitSize > 0 && _counts.Count <= split) AddPart();
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
        _counts[split]++;
        Count++;
    }

    /// <summary>Adds the sums of <paramref name="other"/>, an accumulator of the same kind over other images.</summary>
    public void Merge(InceptionScoreAccumulator other)
    {
        if (other.Classes != Classes || other._splitSize != _splitSize || other._totalImages != _totalImages || (_splitSize == 0 && other.Splits != Splits))
            throw new ArgumentException($"cannot merge Inception Score sums of different set-ups ({other.Classes} classes, {other.Splits} splits vs {Classes}, {Splits})");
        while (_counts.Count < other._counts.Count) AddPart();
        for (int s = 0; s < other._counts.Count; s++)
        {
            FeatureMoments.AddScaled(_probabilitySum[s], other._probabilitySum[s], 1);
            FeatureMoments.AddScaled(_plogpSum[s], other._plogpSum[s], 1);
            _counts[s] += other._counts[s];
        }
        Count += other.Count;
    }

    /// <summary>The running sums, for a resumable state: per part Σp and Σp·log p (parts × classes) and the image counts.</summary>
    public (double[] ProbabilitySums, double[] PlogpSums, long[] Counts) Sums() =>
        (_probabilitySum.SelectMany(r => r).ToArray(), _plogpSum.SelectMany(r => r).ToArray(), _counts.ToArray());

    /// <summary>Restores the sums of <see cref="Sums"/> into a fresh accumulator of the same set-up.</summary>
    public void RestoreSums(ReadOnlySpan<double> probabilitySums, ReadOnlySpan<double> plogpSums, ReadOnlySpan<long> counts)
    {
        if (Count != 0) throw new InvalidOperationException("sums can only be restored into an empty accumulator");
        if (probabilitySums.Length != counts.Length * Classes || plogpSums.Length != counts.Length * Classes || (_splitSize == 0 && counts.Length != Splits))
            throw new ArgumentException($"Inception Score sums of {counts.Length} parts × {probabilitySums.Length / Math.Max(counts.Length, 1)} classes do not fit {Splits} parts × {Classes} classes");
        while (_counts.Count < counts.Length) AddPart();
        for (int s = 0; s < counts.Length; s++)
        {
            probabilitySums.Slice(s * Classes, Classes).CopyTo(_probabilitySum[s]);
            plogpSums.Slice(s * Classes, Classes).CopyTo(_plogpSum[s]);
            _counts[s] = counts[s];
            Count += counts[s];
        }
    }

    /// <summary>The score of each part.</summary>
    public double[] SplitScores()
    {
        if (Count == 0) throw new InvalidOperationException("no images for the Inception Score");
        if (_splitSize == 0 && Splits > 1 && Count != _totalImages)
            throw new InvalidOperationException($"the Inception Score was set up for {_totalImages} images in {Splits} splits, got {Count}");
        var scores = new double[Splits];
        for (int s = 0; s < Splits; s++)
        {
            long n = _splitSize == 0 && Splits > 1 ? SplitStart(s + 1) - SplitStart(s) : _counts[s];
            if (n == 0) throw new InvalidOperationException($"Inception Score part {s} has no images");
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
