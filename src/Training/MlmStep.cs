using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Autograd.Optim;
using MaskBit.Distributed;
using MaskBit.Kernels;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;

namespace MaskBit.Models.Training;

/// <summary>Masking and label-dropout draws from a checkpointable <see cref="Rng"/> (its state is saved with
/// the training checkpoint, so a resumed run draws what the uninterrupted one would have). With
/// <paramref name="worldSize"/> ranks each holding its share of a global batch (draws are per sample, sample after
/// sample), every rank draws for the whole global batch and keeps the slice of rank <paramref name="rank"/>: the
/// ranks' generators stay identical, and the samples get the draws one process with the global batch would give.</summary>
public sealed class RngRandomSource(Rng rng, int rank = 0, int worldSize = 1) : IRandomSource
{
    public Rng Rng { get; } = rng;

    public void Uniform(Span<float> destination) => Draw(destination, static rng => rng.NextFloat());

    public void CategoricalUniform(Span<float> destination) => Uniform(destination);

    public void Gumbel(Span<float> destination) => Draw(destination, static rng =>
    {
        double u = ((rng.NextUInt64() >> 40) + 0.5) / (1 << 24);   // strictly inside (0, 1)
        return (float)-Math.Log(-Math.Log(u));
    });

    /// <summary>A fresh stream per reservation, seeded by one draw of the generator (the same on every rank); rank r
    /// takes the stretch after the earlier ranks' shares, as one process with the global batch would.</summary>
    public CounterStream UniformStream(long count) => new(Rng.NextUInt64(), rank * count);

    private void Draw(Span<float> destination, Func<Rng, float> next)
    {
        for (int r = 0; r < worldSize; r++)
        {
            if (r == rank) for (int i = 0; i < destination.Length; i++) destination[i] = next(Rng);
            else for (int i = 0; i < destination.Length; i++) next(Rng);
        }
    }
}

/// <summary>
/// One Stage-II optimisation step as the reference's scripts/train_maskbit.py takes it: the batch's tokens split into
/// groups and masked per sample along the train schedule, class labels dropped for classifier-free guidance, the
/// forward in train mode, the MLM loss, backward, under mpirun the ranks' gradients averaged
/// (<see cref="GradientAverager"/>, started while the backward runs), gradient clipping on the device, then the loss, norm and logged
/// statistics in one download (the NaN stop needs them) before AdamW steps, its schedule advances and the EMA
/// follows. With training.gradient_accumulation_steps above 1 the masking, forward and backward repeat per
/// micro-batch (each loss divided by their number) before that one clipped step. training.mixed_precision runs the
/// forward and loss under autocast and, for fp16, scales the loss (<see cref="MixedPrecision"/>: a step whose
/// gradients overflow is skipped, logged as skipped_steps). Every random draw (masking, label dropout, dropout masks) comes from one checkpointed <see cref="Rng"/>.
/// The training loop, <c>maskbit bench</c> and <c>maskbit profile</c> all run this type.
/// </summary>
public sealed class MlmStep
{
    public const string ModelPart = "model";

    public GeneratorTrainingSettings Settings { get; }
    public MaskedGenerator Generator { get; }
    public AdamW Optimizer { get; }
    public LrSchedule Schedule { get; }
    public Ema? Ema { get; }
    public Rng Rng { get; }
    /// <summary>training.mixed_precision: the forward's autocast and fp16's loss scaling.</summary>
    public MixedPrecision Precision { get; }
    private readonly RngRandomSource _random;
    private readonly MlmLoss _loss;
    private readonly List<Tensor> _parameters;
    /// <summary>Averages the gradients over the ranks under mpirun.</summary>
    public GradientAverager Gradients { get; } = new(ProcessGroup.World);

    public MlmStep(GeneratorConfig generator, GeneratorTrainingSettings settings)
    {
        Settings = settings;
        Precision = new MixedPrecision(settings.MixedPrecision);
        Generator = new MaskedGenerator(generator, settings.Seed);
        Rng = new Rng((ulong)settings.Seed);
        Generator.DropoutGenerator = Rng;
        Generator.Transformer.ActivationCheckpointing = settings.ActivationCheckpointing;
        Generator.Train();
        _random = new RngRandomSource(Rng, ProcessGroup.World.Rank, ProcessGroup.World.WorldSize);
        _loss = new MlmLoss(settings.LabelSmoothing, settings.SumSplits);
        _parameters = Generator.Parameters().ToList();
        var o = settings.Optimizer;
        Optimizer = o.Create(_parameters);
        Schedule = settings.Schedule.Create(o.LearningRate, settings.MaxTrainSteps);
        Schedule.SetStep(0, Optimizer);
        if (settings.UseEma) Ema = new Ema(_parameters, GeneratorTrainingSettings.EmaDecay);
    }

    /// <summary>The step of a config (<paramref name="batchSize"/> replaces training.per_gpu_batch_size; benchmarks).</summary>
    public static MlmStep From(MaskBitConfig config, int? batchSize = null)
    {
        var settings = GeneratorTrainingSettings.From(config);
        return new MlmStep(GeneratorConfig.From(config), batchSize is { } b ? settings with { BatchSize = b } : settings);
    }

    /// <summary>The generator, its optimizer, schedule and EMA, the random generator and the fp16 loss scale.</summary>
    public TrainingState State(string configYaml) => new()
    {
        Modules = new Dictionary<string, Module> { [ModelPart] = Generator },
        Optimizers = new Dictionary<string, AdamW> { [ModelPart] = Optimizer },
        Schedules = new Dictionary<string, LrSchedule> { [ModelPart] = Schedule },
        Emas = Ema == null ? new Dictionary<string, Ema>() : new Dictionary<string, Ema> { [ModelPart] = Ema },
        Rngs = new Dictionary<string, Rng> { [ModelPart] = Rng },
        LossScale = Precision.CheckpointState,
        ConfigYaml = configYaml,
    };

    /// <summary>The step after <paramref name="stepsDone"/> steps over training.gradient_accumulation_steps
    /// micro-batches from <paramref name="nextBatch"/>, each loss divided by their number (as accelerate does); returns
    /// the MLM loss, the masked-only loss and the accuracies (averaged over the micro-batches), the gradient norm
    /// before clipping (per parameter every experiment.log_grad_norm_every steps) and the learning rate used.</summary>
    /// <exception cref="TrainingDivergedException">The loss or the norm is NaN or ±Inf; nothing was applied.</exception>
    public Dictionary<string, double> Run(Func<TokenBatch> nextBatch, long stepsDone)
    {
        using var memoryMode = Settings.MemoryMode();
        int micro = Settings.AccumulationSteps;
        double learningRate = Optimizer.LearningRate;
        var logged = new List<Tensor>();
        var statistics = new List<MlmLossStatistics>();
        for (int m = 0; m < micro; m++)
        {
            Tensor loss;
            MlmLossStatistics batchStatistics;
            using (Precision.Autocast()) (loss, batchStatistics) = Loss(nextBatch(), _random);
            using (m == micro - 1 ? Gradients.AverageDuring(_parameters) : null)
                Precision.Backward(micro == 1 ? loss : loss.MulScalar(1f / micro));
            logged.Add(loss);
            logged.AddRange(batchStatistics.Sums);
            statistics.Add(batchStatistics);
        }
        Gradients.Wait();
        Settings.ReleaseIdleMemory();
        var overflowProbe = Precision.Unscale(_parameters);
        var norm = GradClip.ClipGradNormOnDevice(_parameters, (float)(Settings.MaxGradNorm ?? double.PositiveInfinity));
        if (norm != null) logged.Add(norm);
        if (overflowProbe != null) logged.Add(overflowProbe);
        var host = Tensor.Items(logged);
        float gradNorm = norm != null ? host[overflowProbe != null ? ^2 : ^1] : 0f;
        double scaleUsed = Precision.Scale;
        bool apply = Precision.Update(overflowProbe != null ? host[^1] : 0f);
        double lossSum = 0, maskedLossSum = 0, correctSum = 0, maskedCorrectSum = 0;
        int stride = 1 + statistics[0].Sums.Count;
        for (int m = 0; m < micro; m++)
        {
            float lossValue = host[m * stride];
            if (!float.IsFinite(lossValue)) throw new TrainingDivergedException("mlm_loss", stepsDone + 1, lossValue);
            var log = statistics[m].ToLog(host.AsSpan(m * stride + 1, stride - 1));
            (lossSum, maskedLossSum, correctSum, maskedCorrectSum) =
                (lossSum + lossValue, maskedLossSum + log.MaskedTokenLoss, correctSum + log.CorrectTokens, maskedCorrectSum + log.MaskedCorrectTokens);
        }
        var values = new Dictionary<string, double>
        {
            ["lr"] = learningRate, ["train/mlm_loss"] = lossSum / micro, ["train/masked_token_loss"] = maskedLossSum / micro,
            ["train/correct_tokens"] = correctSum / micro, ["train/masked_correct_tokens"] = maskedCorrectSum / micro, ["grad_norm"] = gradNorm,
        };
        Precision.Log(values, scaleUsed);
        if (!apply)
        {
            // fp16 gradients overflowed at this loss scale: nothing is applied, the next step tries half the scale.
            Optimizer.ZeroGrad();
            return values;
        }
        if (!float.IsFinite(gradNorm)) throw new TrainingDivergedException("grad_norm", stepsDone + 1, gradNorm);
        if (Settings.Loop.LogsGradNormsAt(stepsDone))
            foreach (var (name, parameterNorm) in GradientNorms.PerParameter(Generator)) values[name] = parameterNorm;
        Optimizer.Step();
        Schedule.Advance(Optimizer);
        Optimizer.ZeroGrad();
        Ema?.Step(_parameters);
        return values;
    }

    /// <summary>The MLM loss of one batch in the generator's current mode: groups masked along the train schedule and
    /// (with <paramref name="dropLabels"/>) labels dropped at model.mlm_model.class_label_dropout, drawn from
    /// <paramref name="random"/> (<see cref="MaskedInputs"/>).</summary>
    public (Tensor Loss, MlmLossStatistics Statistics) Loss(TokenBatch batch, IRandomSource random, bool dropLabels = true)
    {
        var (masked, labels) = MaskedInputs(batch, random, dropLabels);
        var logits = Generator.ForwardEffective(masked.Tokens, labels);
        return _loss.Forward(logits, masked.Targets, masked.Mask);
    }

    /// <summary>A batch on the generator's device, masked for the loss, and its labels as the model reads them. The
    /// host draws one value per sample (the masking probability, the label dropout); the groups' draws are made on the
    /// device (<see cref="Masking.MaskBatch"/>), so the batch reaches the device in one upload: its tokens, the
    /// effective labels and the samples' mask thresholds.</summary>
    public (MaskedBatch Masked, Tensor Labels) MaskedInputs(TokenBatch batch, IRandomSource random, bool dropLabels = true)
    {
        var cfg = Generator.Config;
        int samples = batch.Count, tokens = batch.Tokens.Length;
        var (_, probabilities) = Masking.MaskProbabilities(samples, Settings.TrainMaskSchedule, Settings.MinMaskingRatio, random);
        var groupDraws = random.UniformStream((long)tokens * cfg.Splits);
        var labelDraws = new float[samples];
        random.Uniform(labelDraws);
        var dropped = labelDraws.Select(u => dropLabels && u < Settings.LabelDropout).ToArray();

        var packed = new int[tokens + 2 * samples];
        batch.Tokens.CopyTo(packed, 0);
        Generator.EffectiveLabels(batch.Labels, dropped).CopyTo(packed, tokens);
        for (int b = 0; b < samples; b++) packed[tokens + samples + b] = CounterRandom.UnitThreshold(probabilities[b]);
        var uploaded = Tensor.FromInts(packed, [packed.Length], Generator.PosEmb.Device);
        var masked = Masking.MaskBatch(uploaded.Narrow(0, 0, tokens).Reshape(samples, tokens / Math.Max(samples, 1)),
            uploaded.Narrow(0, tokens + samples, samples), cfg.CodebookSize, cfg.Splits, cfg.MaskToken, groupDraws);
        return (masked, uploaded.Narrow(0, tokens, samples));
    }
}
