using System.Globalization;
using MaskBit.Autograd;
using MaskBit.Models.Classifier;
using MaskBit.Models.Data;
using MaskBit.Models.Metrics;

namespace MaskBit.Models.Training;

/// <summary>How a generator's samples score under a classifier, next to real images at the same n (the floor):
/// the share of samples the classifier puts in their requested class (overall and per class), and the Fréchet
/// distance of the classifier's penultimate features to held-out real images; the first <see cref="Count"/> real
/// test images against the same held-out rest give the floor of both.</summary>
public sealed record SampleQualityResult(
    int Count, double Agreement, IReadOnlyList<double> AgreementPerClass, double Frechet,
    double RealAgreement, IReadOnlyList<double> RealAgreementPerClass, double RealFrechet, int ReferenceCount)
{
    /// <summary>The two lines `eval generator`, `eval tokenizer` and the demo print; <paramref name="what"/> names the scored images.</summary>
    public IEnumerable<string> Lines(string what = "samples") =>
    [
        string.Create(CultureInfo.InvariantCulture, $"{$"{what} ({Count}):",-20} class agreement {Agreement:0.000}  Fréchet distance {Frechet:0.00}"),
        string.Create(CultureInfo.InvariantCulture, $"{$"real test ({Count}):",-20} class agreement {RealAgreement:0.000}  Fréchet distance {RealFrechet:0.00}  (the floor; against {ReferenceCount} other test images)"),
    ];

    /// <summary>The numbers as metrics (metrics.json, the demo's state).</summary>
    public Dictionary<string, double> ToMetrics() => new()
    {
        ["classifier_count"] = Count, ["class_agreement"] = Agreement, ["classifier_frechet"] = Frechet,
        ["real_class_agreement"] = RealAgreement, ["real_classifier_frechet"] = RealFrechet,
    };
}

/// <summary>Measures <see cref="SampleQualityResult"/>: n samples with labels cycling over the classes (sample i has
/// class i mod classes), the first n test images (the floor), both against the remaining test images.</summary>
public static class SampleQuality
{
    /// <param name="sample">Images (B, C, H, W) in [0, 1] of the requested labels, given with the index of the batch's first sample.</param>
    /// <param name="progress">Sees the samples done after each batch.</param>
    public static SampleQualityResult Measure(ImageClassifier classifier, IImageDataset test, int count, Func<int[], int, Tensor> sample,
        int batchSize = 50, Action<int>? progress = null) =>
        Measure(classifier, test, count, batchSize, progress, (start, n) =>
        {
            var labels = Enumerable.Range(start, n).Select(i => i % classifier.Config.NumClasses).ToArray();
            return (sample(labels, start), labels);
        });

    /// <summary>The tokenizer's ceiling for its generators: the first n test images (those of the floor)
    /// reconstructed by <paramref name="reconstruct"/> ((B, C, H, W) in [0, 1] → the same) and scored against their own
    /// labels and the remaining test images, next to the floor.</summary>
    public static SampleQualityResult MeasureReconstructions(ImageClassifier classifier, IImageDataset test, int count, Func<Tensor, Tensor> reconstruct,
        int batchSize = 50, Action<int>? progress = null) =>
        Measure(classifier, test, count, batchSize, progress, (start, n) =>
        {
            var originals = Enumerable.Range(start, n).Select(i => test.Get(i)).ToList();
            return (reconstruct(Tensor.Stack(originals.Select(o => o.Image).ToList())), originals.Select(o => o.Label).ToArray());
        });

    /// <param name="images">The images and labels of samples start..start+n.</param>
    private static SampleQualityResult Measure(ImageClassifier classifier, IImageDataset test, int count, int batchSize, Action<int>? progress,
        Func<int, int, (Tensor Images, int[] Labels)> images)
    {
        RequireTestImages(test, count);
        classifier.Eval();
        var samples = new ClassifierScores(classifier);
        for (int start = 0; start < count; start += batchSize)
        {
            int n = Math.Min(batchSize, count - start);
            using (TensorScope.Begin())
            {
                var (batch, labels) = images(start, n);
                samples.Update(batch, labels);
            }
            progress?.Invoke(start + n);
        }
        return Against(samples, test, batchSize);
    }

    /// <summary>Scores already taken of n samples (e.g. in `eval generator`'s sampling pass) next to the first n
    /// test images (the floor), both against the remaining test images.</summary>
    public static SampleQualityResult Against(ClassifierScores samples, IImageDataset test, int batchSize = 100)
    {
        int count = (int)samples.Count;
        RequireTestImages(test, count);
        var classifier = samples.Classifier;
        classifier.Eval();
        var real = Score(classifier, SubsetDataset.First(test, count), batchSize);
        var reference = Score(classifier, new SubsetDataset(test, Enumerable.Range(count, test.Count - count).ToArray()), batchSize);
        return new SampleQualityResult(count, samples.Agreement, samples.AgreementPerClass, samples.FrechetDistance(reference),
            real.Agreement, real.AgreementPerClass, real.FrechetDistance(reference), (int)reference.Count);
    }

    private static void RequireTestImages(IImageDataset test, int count)
    {
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, "a Fréchet distance needs at least 2 images");
        if (test.Count < 2 * count)
            throw new ArgumentException($"the test set has {test.Count} images; scoring {count} samples needs at least {2 * count} (the floor and the reference)");
    }

    /// <summary>The classifier's scores of every image of <paramref name="images"/> (resized by
    /// <paramref name="transform"/> when given) against its labels.</summary>
    public static ClassifierScores Score(ImageClassifier classifier, IImageDataset images, int batchSize = 100, ImageTransform? transform = null)
    {
        var loader = new DataLoader(images, new DataLoaderOptions
        {
            BatchSize = batchSize, Shuffle = false, Workers = 0, Transform = transform == null ? null : (image, _) => transform.Eval(image),
        });
        var scores = new ClassifierScores(classifier);
        foreach (var batch in loader.Epoch(0))
            using (TensorScope.Begin())
                scores.Update(batch.Images, batch.Labels.ToIntArray());
        return scores;
    }
}
