using MaskBit.Autograd;
using MaskBit.Cli;
using MaskBit.Models.Classifier;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Models.Training;
using MaskBit.Tests.Data;

namespace MaskBit.Tests.Training;

/// <summary>The sample-scoring classifier: `maskbit train classifier` through the training loop on a synthetic
/// two-class folder (vertical vs horizontal bars), <see cref="SampleQuality"/> on that folder, and the shipped
/// Fashion-MNIST classifier's accuracy on a slice of the test set.</summary>
[TestFixture]
[NonParallelizable]
public class ClassifierTests
{
    private TrainingTestFolder _folder = null!;

    internal const string TinyConfig = """
        experiment:
            name: "tiny_classifier"
            save_every: 1000
            eval_every: 0
            log_every: 5
            resume: True
        model:
            classifier:
                num_channels: 1
                channels: [4, 8]
                feature_dim: 8
                num_classes: 2
        dataset:
            params:
                train_shards_path_or_url: "IMAGES"
                eval_shards_path_or_url: "IMAGES"
                num_workers_per_gpu: 1
            preprocessing:
                resolution: 8
                use_aspect_ratio_aug: False
                use_random_crop: False
                min_scale: 1.0
        optimizer:
            name: adamw
            params:
                learning_rate: 1e-2
        lr_scheduler:
            scheduler: "cosine_with_minimum"
            params:
                warmup_steps: 2
        training:
            per_gpu_batch_size: 8
            seed: 5
            max_train_steps: 60
            max_grad_norm: 5.0
        """;

    /// <summary>Class 0: bright vertical bars; class 1: bright horizontal bars; both with noise.</summary>
    internal static HostImage Bars(int label, int seed)
    {
        var image = new HostImage(8, 8, 1);
        var rng = new Random(seed);
        int phase = rng.Next(2);
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
            {
                bool bright = ((label == 0 ? x : y) + phase) % 2 == 0;
                image.Pixels[y * 8 + x] = (byte)Math.Clamp((bright ? 200 : 50) + rng.Next(-40, 41), 0, 255);
            }
        return image;
    }

    [OneTimeSetUp]
    public void WriteImagesAndConfig() => _folder = new TrainingTestFolder(TinyConfig, 48, i => Bars(i % 2, i));

    [OneTimeTearDown]
    public void Cleanup() => _folder.Dispose();

    private static (int Code, string Out, string Err) Cli(params string[] args) => TrainingTestFolder.Cli(args);

    [Test]
    public void TrainClassifierLearnsTheBarsWritesWeightsAndResumes()
    {
        string run = _folder.NewRunDir();
        var (code, output, error) = Cli("train", "classifier", "--config", _folder.Config, "--out", run);
        Assert.That(code, Is.EqualTo(Program.ExitOk), error + output);
        string weights = Path.Combine(run, ClassifierTrainer.WeightsFileName);
        var saved = SafeTensors.Load(weights);
        Assert.That(double.Parse(saved.Metadata.Single(kv => kv.Key == "eval_accuracy").Value!.ToString()!, System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThanOrEqualTo(0.95));

        // The weights load into the config's classifier, which tells the bars apart.
        var classifier = PretrainedModels.Classifier(MaskBitConfig.Load(_folder.Config), weights);
        var scores = SampleQuality.Score(classifier, new ImageFolderDataset(_folder.Images, 1));
        Assert.That(scores.Agreement, Is.GreaterThanOrEqualTo(0.95));
        Assert.That(scores.CountPerClass, Is.EqualTo(new long[] { 24, 24 }));

        // Running the command again resumes the finished run instead of training anew.
        (code, output, error) = Cli("train", "classifier", "--config", _folder.Config, "--out", run, "training.max_train_steps=62");
        Assert.That(code, Is.EqualTo(Program.ExitOk), error + output);
        Assert.That(output, Does.Contain("resumed from").And.Contain("checkpoint-60"));
    }

    [Test]
    public void SampleQualityPutsRealImagesAtTheFloorAndNoiseAbove()
    {
        using var trainer = new ClassifierTrainer(MaskBitConfig.Load(_folder.Config, ["training.max_train_steps=40"]),
            new ClassifierTrainerOptions { OutputDir = _folder.NewRunDir() });
        trainer.Run();
        var test = new ImageFolderDataset(_folder.Images, 1);

        Tensor Images(IEnumerable<HostImage> images) =>
            Tensor.FromArray(images.SelectMany(i => i.Pixels.Select(p => p / 255f)).ToArray(), [images.Count(), 1, 8, 8]);
        int seed = 1000;
        var bars = SampleQuality.Measure(trainer.Model, test, 16, (labels, _) => Images(labels.Select(l => Bars(l, seed++)).ToList()), batchSize: 6);
        var noise = SampleQuality.Measure(trainer.Model, test, 16, (labels, _) => Images(labels.Select(l => TestImages.Noise(8, 8, 1, seed++)).ToList()), batchSize: 6);

        Assert.That(bars.Count, Is.EqualTo(16));
        Assert.That(bars.ReferenceCount, Is.EqualTo(32));
        Assert.That(bars.Agreement, Is.GreaterThanOrEqualTo(0.9));
        Assert.That(bars.AgreementPerClass, Has.Count.EqualTo(2));
        Assert.That(bars.RealAgreement, Is.EqualTo(noise.RealAgreement), "the floor does not depend on the samples");
        Assert.That(bars.RealFrechet, Is.EqualTo(noise.RealFrechet));
        Assert.That(noise.Frechet, Is.GreaterThan(bars.Frechet));
        Assert.That(bars.Lines().First(), Does.StartWith("samples (16):"));
        Assert.Throws<ArgumentException>(() => SampleQuality.Measure(trainer.Model, test, 30, (labels, _) => Images([])));
    }

    [Test]
    public void PerfectReconstructionsScoreTheFloor()
    {
        using var trainer = new ClassifierTrainer(MaskBitConfig.Load(_folder.Config, ["training.max_train_steps=40"]),
            new ClassifierTrainerOptions { OutputDir = _folder.NewRunDir() });
        trainer.Run();
        var test = new ImageFolderDataset(_folder.Images, 1);

        var seen = new List<float[]>();
        var identical = SampleQuality.MeasureReconstructions(trainer.Model, test, 16, images =>
        {
            seen.Add(images.ToArray());
            return images;
        }, batchSize: 6);

        // The reconstructed images are the floor's (the first 16 test images, in order), scored against their own
        // labels and the same reference.
        Assert.That(seen.Select(batch => batch.Length), Is.EqualTo(new[] { 6 * 64, 6 * 64, 4 * 64 }));
        Assert.That(seen[0].AsSpan(0, 64).ToArray(), Is.EqualTo(((IImageDataset)test).Get(0).Image.ToArray()));
        Assert.That(identical.Agreement, Is.EqualTo(identical.RealAgreement));
        Assert.That(identical.Frechet, Is.EqualTo(identical.RealFrechet).Within(1e-9));
        Assert.That(identical.Lines("reconstructions").First(), Does.StartWith("reconstructions (16):"));
    }

    [Test]
    public void ShippedClassifierIsAccurateOnTheTestSet()
    {
        FashionMnist test;
        try { test = new FashionMnist(train: false, padTo32: true, channels: 3); }
        catch (IOException e) { Assert.Ignore($"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist; .ci/run does): {e.Message}"); return; }
        string folder = Path.Combine(AppContext.BaseDirectory, "models", "fashion_mnist");
        var classifier = PretrainedModels.Classifier(MaskBitConfig.Load(Path.Combine(folder, "classifier.yaml")), Path.Combine(folder, "classifier.safetensors"));
        var scores = SampleQuality.Score(classifier, SubsetDataset.First(test, 2000));
        // 0.90+ on the whole test set (README); a 2,000-image slice keeps the test quick.
        Assert.That(scores.Agreement, Is.GreaterThanOrEqualTo(0.88));
        Assert.That(scores.AgreementPerClass.Min(), Is.GreaterThan(0.5));
    }
}
