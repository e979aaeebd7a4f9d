using System.Text;
using System.Text.Json;
using MaskBit.Cli;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;
using MaskBit.Tests.Data;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Perceptual;

namespace MaskBit.Tests.Training;

/// <summary>Stage-I training on a tiny tokenizer (hidden 32, channel_mult [1, 2], 8 bits) over a folder of
/// synthetic 16×16 images the test writes, through <see cref="TokenizerTrainer"/> and the CLI.</summary>
[TestFixture]
public class TokenizerTrainerTests
{
    private TrainingTestFolder _folder = null!;

    /// <summary>The GAN term and the discriminator start at step 2 (0-based), so short runs cover both steps,
    /// the adaptive weight and LeCAM.</summary>
    internal const string TinyConfig = """
        experiment:
            name: "tiny"
            save_every: 1000
            generate_every: 1000
            eval_every: 0
            log_every: 1
            resume: True
        model:
            vq_model:
                quantizer_type: "lookup-free"
                codebook_size: 256
                token_size: 8
                commitment_cost: 0.25
                entropy_loss_weight: 0.02
                entropy_loss_temperature: 0.01
                entropy_gamma: 1.0
                num_channels: 3
                hidden_channels: 32
                channel_mult: [1, 2]
                num_resolutions: 2
                num_res_blocks: 1
            discriminator:
                name: "VQGAN+Discriminator"
                num_channels: 3
                num_stages: 1
                hidden_channels: 32
                blur_resample: False
        losses:
            quantizer_weight: 1.0
            perceptual_loss: "resnet50"
            perceptual_weight: 0.0
            reconstruction_loss: "l2"
            reconstruction_weight: 4.0
            discriminator_start: 2
            discriminator_loss: "hinge"
            discriminator_factor: 1.0
            discriminator_weight: 0.1
            discriminator_gradient_penalty: "adopt_weight"
            lecam_regularization_weight: 0.001
            entropy_annealing_steps: 10
            entropy_annealing_factor: 2.0
        dataset:
            params:
                train_shards_path_or_url: "IMAGES"
                num_workers_per_gpu: 1
            preprocessing:
                resolution: 16
                use_aspect_ratio_aug: False
                use_random_crop: False
                min_scale: 1.0
        optimizer:
            name: adamw
            params:
                learning_rate: 2e-3
                discriminator_learning_rate: 1e-3
                beta1: 0.9
                beta2: 0.99
                weight_decay: 1e-4
                epsilon: 1e-8
        lr_scheduler:
            scheduler: "cosine_with_minimum"
            params:
                warmup_steps: 1
        training:
            gradient_accumulation_steps: 1
            per_gpu_batch_size: 4
            use_ema: True
            seed: 7
            max_train_steps: 4
            num_generated_images: 2
            max_grad_norm: 1.0
        """;

    [OneTimeSetUp]
    public void WriteImagesAndConfig() => _folder = new TrainingTestFolder(TinyConfig, 12, i => TestImages.Gradient(16, 16, 3, phase: 37 * i));

    [OneTimeTearDown]
    public void Cleanup() => _folder.Dispose();

    private string NewRunDir() => _folder.NewRunDir();

    private TokenizerTrainer Trainer(string output, Action<TrainingStepReport>? onStep = null, params string[] overrides) =>
        new(MaskBitConfig.Load(_folder.Config, overrides), new TokenizerTrainerOptions { OutputDir = output, OnStep = onStep });

    private static List<Dictionary<string, double?>> Metrics(string runDir) =>
        File.ReadAllLines(new RunFolder(runDir).MetricsPath)
            .Select(line => JsonSerializer.Deserialize<Dictionary<string, double?>>(line)!)
            .ToList();

    private static (int Code, string Out, string Err) Cli(params string[] args) => TrainingTestFolder.Cli(args);

    [Test]
    public void FewStepsLogFiniteLossesCheckpointAndGrid()
    {
        string run = NewRunDir();
        using (var trainer = Trainer(run, null, "experiment.generate_every=2", "experiment.log_grad_norm_every=4", "experiment.logger=tensorboard"))
        {
            var result = trainer.Run();
            Assert.That(result.Outcome, Is.EqualTo(TrainingOutcome.Completed));
            Assert.That(result.Step, Is.EqualTo(4));
        }
        var lines = Metrics(run);
        Assert.That(lines.Select(l => l["step"]), Is.EqualTo(new double?[] { 1, 2, 3, 4 }));
        foreach (var key in new[] { "total_loss", "reconstruction_loss", "quantizer_loss", "commitment_loss", "entropy_loss", "weighted_gan_loss", "lr", "it_per_s", "grad_norm" })
            Assert.That(lines.All(l => l[key] is { } v && double.IsFinite(v)), $"{key} logged and finite on every line");
        Assert.That(lines[0].ContainsKey("discriminator_loss"), Is.False, "no discriminator step before discriminator_start");
        Assert.That(lines[2]["discriminator_loss"], Is.Not.Null, "the discriminator trains from step 3 on");
        Assert.That(lines[3]["weighted_gan_loss"], Is.Not.EqualTo(0.0), "the GAN term is active after discriminator_start");
        Assert.That(File.Exists(new RunFolder(run).CheckpointPath(4)));
        Assert.That(File.Exists(new RunFolder(run).ConfigPath));

        var grid = ImageIO.Read(new RunFolder(run).SamplesPath(2));
        Assert.That((grid.Height, grid.Width), Is.EqualTo((2 + 2 * 18, 2 + 2 * 18)), "2 originals above their 2 reconstructions");

        // experiment.log_grad_norm_every: the tokenizer's parameters at step 4 only; experiment.logger: an event file.
        Assert.That(lines[2].Keys.Any(k => k.StartsWith("grad_norm/")), Is.False);
        Assert.That(lines[3].Keys.Where(k => k.StartsWith("grad_norm/")).ToList(), Does.Contain("grad_norm/encoder.conv_in.weight").Or.Count.GreaterThan(10));
        var events = Directory.GetFiles(new RunFolder(run).TensorBoardDir, "events.out.tfevents.*");
        Assert.That(events, Has.Length.EqualTo(1));
        Assert.That(Encoding.UTF8.GetString(File.ReadAllBytes(events[0])), Does.Contain("Train Reconstruction").And.Contain("reconstruction_loss"));
    }

    [Test]
    public void TamingsPatchGanTrainsAndCheckpointsItsBatchNormStatistics()
    {
        string run = NewRunDir();
        using (var trainer = Trainer(run, null, "model.discriminator.name=Original", "model.discriminator.hidden_channels=8",
                   "model.discriminator.num_stages=2", "losses.discriminator_start=0", "training.max_train_steps=1"))
        {
            Assert.That(trainer.Loss.Discriminator, Is.InstanceOf<PatchGanDiscriminator>());
            Assert.That(trainer.Run().Outcome, Is.EqualTo(TrainingOutcome.Completed));
        }
        Assert.That(Metrics(run)[0]["discriminator_loss"] is { } d && double.IsFinite(d), "the discriminator trained");
        var checkpoint = CheckpointFile.Load(new RunFolder(run).CheckpointPath(1));
        // Train-mode forwards (the generator's GAN term, then real and fake images) each count a batch.
        Assert.That(checkpoint[$"module.{TokenizerStep.LossPart}.discriminator.main.3.num_batches_tracked"].ToTensor().ToIntArray()[0], Is.EqualTo(3));
        Assert.That(checkpoint[$"module.{TokenizerStep.LossPart}.discriminator.main.3.running_mean"].ToTensor().ToArray(), Has.Some.Not.EqualTo(0f));
    }

    [Test]
    public void LossGoesDownWhenOverfittingOneBatch()
    {
        string run = NewRunDir();
        using (var trainer = Trainer(run, null, "training.overfit_batch=true", "training.max_train_steps=30", "losses.discriminator_start=1000",
                   "training.use_ema=false", "lr_scheduler.params.warmup_steps=0"))
            trainer.Run();
        var reconstruction = Metrics(run).Select(l => l["reconstruction_loss"]!.Value).ToList();
        Assert.That(reconstruction, Has.Count.EqualTo(30));
        Assert.That(reconstruction.TakeLast(3).Average(), Is.LessThan(0.5 * reconstruction.Take(3).Average()),
            $"reconstruction loss falls: {string.Join(", ", reconstruction.Select(r => r.ToString("F4")))}");
    }

    [Test]
    public void FinetuneDecoderTrainsOnlyTheDecoderSoTheTokensStay()
    {
        string start = NewRunDir();
        using (var trainer = Trainer(start, null, "training.max_train_steps=2")) trainer.Run();
        string startCheckpoint = new RunFolder(start).CheckpointPath(2), tuned = NewRunDir();
        using (var trainer = Trainer(tuned, null, "training.max_train_steps=5", "training.finetune_decoder=true", "losses.discriminator_start=3",
                   $"experiment.init_checkpoint={startCheckpoint}"))
            Assert.That(trainer.Run().Outcome, Is.EqualTo(TrainingOutcome.Completed));

        var before = CheckpointFile.Load(startCheckpoint);
        var after = CheckpointFile.Load(new RunFolder(tuned).CheckpointPath(5));
        string prefix = $"module.{TokenizerStep.ModelPart}.";
        var encoder = after.Names.Where(k => k.StartsWith(prefix + "encoder.", StringComparison.Ordinal)).ToList();
        var decoder = after.Names.Where(k => k.StartsWith(prefix + "decoder.", StringComparison.Ordinal)).ToList();
        Assert.That(encoder, Is.Not.Empty);
        foreach (var key in encoder) Assert.That(after[key].ToTensor().ToArray(), Is.EqualTo(before[key].ToTensor().ToArray()), key);
        Assert.That(decoder.Any(key => !after[key].ToTensor().ToArray().SequenceEqual(before[key].ToTensor().ToArray())), "the decoder trained");
        var lines = Metrics(tuned);
        Assert.That(lines.Select(l => l["quantizer_loss"]), Is.All.EqualTo(0.0), "the quantizer's losses are zero, as the reference's _finetuning_encoder_forward");
        Assert.That(lines[^1]["weighted_gan_loss"], Is.Not.EqualTo(0.0), "the GAN term trains the decoder");
    }

    [Test]
    public void InterruptedRunResumesExactlyLikeTheUninterruptedOne()
    {
        string[] settings = { "training.max_train_steps=6", "training.gradient_accumulation_steps=2" };
        string whole = NewRunDir();
        using (var trainer = Trainer(whole, null, settings)) trainer.Run();

        string interrupted = NewRunDir();
        using var stop = new CancellationTokenSource();
        using (var trainer = Trainer(interrupted, r => { if (r.Step == 3) stop.Cancel(); }, settings))
        {
            var result = trainer.Run(stop.Token);
            Assert.That(result.Outcome, Is.EqualTo(TrainingOutcome.Cancelled));
            Assert.That(result.Step, Is.EqualTo(3));
            Assert.That(result.LastCheckpoint, Does.EndWith("checkpoint-3.safetensors"));
        }
        using (var trainer = Trainer(interrupted, null, settings))
            Assert.That(trainer.Run().Outcome, Is.EqualTo(TrainingOutcome.Completed));

        var expected = Metrics(whole);
        var actual = Metrics(interrupted);
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        for (int i = 0; i < expected.Count; i++)
            foreach (var (key, value) in expected[i])
                if (key is not ("it_per_s" or "samples_per_s"))
                    Assert.That(actual[i][key], Is.EqualTo(value), $"step {i + 1}: {key}");

        var finalWhole = SafeTensors.Load(new RunFolder(whole).CheckpointPath(6));
        var finalResumed = SafeTensors.Load(new RunFolder(interrupted).CheckpointPath(6));
        foreach (var record in finalWhole)
            Assert.That(finalResumed[record.Name].Data, Is.EqualTo(record.Data), record.Name);
    }

    /// <summary>A run folder of the first layout (checkpoints beside metrics.jsonl) with a first-revision checkpoint
    /// resumes exactly: the final weights equal those of the uninterrupted run.</summary>
    [Test]
    public void FirstLayoutRunFolderWithFirstRevisionCheckpointResumesExactly()
    {
        string[] settings = { "training.max_train_steps=4" };
        string whole = NewRunDir();
        using (var trainer = Trainer(whole, null, settings)) trainer.Run();

        string old = NewRunDir();
        using (var trainer = Trainer(old, null, "training.max_train_steps=4", "experiment.save_every=2"))
            trainer.Run();
        var folder = new RunFolder(old);
        string moved = Path.Combine(old, "checkpoint-2.safetensors");
        File.Move(folder.CheckpointPath(2), moved);
        Directory.Delete(folder.CheckpointsDir, recursive: true);
        MaskBit.Tests.Interop.TrainingCheckpointTests.RewriteAsFirstRevision(moved,
            new ConvVQModel(TokenizerConfig.From(MaskBitConfig.Load(_folder.Config))), TokenizerStep.ModelPart);
        Assert.That(folder.LatestCheckpoint(), Is.EqualTo(moved));

        var log = new StringWriter();
        using (var trainer = new TokenizerTrainer(MaskBitConfig.Load(_folder.Config, settings), new TokenizerTrainerOptions { OutputDir = old, Log = log }))
            Assert.That(trainer.Run().Outcome, Is.EqualTo(TrainingOutcome.Completed));
        Assert.That(log.ToString(), Does.Contain($"resumed from {moved} at step 2"));
        var a = SafeTensors.Load(new RunFolder(whole).CheckpointPath(4));
        var b = SafeTensors.Load(folder.CheckpointPath(4));
        foreach (var record in a) Assert.That(b[record.Name].Data, Is.EqualTo(record.Data), record.Name);
        Assert.That(Metrics(old).Select(l => l["step"]), Is.EqualTo(new double?[] { 1, 2, 3, 4 }), "lines past the resumed step dropped");
    }

    [Test]
    public void NonFiniteLossStopsNamingTermAndStepAndKeepsTheLastCheckpoint()
    {
        string run = NewRunDir();
        var (code, _, error) = Cli("train", "tokenizer", "--config", _folder.Config, "--out", run, "training.max_train_steps=2");
        Assert.That(code, Is.EqualTo(0), error);

        // An absurd learning rate blows the weights up on the first resumed step; the next loss overflows.
        (code, _, error) = Cli("train", "tokenizer", "--config", _folder.Config, "--out", run, "training.max_train_steps=8", "optimizer.params.learning_rate=1e30");
        Assert.That(code, Is.EqualTo(Program.ExitFailed), error);
        Assert.That(error, Does.Match(@"training stopped: \w+.* is (NaN|-?Infinity|∞|-∞) at step [4-8]"));
        Assert.That(error, Does.Contain("checkpoint-2.safetensors"));
        TestContext.Out.WriteLine(error);
        Assert.That(new RunFolder(run).LatestCheckpoint(), Does.EndWith("checkpoint-2.safetensors"), "nothing of the diverged steps was saved");
        var model = new ConvVQModel(TokenizerConfig.From(MaskBitConfig.Load(_folder.Config)));
        Assert.That(PretrainedModels.LoadTokenizerWeights(model, new RunFolder(run).LatestCheckpoint()!).Source, Is.EqualTo(WeightsSource.TrainingEma));
        Assert.That(model.Parameters().All(p => p.ToArray().All(float.IsFinite)));
    }

    [Test]
    public void BadConfigKeyFailsNamingTheKey()
    {
        var (code, _, error) = Cli("train", "tokenizer", "--config", _folder.Config, "training.max_train_stepz=3");
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(error, Does.Contain("training.max_train_stepz").And.Contain("did you mean 'training.max_train_steps'"));

        string typo = _folder.WriteConfig("typo.yaml", TinyConfig.Replace("num_res_blocks: 1", "num_res_block: 1"));
        (code, _, error) = Cli("train", "tokenizer", "--config", typo, "--out", NewRunDir());
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(error, Does.Contain("model.vq_model.num_res_block'"));
    }

    [Test]
    public void PerceptualWeightWithoutWeightsFileStopsNamingTheFile()
    {
        string run = NewRunDir();
        var (code, _, error) = Cli("train", "tokenizer", "--config", _folder.Config, "--out", run, "losses.perceptual_weight=0.1");
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(error, Does.Contain("resnet50-0676ba61.pth").And.Contain("https://download.pytorch.org/models/")
            .And.Contain("--perceptual-weights"));

        (code, var output, error) = Cli("train", "tokenizer", "--config", _folder.Config, "--out", run, "--allow-no-perceptual",
            "losses.perceptual_weight=0.1", "training.max_train_steps=1");
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(output, Does.Contain("perceptual term off"));
    }

    /// <summary>LPIPS (cheap on 16×16 images) from a torchvision-layout VGG16 file (features.N, classifier.N) and an
    /// LPIPS heads file, both with the formula weights of `formula_nets`: the term trains; missing, swapped or too
    /// few files stop with exit 2 naming the expected file.</summary>
    [Test]
    public void LpipsPerceptualTermTrainsFromTorchvisionAndLpipsFiles()
    {
        var (vgg, heads) = LpipsWeightFiles(_folder.Directory);
        string[] lpips = ["losses.perceptual_loss=lpips", "losses.perceptual_weight=0.1", "training.max_train_steps=1"];

        string run = NewRunDir();
        var (code, _, error) = Cli(["train", "tokenizer", "--config", _folder.Config, "--out", run, "--perceptual-weights", $"{vgg},{heads}", .. lpips]);
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(Metrics(run).Last()["perceptual_loss"], Is.GreaterThan(0));

        (code, _, error) = Cli(["train", "tokenizer", "--config", _folder.Config, "--out", NewRunDir(), "--perceptual-weights", $"{heads},{vgg}", .. lpips]);
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(error, Does.Contain("is not torchvision's VGG16").And.Contain("https://download.pytorch.org/models/vgg16-397923af.pth"));

        (code, _, error) = Cli(["train", "tokenizer", "--config", _folder.Config, "--out", NewRunDir(), "--perceptual-weights", vgg, .. lpips]);
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(error, Does.Contain("vgg.pth").And.Contain("PerceptualSimilarity"));

        (code, _, error) = Cli(["train", "tokenizer", "--config", _folder.Config, "--out", NewRunDir(), .. lpips,
            $"losses.perceptual_weights={vgg},{_folder.File("missing.pth")}"]);
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(error, Does.Contain("missing.pth").And.Contain("expects vgg.pth"));
    }

    /// <summary>The two files of losses.perceptual_loss 'lpips' (a torchvision-layout VGG16 and the LPIPS heads)
    /// with the formula weights of `formula_nets`, written into <paramref name="dir"/> once.</summary>
    internal static (string Vgg, string Heads) LpipsWeightFiles(TempDirectory dir)
    {
        string vgg = dir.File("vgg16-features.safetensors"), heads = dir.File("lpips-heads.safetensors");
        if (File.Exists(heads)) return (vgg, heads);
        var formula = FormulaWeights.Build(Path.Combine(GoldenCases.RepoDir, "formula_nets", "lpips_params.json"),
            Npy.ReadNpz(Path.Combine(GoldenCases.RepoDir, "formula_nets", "io.npz")));
        var torchvision = formula.Where(kv => kv.Key.StartsWith("net.", StringComparison.Ordinal))
            // net.slice2.5.weight → features.5.weight; the classifier is dropped on loading
            .Select(kv => TensorRecord.FromTensor("features." + kv.Key.Split('.', 3)[2], kv.Value))
            .Append(TensorRecord.FromTensor("classifier.0.bias", Autograd.Tensor.Zeros(4)));
        SafeTensors.Save(vgg, torchvision.ToList());
        SafeTensors.Save(heads, formula.Where(kv => kv.Key.StartsWith("lin", StringComparison.Ordinal))
            .Select(kv => TensorRecord.FromTensor(kv.Key, kv.Value)).ToList());
        return (vgg, heads);
    }

    [Test]
    public void EvalAndReconstructWriteTheirFiles()
    {
        string run = NewRunDir();
        var (code, _, error) = Cli("train", "tokenizer", "--config", _folder.Config, "--out", run, "training.max_train_steps=1");
        Assert.That(code, Is.EqualTo(0), error);
        string weights = new RunFolder(run).CheckpointPath(1);

        string evalDir = _folder.File("eval");
        (code, var output, error) = Cli("eval", "tokenizer", "--config", _folder.Config, "--weights", weights, "--data", _folder.Images, "--max-images", "6", "--out", evalDir);
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(output, Does.Contain("PSNR").And.Contain("SSIM").And.Contain("CodebookUsage"));
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(evalDir, "metrics.json"))))
        {
            Assert.That(metrics.RootElement.GetProperty("PSNR").GetDouble(), Is.GreaterThan(0));
            Assert.That(metrics.RootElement.GetProperty("CodebookUsage").GetDouble(), Is.InRange(1.0 / 256, 1.0));
        }

        string reconDir = _folder.File("recon");
        string single = Path.Combine(_folder.Images, "class0", "img00.png");
        (code, _, error) = Cli("reconstruct", "--config", _folder.Config, "--weights", weights, "--no-ema",
            "--images", Path.Combine(_folder.Images, "class1"), single, "--out", reconDir);
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(Directory.GetFiles(reconDir, "img*.png"), Has.Length.EqualTo(7));
        var grid = ImageIO.Read(Path.Combine(reconDir, "grid.png"));
        Assert.That((grid.Height, grid.Width), Is.EqualTo((2 + 2 * 18, 2 + 7 * 18)));

        (code, _, error) = Cli("reconstruct", "--config", _folder.Config, "--weights", Path.Combine(run, "absent.bin"), "--images", single, "--out", reconDir);
        Assert.That(code, Is.EqualTo(Program.ExitBadFile));
        Assert.That(error, Does.Contain("absent.bin"));
    }

    [Test]
    public void FashionMnistConfigIsValid()
    {
        string? root = TestContext.CurrentContext.TestDirectory;
        while (root != null && !File.Exists(Path.Combine(root, "MaskBit.sln"))) root = Path.GetDirectoryName(root);
        Assert.That(root, Is.Not.Null, "repository root");
        var config = MaskBitConfig.Load(Path.Combine(root!, "configs", "fashion_mnist_tokenizer.yaml"), new[] { "training.max_train_steps=20" });
        var tokenizer = TokenizerConfig.From(config);
        Assert.That((tokenizer.QuantizerType, tokenizer.TokenSize, tokenizer.NumResolutions), Is.EqualTo(("lookup-free", 10, 3)));
        Assert.That(VqganLossConfig.From(config).PerceptualWeight, Is.Zero);
        Assert.That(DiscriminatorConfig.From(config).NumChannels, Is.EqualTo(3));
        var settings = TokenizerTrainingSettings.From(config);
        Assert.That((settings.MaxTrainSteps, settings.TrainSource), Is.EqualTo((20L, TrainingData.FashionMnistName)));
    }
}
