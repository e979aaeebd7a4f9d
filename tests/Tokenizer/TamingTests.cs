using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;
using MaskBit.Tests.Generator;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Tokenizer;

/// <summary>The original Taming VQGAN (model_class taming) against the reference: a reduced random-init model made
/// by tests/Fixtures/taming/make_fixture.py, and the official model's state-dict keys and shapes.</summary>
public class TamingTests
{
    private static string Dir => Path.Combine(AppContext.BaseDirectory, "Fixtures", "taming");
    private static string ConfigPath => Path.Combine(Dir, "config.yaml");
    private static string WeightsPath => Path.Combine(Dir, "tokenizer.bin");

    private static Dictionary<string, NpyArray> Io() => Npy.ReadNpz(Path.Combine(Dir, "io.npz"));

    private static Tensor Load(NpyArray a, bool requiresGrad = false) => Tensor.FromArray(a.ToFloat32(), a.Shape).RequiresGrad_(requiresGrad);

    private static TamingVQModel FixtureModel()
    {
        var model = ImageTokenizer.FromConfig(MaskBitConfig.Load(ConfigPath));
        Assert.That(model, Is.InstanceOf<TamingVQModel>());
        ModuleCheckpoint.LoadInto(model, WeightsPath);
        return (TamingVQModel)model;
    }

    private static void AssertClose(string name, Tensor actual, NpyArray expected, double tolerance = 1e-4)
    {
        Assert.That(actual.Shape, Is.EqualTo(expected.Shape), name);
        double error = Compare.ScaledError(actual.ToArray(), expected.ToFloat32());
        Assert.That(error, Is.LessThanOrEqualTo(tolerance), $"{name}: scaled error {error:E2}");
    }

    [Test]
    public void OfficialModelHasTamingsStateDictKeysAndShapes()
    {
        using var shapesOnly = Init.ShapesOnly();
        var model = new TamingVQModel(TamingConfig.Official);
        var expected = File.ReadAllLines(Path.Combine(Dir, "official_keys.txt"));
        var actual = model.StateDict().Select(e => e.Name + string.Concat(e.Tensor.Shape.Select(d => $" {d}"))).ToArray();
        Assert.That(actual, Is.EqualTo(expected));
        Assert.That(model.ParameterCount(), Is.EqualTo(72141699));
        Assert.That(model.DownsampleFactor, Is.EqualTo(16));
    }

    [Test]
    public void ReducedModelMatchesTheReference()
    {
        var model = FixtureModel();
        model.Train();
        var io = Io();
        var input = Load(io["input"], requiresGrad: true);
        var (decoded, result) = model.Forward(input);
        Assert.That(result.MinEncodingIndices.ToIntArray(), Is.EqualTo(io["tokens"].ToInt32()), "tokens");
        AssertClose("reconstruction", decoded, io["reconstruction"]);
        AssertClose("quantizer_loss", result.QuantizerLoss, io["quantizer_loss"]);
        AssertClose("commitment_loss", result.CommitmentLoss, io["commitment_loss"]);
        AssertClose("codebook_loss", result.CodebookLoss!, io["codebook_loss"]);
        var total = F.MseLoss(decoded, Load(io["target"])).Add(result.QuantizerLoss);
        AssertClose("total_loss", total, io["total_loss"]);
        total.Backward();
        AssertClose("grad.input", input.Grad!, io["grad.input"], 1e-3);

        using var noGrad = Tape.NoGrad();
        AssertClose("z_quantized", model.Encode(input).Quantized, io["z_quantized"]);
        var tokens = result.MinEncodingIndices.Reshape(input.Shape[0], -1);
        AssertClose("decoded_from_tokens", model.DecodeTokens(tokens), io["decoded_from_tokens"]);
    }

    [Test]
    public void PretrainedTokenizerLoadsFrozenAndEncodesTheReferenceTokens()
    {
        var config = MaskBitConfig.Load(ConfigPath);
        var tokenizer = PretrainedModels.Tokenizer(config, WeightsPath);
        Assert.That(tokenizer, Is.InstanceOf<TamingVQModel>());
        Assert.That(tokenizer.Training, Is.False);
        Assert.That(tokenizer.Parameters().Any(p => p.RequiresGrad), Is.False);
        var io = Io();
        Assert.That(ImageTokens.Encode(tokenizer, Load(io["input"])), Is.EqualTo(io["tokens"].ToInt32()));
        var (reconstructions, tokens) = TokenizerEvaluation.Reconstruct(tokenizer, Load(io["input"]));
        Assert.That(tokens, Is.EqualTo(io["tokens"].ToInt32()));
        Assert.That(reconstructions.ToArray(), Has.All.InRange(0f, 1f));
    }

    [Test]
    public void OfficialFilesLoadStrictlyWithTheirTrainingLossEntriesDropped()
    {
        // The official checkpoint also holds the loss's discriminator and LPIPS weights (loss.*), which the
        // reference skips; anything else unknown still fails the strict load.
        var records = CheckpointFile.Load(WeightsPath).ToList();
        string path = Path.Combine(Path.GetTempPath(), $"taming-{Guid.NewGuid():N}.safetensors");
        try
        {
            var extra = TensorRecord.FromFloats("loss.discriminator.main.0.weight", new float[6], 2, 3);
            SafeTensors.Save(path, records.Append(extra));
            var model = ImageTokenizer.FromConfig(MaskBitConfig.Load(ConfigPath));
            Assert.That(PretrainedModels.LoadTokenizerWeights(model, path).Source, Is.EqualTo(WeightsSource.PlainFile));
            Assert.That(PretrainedModels.Tokenizer(MaskBitConfig.Load(ConfigPath), path), Is.InstanceOf<TamingVQModel>());

            SafeTensors.Save(path, records.Append(TensorRecord.FromFloats("lossy.weight", new float[2], 2)));
            var e = Assert.Throws<InvalidDataException>(() => PretrainedModels.LoadTokenizerWeights(model, path));
            Assert.That(e!.Message, Does.Contain("unexpected key 'lossy.weight'"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void LightningCheckpointsLoadWithTheirCallbackClassesAsInertNames()
    {
        // The official Taming checkpoint is a PyTorch Lightning file whose "callbacks" are keyed by callback class.
        var checkpoint = CheckpointFile.Load(Path.Combine(Dir, "lightning.ckpt"));
        Assert.That(checkpoint.Names, Is.EquivalentTo(new[] { "quant_conv.weight", "loss.logvar" }));
        var callbacks = checkpoint.Metadata.Single(kv => kv.Key == "callbacks").Value;
        Assert.That(StateDict.FormatValue(callbacks), Does.Contain("<class pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint>"));
        Assert.That(ModuleCheckpoint.WithoutPrefixes(checkpoint, ["loss."]).Names, Is.EqualTo(new[] { "quant_conv.weight" }));
    }

    [Test]
    public void SamplerDecodesGeneratedTokensWithATamingTokenizer()
    {
        var (golden, _) = SamplerGolden.Load(Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", "sampler"));
        // The golden generator emits 4×4 tokens of a 256-entry codebook: a two-level Taming model decodes them to 8×8.
        var tokenizer = new TamingVQModel(TamingConfig.Official with
        {
            CodebookSize = 256,
            TokenSize = 8,
            Ch = 32,
            ChMult = [1, 1],
            NumResBlocks = 1,
            AttnResolutions = [4],
            Resolution = 8,
            ZChannels = 32,
        }, seed: 3);
        var result = new Sampler(golden.Generator, tokenizer).Sample(new[] { 1, 2 }, new SamplerOptions { NumSteps = 2 }, new SeededRandomSource(5));
        Assert.That(result.Images.Shape, Is.EqualTo(new[] { 2, 3, 8, 8 }));
        Assert.That(result.Images.ToArray(), Has.All.Matches<float>(float.IsFinite));
    }

    [TestCase("ch: 48", "multiples of 32")]
    [TestCase("ch_mult: [1, 1, 1]\n            resolution: 18", "not divisible by the downsampling factor 4")]
    public void InvalidDdconfigIsAConfigErrorNamingTheKey(string ddconfig, string message)
    {
        string yaml = "model:\n    vq_model:\n        model_class: taming\n        quantizer_type: lookup\n        ddconfig:\n            " + ddconfig + "\n";
        var e = Assert.Throws<ConfigException>(() => ImageTokenizer.FromConfig(MaskBitConfig.Parse(yaml, "bad.yaml")));
        Assert.That(e!.Message, Does.Contain("bad.yaml").And.Contain("model.vq_model.ddconfig").And.Contain(message));
    }

    [Test]
    public void TheConvTokenizerPathRejectsTamingAndUnknownModelClasses()
    {
        var taming = MaskBitConfig.Load(ConfigPath);
        Assert.That(Assert.Throws<ConfigException>(() => TokenizerConfig.From(taming))!.Message, Does.Contain("model_class taming"));
        var other = MaskBitConfig.Parse("model:\n    vq_model:\n        model_class: vqgan2\n        quantizer_type: lookup\n        codebook_size: 64\n        token_size: 8\n", "other.yaml");
        Assert.That(Assert.Throws<ConfigException>(() => ImageTokenizer.FromConfig(other))!.Message, Does.Contain("model_class 'vqgan2'"));
    }

    [Test]
    public void LookupFreeQuantizationIsRejectedForTaming()
    {
        var yaml = "model:\n    vq_model:\n        model_class: taming\n        quantizer_type: lookup-free\n        token_size: 10\n";
        var e = Assert.Throws<ConfigException>(() => ImageTokenizer.FromConfig(MaskBitConfig.Parse(yaml, "lfq.yaml")));
        Assert.That(e!.Message, Does.Contain("quantizer_type 'lookup-free'"));
    }
}
