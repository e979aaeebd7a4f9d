using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Models.Benchmarks;

/// <summary>Finds files of this repository (configs/…) from the working directory or the program's folder upwards,
/// so benchmarks run from the repository root, bench/ or a test's output folder alike.</summary>
public static class RepositoryFiles
{
    public static string Find(string relativePath)
    {
        if (File.Exists(relativePath)) return Path.GetFullPath(relativePath);
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, relativePath);
                if (File.Exists(candidate)) return candidate;
            }
        throw new FileNotFoundException($"{relativePath} not found above {Directory.GetCurrentDirectory()} or {AppContext.BaseDirectory}");
    }
}

/// <summary>Model-level work units shared by <c>maskbit bench</c> and <c>maskbit profile</c>: each is built from a
/// config on <see cref="Device.Default"/> with random weights and synthetic inputs (no data set, no checkpoints),
/// and <c>Run()</c> performs one unit of work inside its own <see cref="TensorScope"/>.</summary>
public interface IModelStep
{
    /// <summary>Does one unit of work and returns a scalar that identifies its result (a loss, or a checksum).</summary>
    double Run();
}

/// <summary>The tokenizer trainer's own <see cref="TokenizerStep"/> once the discriminator is on (steps done =
/// losses.discriminator_start), with training.gradient_accumulation_steps micro-batches of uniform noise.</summary>
public sealed class TokenizerStepWorkload : IModelStep
{
    public TokenizerStep Step { get; }
    private readonly Tensor _images;
    private readonly long _stepsDone;

    public TokenizerStepWorkload(MaskBitConfig config, int? batchSize = null)
    {
        Step = TokenizerStep.From(config, batchSize);
        _stepsDone = Step.Loss.Config.DiscriminatorStart;
        int resolution = TrainingData.Transform(config).Resolution;
        _images = ModelInputs.Uniform(new[] { Step.Settings.BatchSize, Step.Model.Config.NumChannels, resolution, resolution }, Step.Settings.Seed);
    }

    public double Run()
    {
        using var scope = TensorScope.Begin();
        return Step.Run(() => _images, _stepsDone)["total_loss"];
    }
}

/// <summary>The generator trainer's own <see cref="MlmStep"/> on one batch of random tokens and labels.</summary>
public sealed class MlmStepWorkload : IModelStep
{
    public MlmStep Step { get; }
    private readonly TokenBatch _batch;

    public MlmStepWorkload(MaskBitConfig config, int? batchSize = null)
    {
        Step = MlmStep.From(config, batchSize);
        var cfg = Step.Generator.Config;
        int batch = Step.Settings.BatchSize;
        var tokenRng = new Rng((ulong)Step.Settings.Seed + 1);
        var tokens = Enumerable.Range(0, batch * cfg.SeqLen).Select(_ => tokenRng.NextInt(cfg.CodebookSize)).ToArray();
        var labels = Enumerable.Range(0, batch).Select(_ => tokenRng.NextInt(cfg.NumClasses)).ToArray();
        _batch = new TokenBatch(tokens, labels, 0, 0);
    }

    public double Run()
    {
        using var scope = TensorScope.Begin();
        return Step.Run(() => _batch, 0)["train/mlm_loss"];
    }
}

/// <summary>One guided sampling step of the generator for <c>images</c> class labels (the forward runs on twice as
/// many sequences: with and without the label) plus the sampler's per-step work (softmax, categorical draw,
/// confidences, re-masking). The sampler always decodes its result; here it decodes with a one-stage, 32-channel
/// stand-in of the config's tokenizer (same codebook, 16×16-pixel output), which costs well under 1% of the step.</summary>
public sealed class SamplingStep : IModelStep
{
    public Sampler Sampler { get; }
    private readonly SamplerOptions _options;
    private readonly int[] _labels;
    private readonly DType? _precision;

    /// <param name="precision">As <c>generate --precision</c>: the weights stored in that 16-bit type and the forwards
    /// under its autocast; null for float32.</param>
    public SamplingStep(MaskBitConfig config, int images = 2, DType? precision = null)
    {
        int seed = RunSettings.From(config, TrainingStage.Generator).Seed;
        _precision = precision;
        using var weights = Module.StoreWeightsIn(precision);
        var generator = new MaskedGenerator(GeneratorConfig.From(config), seed);
        var tinyDecoder = TokenizerConfig.From(config) with
        {
            HiddenChannels = 32,
            ChannelMult = new[] { 1 },
            NumResolutions = 1,
            NumResBlocks = 1,
            NumResBlocksDecoder = 1,
        };
        Sampler = new Sampler(generator, new ConvVQModel(tinyDecoder, seed: seed));
        _options = SamplerOptions.FromConfig(config) with { NumSteps = 1 };
        _labels = Enumerable.Range(0, images).Select(i => (207 + i) % generator.Config.NumClasses).ToArray();
    }

    public double Run()
    {
        using var scope = TensorScope.Begin();
        using var autocast = Autocast.Enable(_precision);
        var result = Sampler.Sample(_labels, _options, new SeededRandomSource(0));
        return result.CombinedTokens.ToIntArray().Sum(t => (double)t);
    }
}

/// <summary>Encode + quantize + decode of one batch of images through the tokenizer, without a tape.</summary>
public sealed class TokenizerReconstructStep : IModelStep
{
    public ConvVQModel Model { get; }
    private readonly Tensor _images;

    public TokenizerReconstructStep(MaskBitConfig config, int batchSize = 1)
    {
        var tokenizerConfig = TokenizerConfig.From(config);
        Model = new ConvVQModel(tokenizerConfig, seed: 0);
        Model.Eval();
        int resolution = TrainingData.Transform(config).Resolution;
        _images = ModelInputs.Uniform(new[] { batchSize, tokenizerConfig.NumChannels, resolution, resolution }, seed: 0);
    }

    public double Run()
    {
        using var scope = TensorScope.Begin();
        using var noGrad = Tape.NoGrad();
        var (decoded, _) = Model.Forward(_images);
        return decoded.Sum().Item();
    }
}

/// <summary>The LFQ quantizer module in train mode as the PyTorch peer's lfq rows run it (token_bits K, commitment
/// 0.25, entropy weight 0.02, temperature 0.01) on normal latents z (B, K, 16, 16): the forward with the tape on, or
/// forward and backward of quantizer_loss + ⟨z_q, R⟩ with a fixed normal R.</summary>
public sealed class LfqQuantizerStep : IModelStep
{
    private readonly LookupFreeQuantizer _quantizer;
    private readonly Tensor _z, _upstream;
    private readonly bool _backward;

    public LfqQuantizerStep(int bits, int batch, bool backward)
    {
        _quantizer = new LookupFreeQuantizer(bits, commitmentCost: 0.25f, entropyLossWeight: 0.02f, entropyLossTemperature: 0.01f);
        _quantizer.Train();
        var shape = new[] { batch, bits, 16, 16 };
        _z = ModelInputs.Normal(shape, seed: 1).RequiresGrad_();
        _upstream = ModelInputs.Normal(shape, seed: 2);
        _backward = backward;
    }

    public double Run()
    {
        using var scope = TensorScope.Begin();
        _z.Grad = null;
        var (quantized, result) = _quantizer.Forward(_z);
        if (!_backward) return result.QuantizerLoss.Item();
        var loss = result.QuantizerLoss.Add(quantized.Mul(_upstream).Sum());
        loss.Backward();
        return loss.Item();
    }
}

internal static class ModelInputs
{
    /// <summary>Standard normal values.</summary>
    public static Tensor Normal(int[] shape, int seed)
    {
        var rng = new Rng((ulong)seed);
        var data = new float[shape.Aggregate(1, (a, b) => a * b)];
        for (int i = 0; i < data.Length; i++) data[i] = (float)rng.NextGaussian();
        return Tensor.FromArray(data, shape);
    }

    /// <summary>Uniform [0, 1) pixels, the range of the training pipeline's images.</summary>
    public static Tensor Uniform(int[] shape, int seed)
    {
        var rng = new Rng((ulong)seed);
        var data = new float[shape.Aggregate(1, (a, b) => a * b)];
        for (int i = 0; i < data.Length; i++) data[i] = rng.NextFloat();
        return Tensor.FromArray(data, shape);
    }
}
