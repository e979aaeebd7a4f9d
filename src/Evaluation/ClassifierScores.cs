using MaskBit.Autograd;
using MaskBit.Models.Classifier;

namespace MaskBit.Models.Metrics;

/// <summary>
/// What a classifier (<see cref="ImageClassifier"/>) says about a set of labelled images, accumulated batch by
/// batch: how often its prediction agrees with the label (the accuracy of real images, the class agreement of samples
/// with their requested class), per class, and the moments of its penultimate features for a Fréchet distance
/// against another set (<see cref="FrechetDistance"/>). Real test images scored the same way, at the same n, are the
/// floor a generator's samples are compared with.
/// </summary>
public sealed class ClassifierScores
{
    private readonly long[] _count, _agree;

    public ImageClassifier Classifier { get; }
    public FeatureMoments Features { get; }
    public int NumClasses => Classifier.Config.NumClasses;
    public long Count => _count.Sum();

    public ClassifierScores(ImageClassifier classifier)
    {
        Classifier = classifier;
        Features = new FeatureMoments(classifier.Config.FeatureDim);
        _count = new long[NumClasses];
        _agree = new long[NumClasses];
    }

    /// <summary>Scores images (B, C, H, W) in [0, 1] against their labels (requested classes).</summary>
    public void Update(Tensor images, ReadOnlySpan<int> labels)
    {
        if (images.Shape[0] != labels.Length)
            throw new ArgumentException($"classifier scores: {images.Shape[0]} images but {labels.Length} labels");
        float[] logits, features;
        using (TensorScope.Begin())
        using (Tape.NoGrad())
        {
            var (l, f) = Classifier.ForwardWithFeatures(images);
            (logits, features) = (l.ToArray(), f.ToArray());
        }
        int classes = NumClasses, dim = Features.Dim;
        var row = new double[dim];
        for (int i = 0; i < labels.Length; i++)
        {
            int label = labels[i];
            if ((uint)label >= (uint)classes) throw new ArgumentException($"classifier scores: label {label} of image {i} is outside 0..{classes - 1}");
            _count[label]++;
            if (ArgMax(logits.AsSpan(i * classes, classes)) == label) _agree[label]++;
            for (int j = 0; j < dim; j++) row[j] = features[i * dim + j];
            Features.Add(row);
        }
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>The share of images whose predicted class is their label (accuracy, or class agreement of samples).</summary>
    public double Agreement => Count == 0 ? double.NaN : (double)_agree.Sum() / Count;

    /// <summary>Agreement among the images of each label (NaN for a label with no images).</summary>
    public IReadOnlyList<double> AgreementPerClass => _count.Select((n, c) => n == 0 ? double.NaN : (double)_agree[c] / n).ToArray();

    public IReadOnlyList<long> CountPerClass => _count;

    /// <summary>Adds the scores of other images by the same classifier (another rank's share).</summary>
    public void Merge(ClassifierScores other)
    {
        if (other.NumClasses != NumClasses) throw new ArgumentException($"cannot merge classifier scores of {other.NumClasses} and {NumClasses} classes");
        for (int c = 0; c < NumClasses; c++) (_count[c], _agree[c]) = (_count[c] + other._count[c], _agree[c] + other._agree[c]);
        Features.Merge(other.Features);
    }

    /// <summary>The images and agreements per class, for a resumable state (the features' sums are in <see cref="Features"/>).</summary>
    public (long[] Count, long[] Agree) Counts() => (_count.ToArray(), _agree.ToArray());

    /// <summary>Restores <see cref="Counts"/> into empty scores whose <see cref="Features"/> are restored separately.</summary>
    public void RestoreCounts(ReadOnlySpan<long> count, ReadOnlySpan<long> agree)
    {
        if (Count != 0) throw new InvalidOperationException("counts can only be restored into empty classifier scores");
        if (count.Length != NumClasses || agree.Length != NumClasses)
            throw new ArgumentException($"classifier counts of {count.Length} and {agree.Length} classes do not fit {NumClasses}");
        for (int c = 0; c < NumClasses; c++)
            if (count[c] < 0 || agree[c] < 0 || agree[c] > count[c])
                throw new ArgumentException($"class {c}: {agree[c]} agreements among {count[c]} images");
        count.CopyTo(_count);
        agree.CopyTo(_agree);
    }

    /// <summary>The Fréchet distance between these images' features and <paramref name="reference"/>'s.</summary>
    public double FrechetDistance(ClassifierScores reference) => Frechet.Distance(Features.ToStatistics(), reference.Features.ToStatistics());
}
