using System.Runtime.InteropServices;
using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Cli;
using MaskBit.Cli.Commands;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Metrics;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Data;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Perceptual;

namespace MaskBit.Tests.Cli;

/// <summary>`eval tokenizer` / `eval generator` with the FID InceptionV3 (the deterministic formula weights of the
/// golden `formula_nets` case, saved as safetensors), `reconstruct --input X.npz`, --checkpoint / --weights and
/// --non-strict on the generator commands. Models: the golden tokenizer_lfq (32×32) and a tiny random generator.
/// The Inception paths run on 2–4 tiny images: they check the wiring, not the values.</summary>
[NonParallelizable]
public class EvalToolsTests
{
    internal const string GeneratorConfig = """
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
                hidden_dim: 16
                depth: 1
                heads: 2
                mlp_dim: 32
                num_steps: 2
                guidance_scale: 0.0
                codebook_splits: 2
                nclass: 10
        dataset:
            preprocessing:
                resolution: 16
        """;

    private TempDirectory _dir = null!;
    private string _tokenizerConfig = null!, _tokenizerWeights = null!, _images = null!, _inception = null!;
    private string _generatorConfig = null!, _generatorTokenizer = null!, _generator = null!;

    [OneTimeSetUp]
    public void WriteFixtures()
    {
        _dir = new TempDirectory();
        string golden = Path.Combine(GoldenCases.RepoDir, "tokenizer_lfq");
        _tokenizerConfig = Path.Combine(golden, "config.yaml");
        _tokenizerWeights = Path.Combine(golden, "model.bin");
        _images = _dir.File("images");
        for (int i = 0; i < 4; i++) ImageIO.Write(_dir.File("images", "class0", $"img{i}.png"), TestImages.Gradient(32, 32, 3, phase: 53 * i));

        // pytorch-fid's files come from a torch version that may or may not store BatchNorm's num_batches_tracked; leave it out.
        _inception = _dir.File("inception.safetensors");
        using (TensorScope.Begin())
            SafeTensors.Save(_inception, FormulaWeights.Build(Path.Combine(GoldenCases.RepoDir, "formula_nets", "inception_params.json"))
                .Where(kv => !kv.Key.EndsWith(".num_batches_tracked", StringComparison.Ordinal)).Select(kv => Record(kv.Key, kv.Value)).ToList());

        _generatorConfig = _dir.File("generator.yaml");
        File.WriteAllText(_generatorConfig, GeneratorConfig);
        var config = MaskBitConfig.Load(_generatorConfig);
        _generatorTokenizer = _dir.File("tokenizer.safetensors");
        SafeTensors.Save(_generatorTokenizer, new ConvVQModel(TokenizerConfig.From(config), seed: 5).StateDict().Select(kv => Record(kv.Name, kv.Tensor)).ToList());
        _generator = _dir.File("generator.safetensors");
        SafeTensors.Save(_generator, new MaskedGenerator(Models.Generator.GeneratorConfig.From(config), seed: 6).StateDict().Select(kv => Record(kv.Name, kv.Tensor)).ToList());
    }

    [OneTimeTearDown]
    public void Cleanup() => _dir.Dispose();

    private static TensorRecord Record(string name, Tensor t) => t.DType == Kernels.DType.Int32
        ? new TensorRecord(name, TensorDType.Int32, t.Shape, MemoryMarshal.AsBytes(t.ToIntArray().AsSpan()).ToArray())
        : TensorRecord.FromFloats(name, t.ToArray(), t.Shape);

    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static Dictionary<string, double> ReadMetrics(string dir) =>
        JsonSerializer.Deserialize<Dictionary<string, double>>(File.ReadAllText(Path.Combine(dir, "metrics.json")))!;

    [Test]
    public void EvalTokenizerComputesRfidAndInceptionScoreWithTheInceptionWeights()
    {
        string outDir = _dir.File("eval-inception");
        var (code, stdout, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, "--checkpoint", _tokenizerWeights, "--data", _images,
            "--max-images", "2", "--inception-weights", _inception, "--out", outDir);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("rFID").And.Contain("InceptionScore").And.Contain("(1 split)").And.Not.Contain("not computed"));
        var metrics = ReadMetrics(outDir);
        Assert.That(metrics["rFID"], Is.GreaterThan(-1e-6).And.Not.NaN);
        Assert.That(metrics["InceptionScore"], Is.InRange(1.0, 2.0), "IS of 2 images");
        Assert.That(metrics["InceptionScoreSplits"], Is.EqualTo(1));
        Assert.That(metrics["InceptionScoreStd"], Is.GreaterThanOrEqualTo(0));
        Assert.That(metrics["PSNR"], Is.GreaterThan(0));
    }

    [Test]
    public void EvalTokenizerWithoutInceptionWeightsSaysWhatIsMissing()
    {
        string outDir = _dir.File("eval-plain");
        var (code, stdout, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, "--weights", _tokenizerWeights, "--data", _images,
            "--max-images", "2", "--out", outDir);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("PSNR").And.Contain("rFID and InceptionScore not computed").And.Contain("--inception-weights"));
        Assert.That(ReadMetrics(outDir).Keys, Has.None.EqualTo("rFID"));
    }

    [Test]
    public void WrongInceptionWeightsAreAnErrorNamingTheFile()
    {
        var (code, _, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, "--checkpoint", _tokenizerWeights, "--data", _images,
            "--inception-weights", _tokenizerWeights, "--out", _dir.File("eval-bad"));
        Assert.That(code, Is.EqualTo(Program.ExitBadFile));
        Assert.That(stderr, Does.Contain(_tokenizerWeights).And.Contain("FID InceptionV3").And.Contain("missing key 'Conv2d_1a_3x3.conv.weight'"));

        (code, _, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, "--checkpoint", _tokenizerWeights, "--data", _images,
            "--inception-weights", _inception, "--max-images", "1");
        Assert.That((code, stderr.Contains("at least 2 images")), Is.EqualTo((Program.ExitUsage, true)), stderr);
    }

    [Test]
    public void EvalGeneratorReportsGfidInceptionScoreAndSpeed()
    {
        string stats = _dir.File("stats.npz");
        var sigma = new double[2048 * 2048];
        for (int i = 0; i < 2048; i++) sigma[i * 2048 + i] = 1;
        Npy.WriteNpz(stats, new Dictionary<string, NpyArray>
        {
            ["mu"] = new(NpyType.Float64, new[] { 2048 }, new byte[2048 * 8]),
            ["sigma"] = new(NpyType.Float64, new[] { 2048, 2048 }, MemoryMarshal.AsBytes(sigma.AsSpan()).ToArray()),
        });
        string outDir = _dir.File("eval-generator");
        var (code, stdout, stderr) = Cli("eval", "generator", "--config", _generatorConfig, "--tokenizer", _generatorTokenizer, "--generator", _generator,
            "--num-images", "2", "--inception-weights", _inception, "--fid-stats", stats, "--out", outDir);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("images/s").And.Contain("gFID").And.Contain("InceptionScore").And.Not.Contain("not computed"));
        var metrics = ReadMetrics(outDir);
        Assert.That((metrics["num_images"], metrics["num_classes"], metrics["InceptionScoreSplits"]), Is.EqualTo((2.0, 2.0, 1.0)));
        Assert.That(metrics["images_per_second"], Is.GreaterThan(0));
        Assert.That(metrics["gFID"], Is.GreaterThan(0).And.Not.NaN);
        Assert.That(metrics["InceptionScore"], Is.InRange(1.0, 2.0));

        string badStats = _dir.File("bad-stats.npz");
        Npy.WriteNpz(badStats, new Dictionary<string, NpyArray> { ["mu"] = NpyArray.FromFloats(new float[3], 3), ["sigma"] = NpyArray.FromFloats(new float[9], 3, 3) });
        (code, _, stderr) = Cli("eval", "generator", "--config", _generatorConfig, "--tokenizer", _generatorTokenizer, "--generator", _generator,
            "--num-images", "2", "--inception-weights", _inception, "--fid-stats", badStats, "--out", outDir);
        Assert.That((code, stderr.Contains(badStats) && stderr.Contains("2048")), Is.EqualTo((Program.ExitBadFile, true)), stderr);
    }

    [Test]
    public void EvalGeneratorWithoutInceptionWeightsSaysWhatIsMissing()
    {
        string outDir = _dir.File("eval-generator-plain");
        var (code, stdout, stderr) = Cli("eval", "generator", "--config", _generatorConfig, "--tokenizer", _generatorTokenizer, "--generator", _generator,
            "--num-images", "3", "--out", outDir);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("images/s").And.Contain("gFID and InceptionScore not computed").And.Contain("--inception-weights"));
        Assert.That(ReadMetrics(outDir)["num_classes"], Is.EqualTo(3));
    }

    [Test]
    public void GeneratorCommandsLoadMismatchedWeightsWithNonStrict()
    {
        string tampered = _dir.File("generator-tampered.safetensors");
        var records = CheckpointFile.Load(_generator).ToList();
        SafeTensors.Save(tampered, records.Skip(1).Append(TensorRecord.FromFloats("extra.weight", new[] { 1f }, 1)));
        string[] Generate(params string[] extra) => new[]
        {
            "generate", "--config", _generatorConfig, "--tokenizer", _generatorTokenizer, "--generator", tampered, "--classes", "1",
            "--out", _dir.File("generated"),
        }.Concat(extra).ToArray();

        var (code, _, stderr) = Cli(Generate());
        Assert.That((code, stderr.Contains("extra.weight")), Is.EqualTo((Program.ExitBadFile, true)), stderr);
        (code, var stdout, stderr) = Cli(Generate("--non-strict"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain($"warning: {tampered}: missing key '{records[0].Name}'").And.Contain("unexpected key 'extra.weight'"));

        (code, stdout, stderr) = Cli("eval", "generator", "--config", _generatorConfig, "--tokenizer", _generatorTokenizer, "--generator", tampered,
            "--num-images", "1", "--non-strict", "--out", _dir.File("eval-nonstrict"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("unexpected key 'extra.weight'"));
    }

    private string _lpips = null!;

    private string LpipsWeights()
    {
        if (_lpips != null) return _lpips;
        string formula = Path.Combine(GoldenCases.RepoDir, "formula_nets");
        _lpips = _dir.File("lpips.safetensors");
        using (TensorScope.Begin())
            SafeTensors.Save(_lpips, FormulaWeights.Build(Path.Combine(formula, "lpips_params.json"), Npy.ReadNpz(Path.Combine(formula, "io.npz")))
                .Select(kv => Record(kv.Key, kv.Value)).ToList());
        return _lpips;
    }

    [Test]
    public void EvalTokenizerTakesExperimentVqganCheckpointAndAddsLpips()
    {
        string outDir = _dir.File("eval-config-checkpoint");
        var (code, stdout, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, $"experiment.vqgan_checkpoint={_tokenizerWeights}",
            "--data", _images, "--max-images", "2", "--lpips-weights", LpipsWeights(), "--out", outDir);
        Assert.That(code, Is.EqualTo(0), stderr);
        var metrics = ReadMetrics(outDir);
        Assert.That(metrics["LPIPS"], Is.GreaterThan(0).And.Not.NaN);
        Assert.That(metrics["PSNR"], Is.GreaterThan(0));

        // The one LPIPS loader also reads the two files of losses.perceptual_loss 'lpips' (VGG16 + heads): the same metric.
        var (vgg, heads) = MaskBit.Tests.Training.TokenizerTrainerTests.LpipsWeightFiles(_dir);
        string twoFilesDir = _dir.File("eval-lpips-two-files");
        (code, _, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, $"experiment.vqgan_checkpoint={_tokenizerWeights}",
            "--data", _images, "--max-images", "2", "--lpips-weights", $"{vgg},{heads}", "--out", twoFilesDir);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(ReadMetrics(twoFilesDir)["LPIPS"], Is.EqualTo(metrics["LPIPS"]).Within(1e-6));

        (code, _, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, "--data", _images, "--max-images", "2");
        Assert.That((code, stderr.Contains("--checkpoint") && stderr.Contains("experiment.vqgan_checkpoint")), Is.EqualTo((Program.ExitUsage, true)), stderr);
        (code, _, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, "experiment.vqgan_checkpoint=MODEL_PATH/maskbit_tokenizer_10bit.bin", "--data", _images);
        Assert.That((code, stderr.Contains("experiment.vqgan_checkpoint") && stderr.Contains("MODEL_PATH/maskbit_tokenizer_10bit.bin")), Is.EqualTo((Program.ExitBadFile, true)), stderr);
        (code, _, stderr) = Cli("eval", "tokenizer", "--config", _tokenizerConfig, "--checkpoint", _tokenizerWeights, "--data", _images, "--lpips-weights", _tokenizerWeights);
        Assert.That((code, stderr.Contains(_tokenizerWeights) && stderr.Contains("LPIPS")), Is.EqualTo((Program.ExitBadFile, true)), stderr);
    }

    [Test]
    public void EvalGeneratorResumesItsStateAndComputesReferenceStatisticsFromImages()
    {
        var reference = new byte[3 * 16 * 16 * 3];
        new Random(9).NextBytes(reference);
        string images = _dir.File("reference-images.npz");
        Npy.WriteNpz(images, new Dictionary<string, NpyArray> { ["arr_0"] = new(NpyType.UInt8, new[] { 3, 16, 16, 3 }, reference) });
        string outDir = _dir.File("eval-generator-resume");
        string[] Args(params string[] extra) => new[]
        {
            "eval", "generator", "--config", _generatorConfig, $"experiment.vqgan_checkpoint={_generatorTokenizer}", "--generator", _generator,
            "--num-images", "4", "--batch-size", "2", "--inception-weights", _inception, "--fid-stats", images, "--out", outDir,
        }.Concat(extra).ToArray();

        var (code, stdout, stderr) = Cli(Args());
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("holds reference images (arr_0)").And.Contain(EvalGeneratorCommand.ReferenceStatisticsFileName).And.Contain("gFID"));
        string state = Path.Combine(outDir, GeneratorEvaluation.StateFileName);
        Assert.That(File.Exists(state) && File.Exists(Path.Combine(outDir, EvalGeneratorCommand.ReferenceStatisticsFileName)));
        var first = ReadMetrics(outDir);
        Assert.That((first["num_images"], first["InceptionScoreSplits"]), Is.EqualTo((4.0, 1.0)), "one ADM part of up to 5,000 images");

        (code, stdout, stderr) = Cli(Args());
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("resuming the evaluation").And.Contain("4 of 4 images done"));
        var again = ReadMetrics(outDir);
        Assert.That((again["gFID"], again["InceptionScore"]), Is.EqualTo((first["gFID"], first["InceptionScore"])));

        (code, _, stderr) = Cli(Args("--seed", "3"));
        Assert.That((code, stderr.Contains(state) && stderr.Contains("--fresh")), Is.EqualTo((Program.ExitBadFile, true)), stderr);
        (code, stdout, stderr) = Cli(Args("--seed", "3", "--fresh", "--is-split-size", "2"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Not.Contain("resuming"));
        Assert.That(ReadMetrics(outDir)["InceptionScoreSplits"], Is.EqualTo(2));
    }

    [Test]
    public void EvalGeneratorDefaultsToTheReferencesFiftyThousandImages()
    {
        var (code, stdout, _) = Cli("eval", "generator", "--help");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(stdout, Does.Contain("--num-images").And.Contain("50000").And.Contain("--is-split-size").And.Contain("5000"));
    }

    [Test]
    public void TokenizerTrainingEvaluatesRfidWithTheInceptionWeights()
    {
        string config = _dir.File("train-eval.yaml");
        File.WriteAllText(config, MaskBit.Tests.Training.TokenizerTrainerTests.TinyConfig.Replace("IMAGES", _images)
            .Replace("num_workers_per_gpu: 1", $"num_workers_per_gpu: 1\n        eval_shards_path_or_url: \"{_images}\""));
        using var trainer = new Models.Training.TokenizerTrainer(MaskBitConfig.Load(config),
            new Models.Training.TokenizerTrainerOptions { OutputDir = _dir.File("train-eval-run"), InceptionWeights = _inception });
        var metrics = trainer.Evaluate()!;
        Assert.That(metrics.Keys, Does.Contain("rFID").And.Contain("InceptionScore").And.Contain("PSNR"));
        Assert.That(metrics["rFID"], Is.Not.NaN);
    }

    private static string WriteNpz(string path, NpyArray images)
    {
        Npy.WriteNpz(path, new Dictionary<string, NpyArray> { ["images"] = images });
        return path;
    }

    [Test]
    public void ReconstructReadsAndWritesNpz()
    {
        const int n = 3, size = 32;
        var bytes = new byte[n * size * size * 3];
        new Random(4).NextBytes(bytes);
        var chw = new float[bytes.Length];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < size * size; p++)
                for (int c = 0; c < 3; c++)
                    chw[(i * 3 + c) * size * size + p] = bytes[(i * size * size + p) * 3 + c] / 255f;
        string floats = WriteNpz(_dir.File("floats.npz"), NpyArray.FromFloats(chw, n, 3, size, size));
        string uint8 = WriteNpz(_dir.File("bytes.npz"), new NpyArray(NpyType.UInt8, new[] { n, size, size, 3 }, bytes));

        var results = new List<Dictionary<string, NpyArray>>();
        foreach (var input in new[] { floats, uint8 })
        {
            string outDir = _dir.File("recon-" + Path.GetFileNameWithoutExtension(input));
            var (code, _, stderr) = Cli("reconstruct", "--config", _tokenizerConfig, "--checkpoint", _tokenizerWeights, "--input", input, "--out", outDir);
            Assert.That(code, Is.EqualTo(0), stderr);
            Assert.That(Directory.GetFiles(outDir, "*_000?.png"), Has.Length.EqualTo(n));
            Assert.That(File.Exists(Path.Combine(outDir, "grid.png")));
            results.Add(Npy.ReadNpz(Path.Combine(outDir, "out.npz")));
        }
        var result = results[0];
        Assert.That((result["tokens"].Type, result["tokens"].Shape), Is.EqualTo((NpyType.Int64, new[] { n, 8, 8 })));
        Assert.That(result["tokens"].ToInt64(), Has.All.InRange(0L, 255L));
        Assert.That((result["reconstructions"].Type, result["reconstructions"].Shape), Is.EqualTo((NpyType.Float32, new[] { n, 3, size, size })));
        Assert.That(result["reconstructions"].ToFloat32(), Has.All.InRange(0f, 1f));
        Assert.That(result["images"].ToFloat32(), Is.EqualTo(chw));
        Assert.That(results[1]["images"].ToFloat32(), Is.EqualTo(chw), "uint8 (N, H, W, 3) becomes the same float32 (N, 3, H, W)");
        Assert.That(results[1]["reconstructions"].ToFloat32(), Is.EqualTo(result["reconstructions"].ToFloat32()));
        Assert.That(results[1]["tokens"].ToInt64(), Is.EqualTo(result["tokens"].ToInt64()));
    }

    [Test]
    public void BadNpzInputsNameFileKeyAndShape()
    {
        (string Path, string[] Expected)[] cases =
        {
            (_dir.File("no-images.npz"), new[] { "no 'images' array", "'pixels'" }),
            (WriteNpz(_dir.File("rank3.npz"), NpyArray.FromFloats(new float[3 * 8 * 8], 3, 8, 8)), new[] { "'images' is float32 [3, 8, 8]", "(N, 3, H, W)" }),
            (WriteNpz(_dir.File("int64.npz"), NpyArray.FromInt64(new long[3 * 8 * 8], 1, 3, 8, 8)), new[] { "'images' is int64 [1, 3, 8, 8]" }),
            (WriteNpz(_dir.File("range.npz"), NpyArray.FromFloats(Enumerable.Repeat(2f, 3 * 8 * 8).ToArray(), 1, 3, 8, 8)), new[] { "holds 2 at flat index 0", "[0, 1]" }),
            (WriteNpz(_dir.File("odd.npz"), NpyArray.FromFloats(new float[3 * 10 * 10], 1, 3, 10, 10)), new[] { "10×10", "multiples of 4" }),
        };
        Npy.WriteNpz(cases[0].Path, new Dictionary<string, NpyArray> { ["pixels"] = NpyArray.FromFloats(new float[1], 1) });
        foreach (var (path, expected) in cases)
        {
            var (code, _, stderr) = Cli("reconstruct", "--config", _tokenizerConfig, "--checkpoint", _tokenizerWeights, "--input", path, "--out", _dir.File("bad"));
            Assert.That(code, Is.EqualTo(Program.ExitBadFile), stderr);
            Assert.That(stderr, Does.Contain(path), stderr);
            foreach (var e in expected) Assert.That(stderr, Does.Contain(e), stderr);
        }

        var r = Cli("reconstruct", "--config", _tokenizerConfig, "--checkpoint", _tokenizerWeights, "--out", _dir.File("bad"));
        Assert.That((r.Code, r.Err.Contains("--images") && r.Err.Contains("--input")), Is.EqualTo((Program.ExitUsage, true)), r.Err);
    }
}
