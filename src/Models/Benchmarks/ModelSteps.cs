using MaskBit.Autograd;
using MaskBit.Autograd.Optim;
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

/// <summary>One optimisation step of the tokenizer as the training loop takes it once the discriminator is on
/// (global step = losses.discriminator_start): forward, generator loss with the adaptive GAN weight, backward,
/// discriminator loss and backward, gradient clipping, both AdamW steps, EMA. Images are uniform noise.</summary>
public sealed class TokenizerTrainingStep : IModelStep
{
    public ConvVQModel Model { get; }
    public VqganLoss Loss { get; }
    public int BatchSize { get; }
    private readonly TokenizerTrainingSettings _settings;
    private readonly List<Tensor> _parameters;
    private readonly AdamW _optimizer, _discriminatorOptimizer;
    private readonly Ema? _ema;
    private readonly Tensor _images;
    private readonly long _globalStep;

    public TokenizerTrainingStep(MaskBitConfig config, int? batchSize = null)
    {
        _settings = TokenizerTrainingSettings.From(config);
        BatchSize = batchSize ?? _settings.BatchSize;
        var tokenizerConfig = TokenizerConfig.From(config);
        Model = new ConvVQModel(tokenizerConfig, seed: _settings.Seed);
        Loss = VqganLoss.From(config);
        _globalStep = Loss.Config.DiscriminatorStart;
        _parameters = Model.Parameters().ToList();
        _optimizer = new AdamW(_parameters, _settings.LearningRate, _settings.Beta1, _settings.Beta2, _settings.Epsilon, _settings.WeightDecay);
        _discriminatorOptimizer = new AdamW(Loss.Parameters(), _settings.DiscriminatorLearningRate, _settings.Beta1, _settings.Beta2,
            _settings.Epsilon, _settings.WeightDecay);
        if (_settings.UseEma) _ema = new Ema(_parameters, TokenizerTrainingSettings.EmaDecay);
        int resolution = (int)config.GetInt("dataset.preprocessing.resolution");
        _images = ModelInputs.Uniform(new[] { BatchSize, tokenizerConfig.NumChannels, resolution, resolution }, _settings.Seed);
    }

    public double Run()
    {
        using var scope = TensorScope.Begin();
        var (reconstructions, quantizer) = Model.Forward(_images);
        var (loss, _) = Loss.ForwardGenerator(_images, reconstructions, quantizer, _globalStep, Model.LastLayer);
        loss.Backward();
        var (discriminatorLoss, _) = Loss.ForwardDiscriminator(_images, reconstructions, _globalStep);
        discriminatorLoss.Backward();
        float maxNorm = (float)(_settings.MaxGradNorm ?? double.PositiveInfinity);
        GradClip.ClipGradNorm(_parameters, maxNorm);
        _optimizer.Step();
        Model.ZeroGrad();
        GradClip.ClipGradNorm(_discriminatorOptimizer.Parameters, maxNorm);
        _discriminatorOptimizer.Step();
        Loss.ZeroGrad();
        _ema?.Step(_parameters);
        return loss.Item();
    }
}

/// <summary>One optimisation step of the generator as its training loop takes it: random tokens split into groups,
/// masking along the training schedule, class-label dropout, forward (train mode), MLM loss, backward, gradient
/// clipping, AdamW, EMA.</summary>
public sealed class GeneratorTrainingStep : IModelStep
{
    public MaskedGenerator Generator { get; }
    public int BatchSize { get; }
    private readonly List<Tensor> _parameters;
    private readonly AdamW _optimizer;
    private readonly Ema? _ema;
    private readonly MlmLoss _loss;
    private readonly RngRandomSource _random;
    private readonly MaskSchedule _schedule;
    private readonly double _labelDropout;
    private readonly float _maxGradNorm;
    private readonly int[] _tokens;
    private readonly Tensor _labels;

    public GeneratorTrainingStep(MaskBitConfig config, int? batchSize = null)
    {
        const string m = "model.mlm_model.", o = "optimizer.params.";
        int seed = (int)config.GetInt("training.seed", 42);
        BatchSize = batchSize ?? (int)config.GetInt("training.per_gpu_batch_size", 32);
        Generator = new MaskedGenerator(GeneratorConfig.From(config), seed);
        var rng = new Rng((ulong)seed);
        Generator.DropoutGenerator = rng;
        Generator.Train();
        _random = new RngRandomSource(rng);
        _schedule = Masking.ParseSchedule(config.GetString(m + "train_mask_schedule_strategy", "arccos"));
        _labelDropout = config.GetDouble(m + "class_label_dropout", 0.1);
        _maxGradNorm = (float)config.GetDouble("training.max_grad_norm", 0.0);
        _loss = new MlmLoss((float)config.GetDouble("losses.mlm.label_smoothing", 0.1), config.GetBool("losses.mlm.sum_splits", false));
        _parameters = Generator.Parameters().ToList();
        _optimizer = new AdamW(_parameters, config.GetDouble(o + "learning_rate", 1e-4), config.GetDouble(o + "beta1", 0.9),
            config.GetDouble(o + "beta2", 0.96), config.GetDouble(o + "epsilon", 1e-8), config.GetDouble(o + "weight_decay", 0.045));
        if (config.GetBool("training.use_ema", true)) _ema = new Ema(_parameters, 0.999);

        var cfg = Generator.Config;
        var tokenRng = new Rng((ulong)seed + 1);
        _tokens = Enumerable.Range(0, BatchSize * cfg.SeqLen).Select(_ => tokenRng.NextInt(cfg.CodebookSize)).ToArray();
        var labels = Enumerable.Range(0, BatchSize).Select(_ => tokenRng.NextInt(cfg.NumClasses)).ToArray();
        _labels = Tensor.FromInts(labels, new[] { BatchSize });
    }

    public double Run()
    {
        var cfg = Generator.Config;
        using var scope = TensorScope.Begin();
        var masked = Masking.MaskBatch(_tokens, BatchSize, cfg.CodebookSize, cfg.Splits, cfg.MaskToken, _schedule, 0.0, _random,
            Generator.PosEmb.Device);
        var draws = new float[BatchSize];
        _random.Uniform(draws);
        var logits = Generator.Forward(masked.Tokens, _labels.Clone(), draws.Select(u => u < _labelDropout).ToArray());
        var (loss, _) = _loss.Forward(logits, masked.Targets, masked.Mask);
        loss.Backward();
        GradClip.ClipGradNorm(_parameters, _maxGradNorm > 0 ? _maxGradNorm : float.PositiveInfinity);
        _optimizer.Step();
        _optimizer.ZeroGrad();
        _ema?.Step(_parameters);
        return loss.Item();
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

    public SamplingStep(MaskBitConfig config, int images = 2)
    {
        int seed = (int)config.GetInt("training.seed", 42);
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
        int resolution = (int)config.GetInt("dataset.preprocessing.resolution");
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
