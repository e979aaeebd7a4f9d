using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;
using MaskBit.Tests.Data;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Perceptual;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Training;

/// <summary>
/// Every official training config in configs/tokenizer and configs/generator (the reference's; configs/external and
/// configs/demo have no training sections) trains one step through its trainer, with its own loss terms, optimizer,
/// schedule, EMA, clipping, masking and augmentation, on synthetic 32×32 images. The tokenizer configs get the
/// perceptual network they name from a weights file (the formula ResNet-50 of `formula_nets`); no flag drops a term.
/// <para>Overridden, because the configs' sizes do not fit a CI test (2 cores, ~7 GB):</para>
/// <list type="bullet">
/// <item>dataset.preprocessing.resolution 256 → 32 and training.per_gpu_batch_size → 1 (the tokenizer's levels,
/// channel multipliers and blocks are kept: at 32² its five levels end on a 2×2 latent), dataset.params.num_workers_per_gpu
/// 8 → 1;</item>
/// <item>tokenizer configs: model.vq_model.hidden_channels 128 → 64 (a quarter of the 54M parameters and of the
/// tokenizer's convolutions; the ResNet-50 of the perceptual term runs at 224² whatever the image size);</item>
/// <item>losses.discriminator_start 20,000 → 0, so the one step trains the discriminator as well (when it starts is
/// the vqgan_loss and tokenizer_training goldens' concern);</item>
/// <item>generator configs: model.mlm_model hidden_dim/depth/heads/mlp_dim 1024/24/16/4096 → 64/2/4/128 (305M
/// parameters with their gradients, AdamW moments and EMA are ~6 GB and ~30 s of initialisation each) and the
/// frozen tokenizer's model.vq_model.hidden_channels 128 → 32 (it only encodes the training images); the token
/// bits, codebook splits, masking, dropout, label smoothing and the rest of the recipe are the config's.</item>
/// </list>
/// </summary>
[TestFixture]
[NonParallelizable]
public class OfficialConfigTrainingTests
{
    private TempDirectory _dir = null!;
    private string _resnet = "";

    [OneTimeSetUp]
    public void WritePerceptualWeights()
    {
        _dir = new TempDirectory();
        _resnet = _dir.File("resnet50.safetensors");
        FormulaWeights.SaveSafeTensors(Path.Combine(GoldenCases.RepoDir, "formula_nets", "resnet50_params.json"), _resnet);
    }

    [OneTimeTearDown]
    public void TearDown() => _dir.Dispose();

    public static IEnumerable<string> TokenizerConfigs() => Official("tokenizer");
    public static IEnumerable<string> GeneratorConfigs() => Official("generator");

    private static IEnumerable<string> Official(string folder) =>
        Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "configs", folder), "*.yaml").Select(Path.GetFileName).Order()!;

    private static readonly string[] SmallData =
        ["dataset.preprocessing.resolution=32", "training.per_gpu_batch_size=1", "dataset.params.num_workers_per_gpu=1"];

    [TestCaseSource(nameof(TokenizerConfigs))]
    public void TokenizerConfigTrainsOneStep(string file)
    {
        var config = MaskBitConfig.Load(Path.Combine(TestPaths.RepoRoot, "configs", "tokenizer", file), [.. SmallData, "model.vq_model.hidden_channels=64", "losses.discriminator_start=0"]);
        var loss = VqganLossConfig.From(config);
        Assert.That(loss.PerceptualWeight, Is.GreaterThan(0f), "the official tokenizer recipe has a perceptual term");
        using var trainer = new TokenizerTrainer(config, new TokenizerTrainerOptions
        {
            OutputDir = _dir.File(Path.GetFileNameWithoutExtension(file)), PerceptualWeights = _resnet, Dataset = new SyntheticDataset(8, _ => (40, 36)),
        });
        Assert.That(trainer.Step.Ema, Is.Not.Null, "training.use_ema");
        trainer.Start(default, resumed: false);
        var values = trainer.TrainStep(0);
        AssertFinite(file, values);
        Assert.That(values["perceptual_loss"], Is.GreaterThan(0), $"{file}: the perceptual term");
        Assert.That(values.ContainsKey("discriminator_loss"), Is.True, $"{file}: the discriminator trains from discriminator_start");
        Assert.That(values["lr"], Is.EqualTo(0.0), $"{file}: the warmup's first step");
        Assert.That(trainer.Step.Optimizer.LearningRate, Is.GreaterThan(0.0), $"{file}: the schedule moves");
        Assert.That(trainer.Step.DiscriminatorOptimizer.LearningRate, Is.GreaterThan(0.0), $"{file}: the discriminator's schedule moves");
    }

    [TestCaseSource(nameof(GeneratorConfigs))]
    public void GeneratorConfigTrainsOneStep(string file)
    {
        string[] overrides = [.. SmallData, "model.mlm_model.hidden_dim=64", "model.mlm_model.depth=2", "model.mlm_model.heads=4",
            "model.mlm_model.mlp_dim=128", "model.vq_model.hidden_channels=32"];
        var config = MaskBitConfig.Load(Path.Combine(TestPaths.RepoRoot, "configs", "generator", file), overrides);
        string tokenizerPath = _dir.File($"{Path.GetFileNameWithoutExtension(file)}.tokenizer.safetensors");
        using (var scope = TensorScope.Begin())
        {
            var tokenizer = new ConvVQModel(TokenizerConfig.From(config), seed: 3);
            SafeTensors.Save(tokenizerPath, tokenizer.StateDict().Select(kv => GeneratorTrainerTests.Record(kv.Name, kv.Tensor)).ToList());
        }
        var trainer = new GeneratorTrainer(config, new GeneratorTrainerOptions
        {
            OutputDir = _dir.File(Path.GetFileNameWithoutExtension(file)), TokenizerPath = tokenizerPath,
            Dataset = (new SyntheticDataset(8, _ => (40, 36)), "synthetic"), DataWorkers = 1,
        });
        trainer.Start(default, resumed: false);
        var values = trainer.TrainStep(0);
        AssertFinite(file, values);
        Assert.That(trainer.Step.Optimizer.LearningRate, Is.GreaterThan(values["lr"]), $"{file}: the warmup");
    }

    /// <summary>Every term is finite (a gradient norm is NaN when the config does not clip).</summary>
    private static void AssertFinite(string file, Dictionary<string, double> values)
    {
        foreach (var (key, value) in values)
            Assert.That(double.IsFinite(value) || key.EndsWith("grad_norm", StringComparison.Ordinal), $"{file}: {key} = {value}");
    }
}
