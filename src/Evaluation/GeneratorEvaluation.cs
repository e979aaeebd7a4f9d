using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using MaskBit.Autograd;
using MaskBit.Models.Interop;

namespace MaskBit.Models.Metrics;

/// <summary>
/// The gFID / Inception Score evaluation of a generator at the reference's scale (eval_maskbit: 50,000 samples),
/// streamed: each batch of samples goes through the Inception network at once and only running float64 sums stay —
/// Σf and Σffᵀ of the pool features (<see cref="FeatureMoments"/>, 2048² values) and two rows per Inception Score
/// part (<see cref="InceptionScoreAccumulator"/>) — so memory does not depend on the number of images.
/// <para>
/// Image i has class i mod nclass; the batch starting at image s samples with its own seed (<see cref="BatchSeed"/>),
/// so any batch can be sampled on its own: a stopped run resumes at the next batch from its state file
/// (<see cref="Save"/> / <see cref="Resume"/>: the sums, the images done and the settings they were made with) and
/// gives the same numbers as an uninterrupted one. Under mpirun each rank evaluates its <see cref="Share"/> of the
/// images (whole batches, so each batch is the one a single process samples) and the evaluations add up with
/// <see cref="Merge"/>.
/// </para>
/// <para>
/// With a classifier (<see cref="Classifier"/>), the same pass also scores the first <see cref="ClassifierImages"/>
/// images against their requested class: one sampling pass feeds both networks, and the classifier's sums are
/// saved, resumed and merged with the Inception ones.
/// </para>
/// </summary>
public sealed class GeneratorEvaluation
{
    /// <summary>The reference's number of samples (eval_maskbit's total_samples).</summary>
    public const long ReferenceImages = 50_000;

    /// <summary>File name of the resumable state in the output folder.</summary>
    public const string StateFileName = "eval_state.npz";

    private readonly IFeatureExtractor? _network;

    /// <summary>Each batch leaves large arrays behind (the Inception outputs, the samples' host copies), which only a
    /// full collection reclaims; the GC lets them pile up to its large-object budget, so an evaluation grew by ~7 MB
    /// per 1,000 images. A full collection after every this many allocated bytes keeps memory independent of the
    /// number of images (what survives is the models, the pools' buffers and the sums: it takes milliseconds).</summary>
    public const long FullCollectionEveryBytes = 64L << 20;

    private byte[] _pixels = [];

    /// <summary>What the numbers depend on besides the images done (weights, sampling options, batch size, …):
    /// a state made with other settings is not resumed.</summary>
    public string Settings { get; }
    public long NumImages { get; }
    public int NumClasses { get; }

    /// <summary>The images [First, End) of the <see cref="NumImages"/> this evaluation samples (all but under mpirun).</summary>
    public long First { get; }
    public long End { get; }

    /// <summary>Images sampled (and, with a network, evaluated) so far: [First, First + Done).</summary>
    public long Done { get; private set; }

    /// <summary>Wall time spent sampling and in the Inception network, over all sessions of a resumed run.</summary>
    public double SamplingSeconds { get; private set; }
    public double InceptionSeconds { get; private set; }

    /// <summary>Null without an Inception network (then only the sampling speed is measured).</summary>
    public FeatureMoments? Features { get; }
    public InceptionScoreAccumulator? InceptionScore { get; }

    /// <summary>The classifier's scores of images [0, <see cref="ClassifierImages"/>) (this rank's part of them);
    /// null without a classifier.</summary>
    public ClassifierScores? Classifier { get; }
    public long ClassifierImages { get; }

    /// <param name="network">The FID InceptionV3, or null to measure only the sampling speed.</param>
    /// <param name="inceptionScoreSplitSize">Images per Inception Score part (the ADM suite's 5,000 by default).</param>
    /// <param name="share">The images of one rank (<see cref="Share"/>); default all.</param>
    /// <param name="classifier">Empty scores of a classifier and how many of the first images it scores; default none.</param>
    public GeneratorEvaluation(IFeatureExtractor? network, long numImages, int numClasses, string settings,
        long inceptionScoreSplitSize = InceptionScoreAccumulator.AdmSplitSize, (long First, long End)? share = null,
        (ClassifierScores Scores, long Images)? classifier = null)
    {
        if (numImages < 1) throw new ArgumentOutOfRangeException(nameof(numImages), numImages, "at least one image");
        if (numClasses < 1) throw new ArgumentOutOfRangeException(nameof(numClasses), numClasses, "at least one class");
        (First, End) = share ?? (0, numImages);
        if (First < 0 || First > End || End > numImages) throw new ArgumentOutOfRangeException(nameof(share), share, $"not a range of the {numImages} images");
        _network = network;
        NumImages = numImages;
        NumClasses = numClasses;
        Settings = settings;
        if (network != null)
        {
            Features = new FeatureMoments(network.FeatureDim);
            InceptionScore = InceptionScoreAccumulator.InParts(network.LogitsDim, inceptionScoreSplitSize);
        }
        if (classifier is { } c)
        {
            if (c.Scores.Count != 0) throw new ArgumentException("the classifier's scores must start empty", nameof(classifier));
            if (c.Images < 0 || c.Images > numImages) throw new ArgumentOutOfRangeException(nameof(classifier), c.Images, $"not a count of the {numImages} images");
            (Classifier, ClassifierImages) = (c.Scores, c.Images);
        }
    }

    /// <summary>Rank <paramref name="rank"/>'s images of <paramref name="numImages"/> sampled in batches of
    /// <paramref name="batchSize"/> by <paramref name="world"/> ranks: a contiguous run of whole batches (batch b
    /// starts at image b·batchSize whichever rank samples it, so the ranks together sample one process's images).</summary>
    public static (long First, long End) Share(long numImages, int batchSize, int rank, int world)
    {
        long batches = (numImages + batchSize - 1) / batchSize;
        long Start(int r) => Math.Min(numImages, batches * r / world * batchSize);
        return (Start(rank), Start(rank + 1));
    }

    /// <summary>The class labels of images [start, start + count): image i has class i mod <paramref name="numClasses"/>
    /// (every run of nclass consecutive images holds each class once, as the reference's repeated permutation).</summary>
    public static int[] Labels(long start, int count, int numClasses) =>
        Enumerable.Range(0, count).Select(i => (int)((start + i) % numClasses)).ToArray();

    /// <summary>The seed of the batch that starts at image <paramref name="start"/> (a splitmix64 step of both, so
    /// neighbouring batches draw unrelated streams).</summary>
    public static long BatchSeed(long seed, long start)
    {
        ulong z = (ulong)seed ^ ((ulong)start * 0x9E3779B97F4A7C15UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (long)(z ^ (z >> 31));
    }

    /// <summary>Samples and evaluates the remaining images in batches of <paramref name="batchSize"/>.
    /// <paramref name="sample"/> gets the labels and the index of the batch's first image and returns the images
    /// (NCHW, [0, 1]). After each batch <paramref name="progress"/> sees the images done; every
    /// <paramref name="saveEvery"/> and when done or stopped the state goes to <paramref name="statePath"/> (when
    /// given). Returns false when <paramref name="stop"/> ended it early.</summary>
    public bool Run(Func<int[], long, ImageBatch> sample, int batchSize, Action<long>? progress = null, string? statePath = null,
        TimeSpan? saveEvery = null, CancellationToken stop = default)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "at least one image per batch");
        var sinceSave = Stopwatch.StartNew();
        var clock = new Stopwatch();
        long allocatedAtCollection = GC.GetTotalAllocatedBytes();
        while (First + Done < End)
        {
            if (stop.IsCancellationRequested) break;
            long start = First + Done;
            int count = (int)Math.Min(batchSize, End - start);
            clock.Restart();
            var labels = Labels(start, count, NumClasses);
            var images = sample(labels, start);
            SamplingSeconds += clock.Elapsed.TotalSeconds;
            if (images.N != count) throw new InvalidOperationException($"the sampler returned {images.N} images for a batch of {count}");
            if (Classifier != null && start < ClassifierImages) Classify(images, labels, (int)Math.Min(count, ClassifierImages - start));
            if (_network != null)
            {
                if (images.C != 3) throw new InvalidDataException($"gFID / IS need RGB samples; the tokenizer decodes {images.C} channel(s)");
                clock.Restart();
                if (_pixels.Length != images.Data.Length) _pixels = new byte[images.Data.Length];
                images.ToUInt8(_pixels);
                Add(_network.Extract(_pixels, count, images.H, images.W));
                InceptionSeconds += clock.Elapsed.TotalSeconds;
            }
            Done += count;
            if (GC.GetTotalAllocatedBytes() - allocatedAtCollection > FullCollectionEveryBytes)
            {
                GC.Collect();
                allocatedAtCollection = GC.GetTotalAllocatedBytes();
            }
            progress?.Invoke(Done);
            if (statePath != null && saveEvery is { } every && sinceSave.Elapsed >= every)
            {
                Save(statePath);
                sinceSave.Restart();
            }
        }
        if (statePath != null) Save(statePath);
        return First + Done == End;
    }

    /// <summary>Scores the first <paramref name="n"/> images of a batch with the classifier.</summary>
    private void Classify(ImageBatch images, int[] labels, int n)
    {
        using var scope = TensorScope.Begin();
        int size = images.C * images.H * images.W;
        var batch = Tensor.FromArray(images.Data.AsSpan(0, n * size), [n, images.C, images.H, images.W]);
        Classifier!.Update(batch, labels.AsSpan(0, n));
    }

    /// <summary>The classifier's images among [First, First + Done).</summary>
    private long ClassifiedImages(long done) => Math.Max(0, Math.Min(First + done, ClassifierImages) - First);

    /// <summary>Adds the Inception outputs of the next images.</summary>
    private void Add(InceptionOutputs outputs)
    {
        for (int i = 0; i < outputs.Count; i++)
        {
            Features!.Add(outputs.FeatureRow(i));
            InceptionScore!.Add(outputs.LogitsRow(i), First + Done + i);
        }
    }

    /// <summary>Adds the sums of an evaluation of other images with the same settings (another rank's share). The
    /// float64 sums then add in another order than one process adds them: the metrics agree to about 1e-12 relative.</summary>
    public void Merge(GeneratorEvaluation other)
    {
        if (other.Settings != Settings || other.NumImages != NumImages || (other.Features == null) != (Features == null)
            || (other.Classifier == null) != (Classifier == null) || other.ClassifierImages != ClassifierImages)
            throw new ArgumentException("cannot merge evaluations made with different settings");
        if (other.First < First + Done && First < other.First + other.Done)
            throw new ArgumentException($"cannot merge evaluations of overlapping images ([{First}, {First + Done}) and [{other.First}, {other.First + other.Done}))");
        if (Features != null)
        {
            Features.Merge(other.Features!);
            InceptionScore!.Merge(other.InceptionScore!);
        }
        Classifier?.Merge(other.Classifier!);
        Done += other.Done;
        SamplingSeconds += other.SamplingSeconds;
        InceptionSeconds += other.InceptionSeconds;
    }

    /// <summary>gFID against <paramref name="reference"/> (when given) and the Inception Score (mean over the parts,
    /// with their spread and count), with the network; always the images and sampling speed.</summary>
    public Dictionary<string, double> Result(GaussianStatistics? reference)
    {
        var metrics = new Dictionary<string, double>
        {
            ["num_images"] = Done,
            ["num_classes"] = Math.Min(Done, NumClasses),
            ["sampling_seconds"] = SamplingSeconds,
            ["images_per_second"] = Done / Math.Max(SamplingSeconds, 1e-9),
        };
        if (Features == null || Done == 0) return metrics;
        if (reference != null)
        {
            if (reference.Dim != Features.Dim) throw new InvalidDataException($"the reference statistics have {reference.Dim} features, the Inception network {Features.Dim}");
            metrics["gFID"] = Frechet.Distance(Features.ToStatistics(), reference);
        }
        var (mean, std) = InceptionScore!.MeanAndStd();
        metrics["InceptionScore"] = mean;
        metrics["InceptionScoreStd"] = std;
        metrics["InceptionScoreSplits"] = InceptionScore.Splits;
        metrics["inception_seconds"] = InceptionSeconds;
        return metrics;
    }

    /// <summary>Writes the state (settings, images done, timings, the running sums) as an .npz, atomically.</summary>
    public void Save(string path)
    {
        var arrays = new Dictionary<string, NpyArray>
        {
            ["settings"] = new(NpyType.UInt8, new[] { Encoding.UTF8.GetByteCount(Settings) }, Encoding.UTF8.GetBytes(Settings)),
            ["done"] = NpyArray.FromInt64(new[] { Done, NumImages }, 2),
            ["share"] = NpyArray.FromInt64(new[] { First, End }, 2),
            ["seconds"] = Float64(new[] { SamplingSeconds, InceptionSeconds }, 2),
        };
        if (Features != null)
        {
            SaveMoments(arrays, "", Features);
            var (probabilities, plogp, counts) = InceptionScore!.Sums();
            arrays["is_probability_sum"] = Float64(probabilities, counts.Length, InceptionScore.Classes);
            arrays["is_plogp_sum"] = Float64(plogp, counts.Length, InceptionScore.Classes);
            arrays["is_counts"] = NpyArray.FromInt64(counts, counts.Length);
        }
        if (Classifier != null)
        {
            var (count, agree) = Classifier.Counts();
            arrays["classifier_count"] = NpyArray.FromInt64(count, count.Length);
            arrays["classifier_agree"] = NpyArray.FromInt64(agree, agree.Length);
            SaveMoments(arrays, "classifier_", Classifier.Features);
        }
        Npy.WriteNpz(path, arrays);
    }

    /// <summary>The sums of <paramref name="moments"/> as PREFIXfeature_sum, PREFIXfeature_sum_outer and (while kept) PREFIXfeature_rows.</summary>
    private static void SaveMoments(Dictionary<string, NpyArray> arrays, string prefix, FeatureMoments moments)
    {
        var (sum, sumOuter, rows) = moments.Sums();
        arrays[prefix + "feature_sum"] = Float64(sum, sum.Length);
        arrays[prefix + "feature_sum_outer"] = Float64(sumOuter, moments.Dim, moments.Dim);
        if (rows != null) arrays[prefix + "feature_rows"] = Float64(rows, rows.Length / moments.Dim, moments.Dim);
    }

    private static NpyArray Float64(double[] values, params int[] shape) =>
        new(NpyType.Float64, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    /// <summary>Continues from the state at <paramref name="path"/> when there is one: true with the sums restored,
    /// false when there is none; a state made with other settings is an error naming both.</summary>
    public bool Resume(string path)
    {
        if (!File.Exists(path)) return false;
        if (Done != 0) throw new InvalidOperationException("only a fresh evaluation can resume");
        var arrays = Npy.ReadNpz(path);
        NpyArray Array(string key) => arrays.TryGetValue(key, out var a) ? a : throw new InvalidDataException($"{path}: no '{key}' array (not an evaluation state)");
        string settings = Encoding.UTF8.GetString(Array("settings").Data);
        if (settings != Settings)
            throw new InvalidDataException($"{path}: the evaluation state was made with other settings ({settings}), not these ({Settings}); " +
                                           "pass --fresh to start over, or another --out");
        var done = Array("done").ToInt64();
        if (done.Length != 2 || done[1] != NumImages || done[0] < 0 || done[0] > End - First)
            throw new InvalidDataException($"{path}: 'done' is [{string.Join(", ", done)}], expected [images done, {NumImages}]");
        // A state of one process has no share: all images.
        var share = arrays.TryGetValue("share", out var saved) ? saved.ToInt64() : [0, NumImages];
        if (share.Length != 2 || share[0] != First || share[1] != End)
            throw new InvalidDataException($"{path}: the state holds images [{string.Join(", ", share)}), this rank evaluates [{First}, {End}); " +
                                           "resume with the world size and batch size it was made with, or pass --fresh");
        void RestoreMoments(string prefix, FeatureMoments moments, long count)
        {
            var rows = arrays.TryGetValue(prefix + "feature_rows", out var r) ? r.ToFloat64() : null;
            moments.RestoreSums(Array(prefix + "feature_sum").ToFloat64(), Array(prefix + "feature_sum_outer").ToFloat64(), count, rows);
        }
        if (Features != null)
        {
            RestoreMoments("", Features, done[0]);
            InceptionScore!.RestoreSums(Array("is_probability_sum").ToFloat64(), Array("is_plogp_sum").ToFloat64(), Array("is_counts").ToInt64());
            if (InceptionScore.Count != done[0]) throw new InvalidDataException($"{path}: the Inception Score parts hold {InceptionScore.Count} images, 'done' says {done[0]}");
        }
        if (Classifier != null)
        {
            long classified = ClassifiedImages(done[0]);
            RestoreMoments("classifier_", Classifier.Features, classified);
            Classifier.RestoreCounts(Array("classifier_count").ToInt64(), Array("classifier_agree").ToInt64());
            if (Classifier.Count != classified) throw new InvalidDataException($"{path}: the classifier scored {Classifier.Count} images, 'done' says {classified}");
        }
        var seconds = Array("seconds").ToFloat64();
        (SamplingSeconds, InceptionSeconds) = (seconds[0], seconds[1]);
        Done = done[0];
        return true;
    }
}
