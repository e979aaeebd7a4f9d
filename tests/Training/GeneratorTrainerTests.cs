using System.Runtime.InteropServices;
using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Cli;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Tests.Training;

/// <summary>Stage-II training, sampling and their commands on a tiny random tokenizer (hidden 32, 2 resolutions,
/// 8 bits: 16×16 images → 8×8 tokens) and a tiny generator (hidden 32, depth 1, 2 heads, 2 splits), trained on
/// the first Fashion-MNIST images or, where the dataset is not installed, synthetic ones.</summary>
[NonParallelizable]
public class GeneratorTrainerTests
{
    internal const string TinyConfig = """
        experiment:
            name: "tiny"
            save_every: 1000
            generate_every: 1000
            log_every: 1
            resume: True
            max_train_examples: 64
        model:
            vq_model:
                quantizer_type: "lookup-free"
                codebook_size: 256
                token_size: 8
                num_channels: 3
                hidden_channels: 32
                channel_mult: [1, 1]
                num_resolutions: 2
                num_res_blocks: 1
            mlm_model:
                model_cls: "lfq_bert"
                hidden_dim: 32
                depth: 1
                heads: 2
                mlp_dim: 64
                dropout: 0.1
                guidance_scale: 2.0
                num_steps: 3
                train_mask_schedule_strategy: "arccos"
                gen_mask_schedule_strategy: "arccos"
                class_label_dropout: 0.1
                codebook_splits: 2
                nclass: 10
        losses:
            mlm:
                label_smoothing: 0.1
                sum_splits: False
        dataset:
            preprocessing:
                resolution: 16
                use_aspect_ratio_aug: False
                use_random_crop: False
                min_scale: 1.0
        optimizer:
            name: adamw
            params:
                learning_rate: 1e-3
                beta1: 0.9
                beta2: 0.96
                weight_decay: 0.045
                epsilon: 1e-8
        lr_scheduler:
            scheduler: "cosine_with_minimum"
            params:
                learning_rate: ${optimizer.params.learning_rate}
                warmup_steps: 2
        training:
            per_gpu_batch_size: 8
            use_ema: True
            seed: 3
            max_train_steps: 3
            num_generated_images: 2
            max_grad_norm: 1.0
        """;

    private string _dir = "";
    private string _configPath = "";
    private string _tokenizerPath = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "maskbit-gen-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        _configPath = Path.Combine(_dir, "tiny.yaml");
        File.WriteAllText(_configPath, TinyConfig);
        _tokenizerPath = Path.Combine(_dir, "tokenizer.safetensors");
        var tokenizer = new ConvVQModel(TokenizerConfig.From(MaskBitConfig.Load(_configPath)), seed: 11);
        SafeTensors.Save(_tokenizerPath, tokenizer.StateDict().Select(kv => Record(kv.Name, kv.Tensor)).ToList());
    }

    [TearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { /* best effort */ }
    }

    internal static TensorRecord Record(string name, Tensor t) => t.DType == Kernels.DType.Int32
        ? new TensorRecord(name, TensorDType.Int32, t.Shape, MemoryMarshal.AsBytes(t.ToIntArray().AsSpan()).ToArray())
        : TensorRecord.FromFloats(name, t.ToArray(), t.Shape);

    /// <summary>Fashion-MNIST when installed, else 64 synthetic 32×32 images whose pattern depends on the label.</summary>
    internal static (IImageDataset, string) Data()
    {
        try { return (new FashionMnist(padTo32: true, channels: 3), "fashion"); }
        catch (IOException) { return (new SyntheticImages(), "synthetic"); }
    }

    /// <summary>The first <paramref name="count"/> samples of a dataset (with a key the token cache tells apart).</summary>
    internal static (IImageDataset, string) First((IImageDataset Dataset, string Key) data, int count) =>
        (SubsetDataset.First(data.Dataset, count), $"{data.Key}[:{count}]");

    private sealed class SyntheticImages : IImageDataset
    {
        public int Count => 64;
        public string KeyOf(int index) => $"synthetic/{index}";
        public RawSample Load(int index)
        {
            var image = new HostImage(32, 32, 3);
            int label = index % 10;
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    for (int c = 0; c < 3; c++)
                        image.Pixels[(y * 32 + x) * 3 + c] = (byte)(((x + y * label + index) % (label + 2)) * 255 / (label + 1));
            return new RawSample(image, label, KeyOf(index));
        }
    }

    private GeneratorTrainer Trainer(string outDir, IEnumerable<string>? overrides = null, Action<TrainingStepReport>? onStep = null,
        bool cache = true, TextWriter? log = null, int? samples = null) =>
        new(MaskBitConfig.Load(_configPath, overrides), new GeneratorTrainerOptions
        {
            OutputDir = outDir, TokenizerPath = _tokenizerPath, Dataset = samples is { } n ? First(Data(), n) : Data(), CacheTokens = cache, DataWorkers = 1,
            OnStep = onStep, Log = log ?? TextWriter.Null,
        });

    [Test]
    public void AFewStepsLogFiniteLossesAndWriteCheckpointWeightsAndTokenCache()
    {
        string run = Path.Combine(_dir, "run");
        // 24 samples: the 3 steps see each once, which completes the token cache.
        var overrides = new[] { "experiment.generate_every=3" };
        var result = Trainer(run, overrides, samples: 24).Run();
        Assert.That(result.Step, Is.EqualTo(3));
        Assert.That(result.Outcome, Is.EqualTo(TrainingOutcome.Completed));
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl"));
        Assert.That(lines, Has.Length.EqualTo(3));
        foreach (var line in lines)
        {
            var json = JsonDocument.Parse(line).RootElement;
            foreach (var key in new[] { "train/mlm_loss", "train/masked_token_loss", "train/correct_tokens", "grad_norm", "lr" })
                Assert.That(double.IsFinite(json.GetProperty(key).GetDouble()), key);
        }
        Assert.That(JsonDocument.Parse(lines[0]).RootElement.GetProperty("lr").GetDouble(), Is.EqualTo(0), "warm-up starts at lr 0");
        Assert.That(File.Exists(Path.Combine(run, "checkpoints", "checkpoint-3.safetensors")));
        Assert.That(File.Exists(Path.Combine(run, "samples", "step-3.png")));
        var grid = ImageIO.Read(Path.Combine(run, "samples", "step-3.png"));
        Assert.That(grid.Height, Is.EqualTo(10 * (16 + 2) + 2), "one row per class");
        Assert.That(File.Exists(Path.Combine(run, GeneratorTrainer.WeightsFileName)));
        var cache = Npy.ReadNpz(Path.Combine(run, CachedTokenBatches.FileName));
        Assert.That(cache["tokens"].Shape, Is.EqualTo(new[] { 24, 64 }));
        Assert.That(cache["labels"].Shape, Is.EqualTo(new[] { 24 }));

        // A second run in the same folder reuses the cache (and, with resume off, starts afresh).
        var log = new StringWriter();
        Trainer(run, overrides.Append("experiment.resume=false").Append("training.max_train_steps=1"), log: log, samples: 24).Run();
        Assert.That(log.ToString(), Does.Contain("token cache: reusing"));
    }

    [Test]
    public void MlmLossFallsWhenOverfittingOneBatch()
    {
        var losses = new List<float>();
        Trainer(Path.Combine(_dir, "overfit"), new[]
        {
            "training.overfit_batch=true", "training.max_train_steps=40", "lr_scheduler.params.warmup_steps=0",
            "lr_scheduler.scheduler=constant", "optimizer.params.learning_rate=3e-3", "model.mlm_model.dropout=0.0",
            "training.use_ema=false",
        }, s => losses.Add((float)s.Loss)).Run();
        float first = losses.Take(5).Average(), last = losses.TakeLast(5).Average();
        Assert.That(last, Is.LessThan(first * 0.8f), $"loss {first} → {last}");
    }

    [Test]
    public void InterruptedAndResumedTrainingEqualsUninterruptedBitForBit()
    {
        // On-the-fly tokens with random crops and dropout: every random source must resume exactly.
        var overrides = new[]
        {
            "training.max_train_steps=6", "dataset.preprocessing.use_random_crop=true", "dataset.preprocessing.min_scale=0.8",
        };
        string straight = Path.Combine(_dir, "straight"), resumed = Path.Combine(_dir, "resumed");
        Trainer(straight, overrides, cache: false).Run();

        using var cancel = new CancellationTokenSource();
        var first = Trainer(resumed, overrides, s => { if (s.Step == 4) cancel.Cancel(); }, cache: false).Run(cancel.Token);
        Assert.That(first.Outcome, Is.EqualTo(TrainingOutcome.Cancelled));
        Assert.That(first.Step, Is.EqualTo(4));
        var second = Trainer(resumed, overrides, cache: false).Run();
        Assert.That(second.Step, Is.EqualTo(6));

        var a = SafeTensors.Load(Path.Combine(straight, "checkpoints", "checkpoint-6.safetensors"));
        var b = SafeTensors.Load(Path.Combine(resumed, "checkpoints", "checkpoint-6.safetensors"));
        Assert.That(b.Names, Is.EqualTo(a.Names));
        Assert.That(a.Names.Any(n => n.StartsWith("ema.")) && a.Names.Any(n => n.StartsWith("optim.")));
        foreach (var name in a.Names)
            Assert.That(b[name].Data, Is.EqualTo(a[name].Data), name);
        Assert.That(b.Metadata.First(kv => kv.Key == "rng.model").Value, Is.EqualTo(a.Metadata.First(kv => kv.Key == "rng.model").Value));
        var lossesA = File.ReadAllLines(Path.Combine(straight, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("train/mlm_loss").GetDouble());
        var lossesB = File.ReadAllLines(Path.Combine(resumed, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("train/mlm_loss").GetDouble());
        Assert.That(lossesB, Is.EqualTo(lossesA));
    }

    [Test]
    public void NonFiniteLossStopsNamingTheStep()
    {
        var trainer = Trainer(Path.Combine(_dir, "nan"));
        trainer.Generator.PosEmb.Fill_(float.NaN);
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Run());
        Assert.That(e!.Message, Does.Contain("step 1").And.Contain("NaN"));
    }

    private (int Code, string Out, string Err) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Test]
    public void GenerateWritesPngsGridAndSamplesAndRepeatsForASeed()
    {
        string run = Path.Combine(_dir, "run");
        var trainer = Trainer(run, new[] { "training.max_train_steps=2" });
        var result = trainer.Run();
        string outA = Path.Combine(_dir, "a"), outB = Path.Combine(_dir, "b");
        string[] Args(string output, string weights) => new[]
        {
            "generate", "--config", _configPath, "--tokenizer", _tokenizerPath, "--generator", weights, "--classes", "1,7",
            "--per-class", "2", "--steps", "2", "--seed", "5", "--out", output,
        };
        var (code, stdout, stderr) = Cli(Args(outA, trainer.WeightsPath));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("4 samples"));
        Assert.That(Directory.GetFiles(outA, "class*.png"), Has.Length.EqualTo(4));
        var grid = ImageIO.Read(Path.Combine(outA, "grid.png"));
        Assert.That((grid.Height, grid.Width), Is.EqualTo((2 * 18 + 2, 2 * 18 + 2)), "a row per class, a column per sample");
        var samples = Npy.ReadNpz(Path.Combine(outA, "samples.npz"));
        Assert.That(samples["images"].Type, Is.EqualTo(NpyType.Float32));
        Assert.That(samples["images"].Shape, Is.EqualTo(new[] { 4, 3, 16, 16 }));
        Assert.That(samples["images"].ToFloat32(), Has.All.InRange(0f, 1f));
        Assert.That(samples["labels"].Type, Is.EqualTo(NpyType.Int64));
        Assert.That(samples["labels"].ToInt64(), Is.EqualTo(new long[] { 1, 1, 7, 7 }));
        Assert.That(samples["tokens"].Type, Is.EqualTo(NpyType.Int64));
        Assert.That(samples["tokens"].Shape, Is.EqualTo(new[] { 4, 64 }));
        Assert.That(samples["tokens"].ToInt64(), Has.All.InRange(0L, 255L));

        // The same seed from the training checkpoint (its EMA weights, which generator.safetensors holds) gives the same samples.
        (code, _, stderr) = Cli(Args(outB, result.LastCheckpoint!));
        Assert.That(code, Is.EqualTo(0), stderr);
        var again = Npy.ReadNpz(Path.Combine(outB, "samples.npz"));
        Assert.That(again["images"].ToFloat32(), Is.EqualTo(samples["images"].ToFloat32()));
        Assert.That(again["tokens"].ToInt64(), Is.EqualTo(samples["tokens"].ToInt64()));

        (code, stdout, stderr) = Cli("eval", "generator", "--config", _configPath, "--tokenizer", _tokenizerPath, "--generator", trainer.WeightsPath,
            "--num-images", "3", "--steps", "2", "--out", Path.Combine(_dir, "eval"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("images/s").And.Contain("gFID and InceptionScore not computed"));
    }

    [Test]
    public void BadFlagsAndFilesGiveClearErrors()
    {
        string missing = Path.Combine(_dir, "missing.bin"), generator = Path.Combine(_dir, "generator.safetensors");
        SafeTensors.Save(generator, new MaskedGenerator(GeneratorConfig.From(MaskBitConfig.Load(_configPath))).StateDict().Select(kv => Record(kv.Name, kv.Tensor)).ToList());
        string[] Generate(params string[] extra) => new[]
        {
            "generate", "--config", _configPath, "--tokenizer", _tokenizerPath, "--generator", generator, "--out", Path.Combine(_dir, "x"),
        }.Concat(extra).ToArray();

        var r = Cli(Generate());
        Assert.That(r.Code, Is.EqualTo(Program.ExitUsage));
        Assert.That(r.Err, Does.Contain("--classes"));
        r = Cli(Generate("--classes", "1,x"));
        Assert.That((r.Code, r.Err.Contains("--classes") && r.Err.Contains("'x'")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
        r = Cli(Generate("--classes", "1", "--per-class", "0"));
        Assert.That((r.Code, r.Err.Contains("--per-class")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
        r = Cli(Generate("--classes", "1", "--steps", "0"));
        Assert.That((r.Code, r.Err.Contains("--steps")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
        r = Cli(Generate("--classes", "1", "--guidance", "-1"));
        Assert.That((r.Code, r.Err.Contains("--guidance")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
        r = Cli(Generate("--classes", "12"));
        Assert.That((r.Code, r.Err.Contains("class 12")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
        r = Cli("generate", "--config", _configPath, "--tokenizer", missing, "--generator", _tokenizerPath, "--classes", "1", "--out", _dir);
        Assert.That((r.Code, r.Err.Contains("--tokenizer") && r.Err.Contains(missing)), Is.EqualTo((Program.ExitBadFile, true)), r.Err);
        r = Cli("generate", "--config", _configPath, "--tokenizer", _tokenizerPath, "--generator", _tokenizerPath, "--classes", "1", "--out", _dir);
        Assert.That((r.Code, r.Err.Contains(_tokenizerPath) && r.Err.Contains("MaskedGenerator")), Is.EqualTo((Program.ExitBadFile, true)), r.Err);

        r = Cli("train", "generator", "--config", _configPath, "--tokenizer", _tokenizerPath, "training.max_train_stpes=2", "--out", _dir);
        Assert.That((r.Code, r.Err.Contains("max_train_stpes")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
        r = Cli("train", "generator", "--config", Path.Combine(_dir, "none.yaml"), "--tokenizer", _tokenizerPath);
        Assert.That((r.Code, r.Err.Contains("none.yaml")), Is.EqualTo((Program.ExitBadFile, true)), r.Err);
        r = Cli("train", "generator", "--config", _configPath);
        Assert.That((r.Code, r.Err.Contains("--tokenizer")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
        r = Cli("eval", "generator", "--config", _configPath, "--tokenizer", _tokenizerPath, "--generator", _tokenizerPath, "--fid-stats", _tokenizerPath);
        Assert.That((r.Code, r.Err.Contains("--inception-weights")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
    }
}
