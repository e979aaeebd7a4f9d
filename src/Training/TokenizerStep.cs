using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Autograd.Optim;
using MaskBit.Distributed;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>
/// One Stage-I optimisation step as the reference's scripts/train_tokenizer.py takes it: per micro-batch the generator
/// objective (reconstruction + perceptual + quantizer + adaptive GAN; the perceptual network of losses.perceptual_loss
/// frozen, with the weights of <see cref="TokenizerTrainingSettings.PerceptualWeights"/>) is back-propagated, then — from
/// losses.discriminator_start on — the discriminator objective on real images vs the detached reconstructions; each
/// loss is divided by training.gradient_accumulation_steps (as accelerate does). Gradients are clipped on the device
/// to training.max_grad_norm (under mpirun after the ranks' gradients are averaged, <see cref="GradientAverager"/>, while
/// the last micro-batch's backwards run); the loss terms and norms then come to the host in one download (logging and the NaN
/// stop need them) before either AdamW steps and its schedule advances; an EMA follows the tokenizer's weights.
/// training.mixed_precision runs the forwards and losses under autocast and, for fp16, scales both losses with one
/// scale (<see cref="MixedPrecision"/>: a step whose gradients overflow is skipped, logged as skipped_steps).
/// The training loop, <c>maskbit bench</c> and <c>maskbit profile</c> all run this type.
/// </summary>
public sealed class TokenizerStep
{
    public const string ModelPart = "model", LossPart = "loss", DiscriminatorPart = "discriminator";
    private static readonly HashSet<string> AggregateTerms = new() { "total_loss", "discriminator_loss" };

    public TokenizerTrainingSettings Settings { get; }
    public ConvVQModel Model { get; }
    public VqganLoss Loss { get; }
    public AdamW Optimizer { get; }
    public AdamW DiscriminatorOptimizer { get; }
    public LrSchedule Schedule { get; }
    public LrSchedule DiscriminatorSchedule { get; }
    public Ema? Ema { get; }
    /// <summary>training.mixed_precision: the forwards' autocast and fp16's loss scaling (one scale for both losses).</summary>
    public MixedPrecision Precision { get; }
    private readonly IReadOnlyList<Tensor> _parameters;
    /// <summary>Averages the gradients over the ranks under mpirun.</summary>
    public GradientAverager Gradients { get; } = new(ProcessGroup.World);

    public TokenizerStep(TokenizerConfig tokenizer, DiscriminatorConfig discriminator, VqganLossConfig loss, TokenizerTrainingSettings settings)
    {
        Settings = settings;
        Precision = new MixedPrecision(settings.MixedPrecision);
        Model = new ConvVQModel(tokenizer, seed: settings.Seed) { ActivationCheckpointing = settings.ActivationCheckpointing, FinetuneDecoder = settings.FinetuneDecoder };
        Loss = new VqganLoss(discriminator, loss, PretrainedModels.PerceptualLoss(loss, settings.PerceptualWeights), seed: settings.Seed + 1);
        _parameters = Model.Parameters().ToList();
        var o = settings.Optimizer;
        Optimizer = o.Create(_parameters);
        DiscriminatorOptimizer = o.Create(Loss.Parameters(), settings.DiscriminatorLearningRate);
        // The discriminator's schedule spans the steps it trains.
        Schedule = settings.Schedule.Create(o.LearningRate, settings.MaxTrainSteps);
        DiscriminatorSchedule = settings.Schedule.Create(settings.DiscriminatorLearningRate, settings.MaxTrainSteps - loss.DiscriminatorStart);
        Schedule.SetStep(0, Optimizer);
        DiscriminatorSchedule.SetStep(0, DiscriminatorOptimizer);
        if (settings.UseEma) Ema = new Ema(_parameters, TokenizerTrainingSettings.EmaDecay);
    }

    /// <summary>The step of a config (<paramref name="batchSize"/> replaces training.per_gpu_batch_size; benchmarks).</summary>
    public static TokenizerStep From(MaskBitConfig config, int? batchSize = null)
    {
        var settings = TokenizerTrainingSettings.From(config);
        return new TokenizerStep(TokenizerConfig.From(config), DiscriminatorConfig.From(config), VqganLossConfig.From(config),
            batchSize is { } b ? settings with { BatchSize = b } : settings);
    }

    /// <summary>The tokenizer, the loss (discriminator), both optimizers and schedules, the EMA and the fp16 loss scale.</summary>
    public TrainingState State(string configYaml) => new()
    {
        Modules = new Dictionary<string, Module> { [ModelPart] = Model, [LossPart] = Loss },
        Optimizers = new Dictionary<string, AdamW> { [ModelPart] = Optimizer, [DiscriminatorPart] = DiscriminatorOptimizer },
        Schedules = new Dictionary<string, LrSchedule> { [ModelPart] = Schedule, [DiscriminatorPart] = DiscriminatorSchedule },
        Emas = Ema != null ? new Dictionary<string, Ema> { [ModelPart] = Ema } : new Dictionary<string, Ema>(),
        LossScale = Precision.CheckpointState,
        ConfigYaml = configYaml,
    };

    /// <summary>The step after <paramref name="stepsDone"/> steps over training.gradient_accumulation_steps micro-batches
    /// from <paramref name="nextImages"/> (B, C, H, W in [0, 1]); returns every loss term (averaged over the
    /// micro-batches), the gradient norms before clipping (per parameter after clipping every
    /// experiment.log_grad_norm_every steps, as the reference) and the learning rates used.</summary>
    /// <exception cref="TrainingDivergedException">A term or norm is NaN or ±Inf; nothing was applied.</exception>
    public Dictionary<string, double> Run(Func<Tensor> nextImages, long stepsDone)
    {
        using var memoryMode = Settings.MemoryMode();
        int micro = Settings.AccumulationSteps;
        float share = 1f / micro;
        bool trainDiscriminator = Loss.ShouldDiscriminatorBeTrained(stepsDone);
        var values = new Dictionary<string, double>
        {
            ["lr"] = Optimizer.LearningRate,
            ["lr_discriminator"] = trainDiscriminator ? DiscriminatorOptimizer.LearningRate : 0.0,
        };
        var microTerms = new List<Dictionary<string, Tensor>>();
        for (int m = 0; m < micro; m++)
        {
            var images = nextImages();
            Tensor reconstructions, loss;
            Dictionary<string, Tensor> terms;
            using (Precision.Autocast())
            {
                (reconstructions, var quantizer) = Model.Forward(images);
                (loss, terms) = Loss.ForwardGenerator(images, reconstructions, quantizer, stepsDone, Model.LastLayer);
            }
            microTerms.Add(terms);
            // Data parallel: the last micro-batch's backwards start the all-reduces of the tokenizer's and the
            // discriminator's gradients (the discriminator is frozen in the generator objective).
            bool last = m == micro - 1;
            using (last ? Gradients.AverageDuring(_parameters) : null)
                Precision.Backward(micro == 1 ? loss : loss * share);
            Settings.ReleaseIdleMemory();
            if (!trainDiscriminator) continue;
            Tensor discriminatorLoss;
            Dictionary<string, Tensor> discriminatorTerms;
            using (Precision.Autocast()) (discriminatorLoss, discriminatorTerms) = Loss.ForwardDiscriminator(images, reconstructions, stepsDone);
            microTerms.Add(discriminatorTerms);
            using (last ? Gradients.AverageDuring(DiscriminatorOptimizer.Parameters) : null)
                Precision.Backward(micro == 1 ? discriminatorLoss : discriminatorLoss * share);
        }
        Gradients.Wait();
        Settings.ReleaseIdleMemory();
        var overflowProbe = Precision.Unscale(trainDiscriminator ? [.. _parameters, .. DiscriminatorOptimizer.Parameters] : _parameters);
        var norms = new Dictionary<string, Tensor>();
        if (Settings.MaxGradNorm is { } maxNorm)
        {
            if (GradClip.ClipGradNormOnDevice(_parameters, (float)maxNorm) is { } norm) norms["grad_norm"] = norm;
            if (trainDiscriminator && GradClip.ClipGradNormOnDevice(DiscriminatorOptimizer.Parameters, (float)maxNorm) is { } discriminatorNorm)
                norms["discriminator_grad_norm"] = discriminatorNorm;
        }
        var host = Tensor.Items([.. microTerms.SelectMany(t => t.Values), .. norms.Values, .. overflowProbe != null ? [overflowProbe] : Array.Empty<Tensor>()]);
        int next = 0;
        foreach (var terms in microTerms)
        {
            Accumulate(values, terms.Keys, host.AsSpan(next, terms.Count), share, stepsDone + 1);
            next += terms.Count;
        }
        double scaleUsed = Precision.Scale;
        bool apply = Precision.Update(overflowProbe != null ? host[^1] : 0f);
        Precision.Log(values, scaleUsed);
        if (!apply)
        {
            // fp16 gradients overflowed at this loss scale: nothing is applied, the next step tries half the scale.
            Model.ZeroGrad();
            Loss.ZeroGrad();
            return values;
        }
        values["grad_norm"] = NormChecked(norms, "grad_norm", host, ref next, "the tokenizer's gradient norm", stepsDone + 1);
        if (trainDiscriminator)
            values["discriminator_grad_norm"] = NormChecked(norms, "discriminator_grad_norm", host, ref next, "the discriminator's gradient norm", stepsDone + 1);

        if (Settings.Loop.LogsGradNormsAt(stepsDone))
            foreach (var (name, norm) in GradientNorms.PerParameter(Model)) values[name] = norm;
        Optimizer.Step();
        Schedule.Advance(Optimizer);
        Model.ZeroGrad();
        if (trainDiscriminator)
        {
            DiscriminatorOptimizer.Step();
            DiscriminatorSchedule.Advance(DiscriminatorOptimizer);
            Loss.ZeroGrad();
        }
        Ema?.Step(_parameters);
        return values;
    }

    /// <summary>Adds each term's share to <paramref name="values"/>; a non-finite term stops the run, naming a
    /// component (reconstruction_loss, ...) in preference to the sums it flows into.</summary>
    private static void Accumulate(Dictionary<string, double> values, IEnumerable<string> names, ReadOnlySpan<float> termValues, float share, long step)
    {
        string? bad = null;
        double badValue = 0;
        int i = 0;
        foreach (var name in names)
        {
            double v = termValues[i++];
            if (!double.IsFinite(v) && (bad == null || (AggregateTerms.Contains(bad) && !AggregateTerms.Contains(name))))
                (bad, badValue) = (name, v);
            values[name] = values.GetValueOrDefault(name) + v * share;
        }
        if (bad != null) throw new TrainingDivergedException(bad, step, badValue);
    }

    /// <summary>The norm before clipping to training.max_grad_norm (NaN when not clipping); a non-finite norm stops the run.</summary>
    private double NormChecked(Dictionary<string, Tensor> norms, string key, float[] host, ref int read, string what, long step)
    {
        if (!norms.ContainsKey(key)) return Settings.MaxGradNorm == null ? double.NaN : 0.0;
        double norm = host[read++];
        if (!double.IsFinite(norm)) throw new TrainingDivergedException(what, step, norm);
        return norm;
    }
}
