using MaskBit.Autograd;
using MaskBit.Models.Classifier;
using MaskBit.Models.Interop;
using MaskBit.Models.Metrics;
using MaskBit.Tests.Data;

namespace MaskBit.Tests.Metrics;

/// <summary>The streaming gFID / IS evaluation (<see cref="GeneratorEvaluation"/>): ADM-style Inception Score
/// parts, merging partial sums, resuming from the state file, and reference statistics from arr_0 images. A cheap
/// deterministic stand-in for the Inception network keeps them fast.</summary>
public class StreamingEvaluationTests
{
    /// <summary>Features and logits that are fixed functions of the pixels: the first bytes of each image.</summary>
    private sealed class PixelFeatures(int featureDim = 6, int logitsDim = 4) : IFeatureExtractor
    {
        public int FeatureDim => featureDim;
        public int LogitsDim => logitsDim;
        public int Calls { get; private set; }

        public InceptionOutputs Extract(ReadOnlySpan<byte> images, int count, int height, int width)
        {
            Calls++;
            int size = images.Length / count;
            var features = new double[count * featureDim];
            var logits = new double[count * logitsDim];
            for (int i = 0; i < count; i++)
            {
                for (int j = 0; j < featureDim; j++) features[i * featureDim + j] = images[i * size + j % size] / 25.5 + j * 0.1;
                for (int j = 0; j < logitsDim; j++) logits[i * logitsDim + j] = images[i * size + (j + 3) % size] / 40.0;
            }
            return new InceptionOutputs(count, features, logits);
        }
    }

    /// <summary>Images that depend on the labels and the batch's seed only (as the real sampler with its per-batch seed).</summary>
    private static ImageBatch Sample(int[] labels, long start)
    {
        var random = new Random((int)(GeneratorEvaluation.BatchSeed(11, start) & 0x7fffffff));
        var data = new float[labels.Length * 3 * 2 * 2];
        for (int i = 0; i < data.Length; i++) data[i] = (float)((random.NextDouble() + labels[i / 12]) / 10);
        return new ImageBatch(data, labels.Length, 3, 2, 2);
    }

    [Test]
    public void AdmPartsAreFixedSizeWithAShortLastPart()
    {
        var logits = Enumerable.Range(0, 7).Select(i => new[] { Math.Sin(i), Math.Cos(3 * i), 0.5 * i }).ToArray();
        var parts = InceptionScoreAccumulator.InParts(classes: 3, splitSize: 3);
        foreach (var row in logits) parts.Add(row);
        Assert.That(parts.Splits, Is.EqualTo(3), "7 images in parts of 3: 3, 3, 1");
        var expected = new[] { logits[..3], logits[3..6], logits[6..] }.Select(part =>
        {
            var single = new InceptionScoreAccumulator(classes: 3);
            foreach (var row in part) single.Add(row);
            return single.Result();
        }).ToArray();
        Assert.That(parts.SplitScores(), Is.EqualTo(expected).Within(1e-12));
        Assert.That(expected[2], Is.EqualTo(1.0).Within(1e-12), "a one-image part scores 1, as in the ADM suite");
    }

    [Test]
    public void PartialSumsMergeToTheWhole()
    {
        var rows = Enumerable.Range(0, 9).Select(i => Enumerable.Range(0, 4).Select(j => Math.Sin(i * 1.3 + j) * (j + 1)).ToArray()).ToArray();
        var whole = new FeatureMoments(4);
        var wholeScore = InceptionScoreAccumulator.InParts(4, splitSize: 4);
        FeatureMoments first = new(4), second = new(4);
        InceptionScoreAccumulator firstScore = InceptionScoreAccumulator.InParts(4, 4), secondScore = InceptionScoreAccumulator.InParts(4, 4);
        for (int i = 0; i < rows.Length; i++)
        {
            whole.Add(rows[i]);
            wholeScore.Add(rows[i]);
            (i < 5 ? first : second).Add(rows[i]);
            (i < 5 ? firstScore : secondScore).Add(rows[i], i);
        }
        first.Merge(second);
        firstScore.Merge(secondScore);
        var (a, b) = (whole.ToStatistics(), first.ToStatistics());
        Assert.That(b.Mu, Is.EqualTo(a.Mu).Within(1e-12));
        Assert.That(b.Sigma, Is.EqualTo(a.Sigma).Within(1e-12));
        Assert.That(firstScore.SplitScores(), Is.EqualTo(wholeScore.SplitScores()).Within(1e-12));

        var k = new InceptionScoreAccumulator(4, splits: 2, totalImages: 9);
        var kFirst = new InceptionScoreAccumulator(4, splits: 2, totalImages: 9);
        var kSecond = new InceptionScoreAccumulator(4, splits: 2, totalImages: 9);
        for (int i = 0; i < rows.Length; i++)
        {
            k.Add(rows[i]);
            (i % 2 == 0 ? kFirst : kSecond).Add(rows[i], i);
        }
        kFirst.Merge(kSecond);
        Assert.That(kFirst.SplitScores(), Is.EqualTo(k.SplitScores()).Within(1e-12), "K consecutive splits, images added by index");
    }

    [Test]
    public void AStoppedEvaluationResumesToTheSameNumbers()
    {
        using var dir = new TempDirectory();
        const string settings = "test settings";
        var whole = new GeneratorEvaluation(new PixelFeatures(), numImages: 23, numClasses: 5, settings, inceptionScoreSplitSize: 10);
        Assert.That(whole.Run(Sample, batchSize: 4), Is.True);
        var expected = whole.Result(reference: null);

        string state = dir.File(GeneratorEvaluation.StateFileName);
        using var stop = new CancellationTokenSource();
        var first = new GeneratorEvaluation(new PixelFeatures(), 23, 5, settings, 10);
        Assert.That(first.Run(Sample, 4, done => { if (done >= 8) stop.Cancel(); }, state, TimeSpan.FromHours(1), stop.Token), Is.False);
        Assert.That(first.Done, Is.EqualTo(8));

        var network = new PixelFeatures();
        var second = new GeneratorEvaluation(network, 23, 5, settings, 10);
        Assert.That(second.Resume(state), Is.True);
        Assert.That(second.Done, Is.EqualTo(8));
        Assert.That(second.Run(Sample, 4, statePath: state), Is.True);
        Assert.That(network.Calls, Is.EqualTo(4), "only the remaining 15 images, in batches of 4");
        var resumed = second.Result(reference: null);
        foreach (var key in new[] { "InceptionScore", "InceptionScoreStd", "InceptionScoreSplits", "num_images" })
            Assert.That(resumed[key], Is.EqualTo(expected[key]).Within(1e-12), key);
        Assert.That(second.Features!.ToStatistics().Sigma, Is.EqualTo(whole.Features!.ToStatistics().Sigma).Within(1e-12));

        var other = new GeneratorEvaluation(new PixelFeatures(), 23, 5, "other settings", 10);
        Assert.That(Assert.Throws<InvalidDataException>(() => other.Resume(state))!.Message,
            Does.Contain(state).And.Contain("test settings").And.Contain("other settings").And.Contain("--fresh"));
    }

    /// <summary>`eval generator`'s one sampling pass: the classifier scores the first 14 of 23 images (a batch of 4
    /// cut at 14) as they go through the network, and a stopped-and-resumed run and two ranks' merged shares give the
    /// scores of the images classified directly.</summary>
    [Test]
    public void TheClassifierScoresTheFirstImagesOfTheSamePassResumedAndMerged()
    {
        var classifier = new ImageClassifier(new ClassifierConfig(1, [3], 4, 5, 2), seed: 1);
        var direct = new ClassifierScores(classifier);
        for (long start = 0; start < 14; start += 4)
        {
            int n = (int)Math.Min(4, 14 - start);
            var labels = GeneratorEvaluation.Labels(start, n, 5);
            direct.Update(Tensor.FromArray(Sample(labels, start).Data, [n, 3, 2, 2]), labels);
        }
        GeneratorEvaluation New((long, long)? share = null) => new(new PixelFeatures(), 23, 5, "s", 10, share, (new ClassifierScores(classifier), 14));
        void AssertDirect(GeneratorEvaluation evaluation, string what)
        {
            var scores = evaluation.Classifier!;
            Assert.That(scores.CountPerClass, Is.EqualTo(direct.CountPerClass), what);
            Assert.That(scores.Agreement, Is.EqualTo(direct.Agreement), what);
            Assert.That(scores.Features.ToStatistics().Mu, Is.EqualTo(direct.Features.ToStatistics().Mu).Within(1e-12), what);
            Assert.That(scores.Features.ToStatistics().Sigma, Is.EqualTo(direct.Features.ToStatistics().Sigma).Within(1e-12), what);
        }

        var whole = New();
        Assert.That(whole.Run(Sample, batchSize: 4), Is.True);
        AssertDirect(whole, "one pass");

        using var dir = new TempDirectory();
        string state = dir.File(GeneratorEvaluation.StateFileName);
        using var stop = new CancellationTokenSource();
        Assert.That(New().Run(Sample, 4, done => { if (done >= 8) stop.Cancel(); }, state, TimeSpan.FromHours(1), stop.Token), Is.False);
        var resumed = New();
        Assert.That(resumed.Resume(state), Is.True);
        Assert.That(resumed.Classifier!.Count, Is.EqualTo(8));
        Assert.That(resumed.Run(Sample, 4, statePath: state), Is.True);
        AssertDirect(resumed, "stopped at 8 and resumed");

        var (first, second) = (New(GeneratorEvaluation.Share(23, 4, 0, 2)), New(GeneratorEvaluation.Share(23, 4, 1, 2)));
        Assert.That(first.Run(Sample, 4) && second.Run(Sample, 4), Is.True);
        first.Merge(second);
        AssertDirect(first, "two ranks merged");

        var noClassifier = new GeneratorEvaluation(new PixelFeatures(), 23, 5, "s", 10);
        Assert.Throws<ArgumentException>(() => first.Merge(noClassifier));
    }

    [Test]
    public void StateSizeDoesNotGrowWithTheImages()
    {
        using var dir = new TempDirectory();
        long Size(int images)
        {
            var evaluation = new GeneratorEvaluation(new PixelFeatures(), images, 5, "s", inceptionScoreSplitSize: 10_000);
            string path = dir.File($"state-{images}.npz");
            evaluation.Run(Sample, batchSize: 50, statePath: path);
            return new FileInfo(path).Length;
        }
        // Past the feature dimension the rows are no longer kept; then only the sums remain.
        Assert.That(Size(2000), Is.EqualTo(Size(200)));
    }

    [Test]
    public void ReferenceImagesInArr0AreStreamedIntoStatistics()
    {
        using var dir = new TempDirectory();
        const int n = ReferenceStatistics.ImagesPerRead + 9, h = 3, w = 2;
        var hwc = new byte[n * h * w * 3];
        new Random(3).NextBytes(hwc);
        string path = dir.File("reference.npz");
        Npy.WriteNpz(path, new Dictionary<string, NpyArray> { ["arr_0"] = new(NpyType.UInt8, new[] { n, h, w, 3 }, hwc) });

        var network = new PixelFeatures();
        Assert.That(ReferenceStatistics.HasStatistics(path), Is.False);
        var statistics = ReferenceStatistics.Load(path, network);
        Assert.That(network.Calls, Is.EqualTo(2), "two reads");

        var chw = new byte[hwc.Length];
        int pixels = h * w;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < pixels; p++)
                for (int c = 0; c < 3; c++) chw[(i * 3 + c) * pixels + p] = hwc[(i * pixels + p) * 3 + c];
        var outputs = new PixelFeatures().Extract(chw, n, h, w);
        var moments = new FeatureMoments(outputs.FeatureDim);
        for (int i = 0; i < n; i++) moments.Add(outputs.FeatureRow(i));
        var expected = moments.ToStatistics();
        Assert.That(statistics.Mu, Is.EqualTo(expected.Mu).Within(1e-12));
        Assert.That(statistics.Sigma, Is.EqualTo(expected.Sigma).Within(1e-12));

        string saved = dir.File("saved.npz");
        ReferenceStatistics.Save(saved, statistics);
        Assert.That(ReferenceStatistics.HasStatistics(saved));
        Assert.That(ReferenceStatistics.Load(saved, network: null).Sigma, Is.EqualTo(statistics.Sigma));

        string neither = dir.File("neither.npz");
        Npy.WriteNpz(neither, new Dictionary<string, NpyArray> { ["images"] = NpyArray.FromFloats(new float[3], 3) });
        Assert.That(Assert.Throws<InvalidDataException>(() => ReferenceStatistics.Load(neither, network))!.Message,
            Does.Contain(neither).And.Contain("arr_0").And.Contain("images.npy"));
        string floats = dir.File("floats.npz");
        Npy.WriteNpz(floats, new Dictionary<string, NpyArray> { ["arr_0"] = NpyArray.FromFloats(new float[2 * 3 * 2 * 3], 2, 3, 2, 3) });
        Assert.That(Assert.Throws<InvalidDataException>(() => ReferenceStatistics.Load(floats, network))!.Message,
            Does.Contain("arr_0").And.Contain("uint8 (N, H, W, 3)").And.Contain("float32 [2, 3, 2, 3]"));
    }

    [Test]
    public void LabelsCycleOverTheClassesAndBatchSeedsDiffer()
    {
        Assert.That(GeneratorEvaluation.Labels(8, 5, 10), Is.EqualTo(new[] { 8, 9, 0, 1, 2 }));
        var seeds = Enumerable.Range(0, 100).Select(i => GeneratorEvaluation.BatchSeed(0, i * 32)).ToHashSet();
        Assert.That(seeds, Has.Count.EqualTo(100));
        Assert.That(GeneratorEvaluation.BatchSeed(1, 0), Is.Not.EqualTo(GeneratorEvaluation.BatchSeed(0, 0)));
    }
}
