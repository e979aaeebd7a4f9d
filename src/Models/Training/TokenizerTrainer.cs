using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Autograd.Optim;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

public sealed class TokenizerTrainerOptions
{
    /// <summary>Run folder: checkpoints, metrics.jsonl, config.yaml, train_images/.</summary>
    public required string OutputDir { get; init; }
    /// <summary>Weights of the perceptual network (losses.perceptual_loss).</summary>
    public string? PerceptualWeights { get; init; }
    /// <summary>Train with the perceptual term off when losses.perceptual_weight &gt; 0 but no network is available.</summary>
    public bool AllowNoPerceptual { get; init; }
    /// <summary>Progress lines and notices.</summary>
    public TextWriter Log { get; init; } = TextWriter.Null;
    /// <summary>Called after every optimisation step (progress bars, tests).</summary>
    public Action<TrainingStepReport>? OnStep { get; init; }
    /// <summary>Training images instead of dataset.params.train_shards_path_or_url.</summary>
    public IImageDataset? Dataset { get; init; }
}

/// <summary>One finished step: <see cref="Step"/> steps are done; <see cref="Values"/> holds every loss term
/// (averaged over accumulated micro-batches), the gradient norms and the learning rates.</summary>
public sealed record TrainingStepReport(long Step, long MaxSteps, IReadOnlyDictionary<string, double> Values, double ItPerSecond);

public enum TrainingOutcome { Completed, Cancelled }

public sealed record TrainingResult(TrainingOutcome Outcome, long Step, string? LastCheckpoint);

/// <summary>A loss term (or gradient norm) became NaN or ±Inf; nothing of that step was applied or saved.</summary>
public sealed class TrainingDivergedException(string term, long step, double value, string? lastCheckpoint)
    : Exception($"training stopped: {term} is {value.ToString(CultureInfo.InvariantCulture)} at step {step}; " +
                (lastCheckpoint != null ? $"the last good checkpoint is {lastCheckpoint}" : "no checkpoint was written yet"))
{
    public string Term { get; } = term;
    public long Step { get; } = step;
    public string? LastCheckpoint { get; } = lastCheckpoint;
}

/// <summary>
/// Stage-I training of the conv tokenizer, following the reference's scripts/train_tokenizer.py: per step the
/// generator objective (reconstruction + perceptual + quantizer + adaptive GAN) is back-propagated and the
/// tokenizer's AdamW stepped, then — from losses.discriminator_start on — the discriminator objective on real
/// images vs the detached reconstructions and the discriminator's AdamW. Both have cosine_with_minimum (or
/// other) schedules, the discriminator's over max_train_steps − discriminator_start; gradients are clipped to
/// training.max_grad_norm and accumulated over training.gradient_accumulation_steps micro-batches (each
/// loss divided by their number, as accelerate does); an EMA (decay 0.999) follows the tokenizer's weights.
/// <para>Every step runs in a <see cref="TensorScope"/>. Checkpoints (checkpoint-&lt;step&gt;.safetensors) hold the
/// models, optimizers, EMA, schedules' positions and the data position, so a resumed run continues bit for bit.
/// A NaN/Inf loss term stops the run before anything of that step is applied; cancellation writes a checkpoint.</para>
/// </summary>
public sealed partial class TokenizerTrainer : IDisposable
{
    public const string ModelPart = "model", LossPart = "loss", DiscriminatorPart = "discriminator";
    public const string MetricsFileName = "metrics.jsonl", ConfigFileName = "config.yaml", ImagesFolder = "train_images";

    private static readonly HashSet<string> AggregateTerms = new() { "total_loss", "discriminator_loss" };

    public MaskBitConfig Config { get; }
    public TokenizerTrainingSettings Settings { get; }
    public ConvVQModel Model { get; }
    public VqganLoss Loss { get; }
    public AdamW Optimizer { get; }
    public AdamW DiscriminatorOptimizer { get; }
    public LrSchedule Schedule { get; }
    public LrSchedule DiscriminatorSchedule { get; }
    public Ema? Ema { get; }
    public DataLoader Loader { get; }
    public string OutputDir { get; }
    /// <summary>Optimisation steps done.</summary>
    public long Step { get; private set; }
    public string? LastCheckpoint { get; private set; }

    private readonly TokenizerTrainerOptions _options;
    private readonly TextWriter _log;
    private readonly IReadOnlyList<Tensor> _modelParameters;
    private readonly List<IDisposable> _owned = new();
    private int _dataEpoch, _dataBatch;

    public TokenizerTrainer(MaskBitConfig config, TokenizerTrainerOptions options)
    {
        Config = config;
        _options = options;
        _log = options.Log;
        Settings = TokenizerTrainingSettings.From(config);
        var tokenizerConfig = TokenizerConfig.From(config);
        var discriminatorConfig = DiscriminatorConfig.From(config);
        var lossConfig = PerceptualChecked(VqganLossConfig.From(config));
        int channels = TrainingData.Channels(config);
        if (discriminatorConfig.NumChannels != channels)
            throw new ConfigException($"{config.File}: model.discriminator.num_channels {discriminatorConfig.NumChannels} differs from model.vq_model.num_channels {channels}");
        if (Settings.MixedPrecision != "no")
            _log.WriteLine($"note: training.mixed_precision '{Settings.MixedPrecision}' is not supported; training in float32");

        Model = new ConvVQModel(tokenizerConfig, seed: Settings.Seed);
        Loss = new VqganLoss(discriminatorConfig, lossConfig, perceptual: null, seed: Settings.Seed + 1);
        _modelParameters = Model.Parameters().ToList();
        Optimizer = new AdamW(_modelParameters, Settings.LearningRate, Settings.Beta1, Settings.Beta2, Settings.Epsilon, Settings.WeightDecay);
        DiscriminatorOptimizer = new AdamW(Loss.Parameters(), Settings.DiscriminatorLearningRate, Settings.Beta1, Settings.Beta2,
            Settings.Epsilon, Settings.WeightDecay);
        try
        {
            Schedule = new LrSchedule(Settings.Scheduler, Settings.LearningRate, Settings.WarmupSteps, Settings.MaxTrainSteps, Settings.MinimumRate);
            DiscriminatorSchedule = new LrSchedule(Settings.Scheduler, Settings.DiscriminatorLearningRate, Settings.WarmupSteps,
                Settings.MaxTrainSteps - lossConfig.DiscriminatorStart, Settings.MinimumRate);
        }
        catch (ArgumentException e) { throw new ConfigException($"{config.File}: lr_scheduler.scheduler: {e.Message}"); }
        Schedule.SetStep(0, Optimizer);
        DiscriminatorSchedule.SetStep(0, DiscriminatorOptimizer);
        if (Settings.UseEma) Ema = new Ema(_modelParameters, TokenizerTrainingSettings.EmaDecay);

        Loader = CreateLoader(options.Dataset ?? OpenTrainingSet(channels));
        OutputDir = Path.GetFullPath(options.OutputDir);
        Directory.CreateDirectory(OutputDir);
    }

    private VqganLossConfig PerceptualChecked(VqganLossConfig loss)
    {
        if (loss.PerceptualWeight == 0f) return loss;
        // No perceptual network (LPIPS / ResNet-50) is implemented yet, so given weights cannot be used either.
        string problem = _options.PerceptualWeights == null
            ? $"losses.perceptual_weight is {loss.PerceptualWeight} but no perceptual weights were given (--perceptual-weights FILE)"
            : $"losses.perceptual_loss '{loss.PerceptualLoss}' is not implemented yet, so {_options.PerceptualWeights} cannot be used";
        if (!_options.AllowNoPerceptual)
            throw new ConfigException($"{Config.File}: {problem}; pass --allow-no-perceptual to train without the perceptual term, or set losses.perceptual_weight=0");
        _log.WriteLine($"note: {problem}; training with the perceptual term off (--allow-no-perceptual)");
        return loss with { PerceptualWeight = 0f };
    }

    private IImageDataset OpenTrainingSet(int channels)
    {
        string source = Settings.TrainSource
            ?? throw new ConfigException($"{Config.File}: required key 'dataset.params.train_shards_path_or_url' is missing");
        var dataset = TrainingData.Open(source, train: true, channels);
        if (dataset is IDisposable disposable) _owned.Add(disposable);
        return dataset;
    }

    private DataLoader CreateLoader(IImageDataset dataset)
    {
        if (Settings.MaxTrainExamples is { } max) dataset = SubsetDataset.First(dataset, (int)Math.Min(max, int.MaxValue));
        var transform = TrainingData.Transform(Config);
        var options = new DataLoaderOptions
        {
            BatchSize = Settings.BatchSize, Seed = Settings.Seed, Workers = Settings.Workers, DropLast = true,
            Transform = transform.Train, OnSkipped = s => _log.WriteLine($"warning: skipped unreadable sample {s.Key}: {s.Reason}"),
        };
        if (Settings.OverfitBatch)
        {
            // The reference keeps the first overfit_batch_num batches and cycles through them in order.
            var order = new DataLoader(dataset, options).EpochOrder(0);
            dataset = new SubsetDataset(dataset, order.Take(Settings.OverfitBatchNum * Settings.BatchSize).ToArray());
            options = new DataLoaderOptions
            {
                BatchSize = options.BatchSize, Seed = options.Seed, Workers = options.Workers, DropLast = true,
                Transform = options.Transform, OnSkipped = options.OnSkipped, Shuffle = false,
            };
        }
        var loader = new DataLoader(dataset, options);
        if (loader.BatchesPerEpoch == 0)
            throw new ConfigException($"{Config.File}: the training data has {dataset.Count} images, fewer than training.per_gpu_batch_size {Settings.BatchSize}");
        return loader;
    }

    private TrainingState State()
    {
        var state = new TrainingState
        {
            Modules = new Dictionary<string, Module> { [ModelPart] = Model, [LossPart] = Loss },
            Optimizers = new Dictionary<string, AdamW> { [ModelPart] = Optimizer, [DiscriminatorPart] = DiscriminatorOptimizer },
            Emas = Ema != null ? new Dictionary<string, Ema> { [ModelPart] = Ema } : new Dictionary<string, Ema>(),
        };
        return state;
    }

    // ---- the loop --------------------------------------------------------------------------------------------

    /// <summary>Trains until training.max_train_steps (resuming from the newest checkpoint in the output folder
    /// when experiment.resume is on). Cancellation stops after the current step and writes a checkpoint.</summary>
    /// <exception cref="TrainingDivergedException">A loss term or gradient norm became NaN or ±Inf.</exception>
    public TrainingResult Run(CancellationToken cancellation = default)
    {
        File.WriteAllText(Path.Combine(OutputDir, ConfigFileName), Config.ToYaml());
        StartOrResume();
        using var metrics = new MetricsLog(Path.Combine(OutputDir, MetricsFileName), Step);
        _log.WriteLine($"training {Settings.Name}: tokenizer {Model.ParameterCount():N0} parameters, discriminator {Loss.ParameterCount():N0}; " +
                       $"{Loader.Dataset.Count:N0} images, batch {Settings.BatchSize} × {Settings.AccumulationSteps} accumulation; " +
                       $"steps {Step}/{Settings.MaxTrainSteps}; output {OutputDir}");

        using var batches = Loader.Batches(_dataEpoch, _dataBatch).GetEnumerator();
        var window = Stopwatch.StartNew();
        long windowStart = Step;
        double itPerSecond = 0;
        while (Step < Settings.MaxTrainSteps)
        {
            if (cancellation.IsCancellationRequested)
            {
                if (LastCheckpoint == null || !LastCheckpoint.EndsWith(CheckpointName(Step), StringComparison.Ordinal)) SaveCheckpoint();
                _log.WriteLine($"cancelled at step {Step}; resume with experiment.resume=true from {LastCheckpoint}");
                return new TrainingResult(TrainingOutcome.Cancelled, Step, LastCheckpoint);
            }

            Dictionary<string, double> values;
            using (TensorScope.Begin())
            {
                values = TrainStep(batches, out var lastImages);
                Step++;
                if (Settings.GenerateEvery > 0 && Step % Settings.GenerateEvery == 0) SaveReconstructions(lastImages);
            }

            bool logNow = Step % Settings.LogEvery == 0 || Step == Settings.MaxTrainSteps;
            if (logNow)
            {
                itPerSecond = (Step - windowStart) / Math.Max(window.Elapsed.TotalSeconds, 1e-9);
                values["it_per_s"] = itPerSecond;
                values["samples_per_s"] = itPerSecond * Settings.BatchSize * Settings.AccumulationSteps;
                metrics.Write(Step, values);
                _log.WriteLine(ProgressLine(values, itPerSecond));
                window.Restart();
                windowStart = Step;
            }
            _options.OnStep?.Invoke(new TrainingStepReport(Step, Settings.MaxTrainSteps, values, itPerSecond));
            if (Settings.SaveEvery > 0 && Step % Settings.SaveEvery == 0) SaveCheckpoint();
            if (Settings.EvalEvery > 0 && Step % Settings.EvalEvery == 0 && Settings.EvalSource != null) EvaluateDuringTraining(metrics);
        }
        if (LastCheckpoint == null || !LastCheckpoint.EndsWith(CheckpointName(Step), StringComparison.Ordinal)) SaveCheckpoint();
        _log.WriteLine($"finished: {Step} steps; final checkpoint {LastCheckpoint}");
        return new TrainingResult(TrainingOutcome.Completed, Step, LastCheckpoint);
    }

    /// <summary>One optimisation step over training.gradient_accumulation_steps micro-batches; returns the step's
    /// values and hands out the last micro-batch's images (for reconstruction grids). The loss terms and gradient
    /// norms stay on the device until all gradients are clipped, then come to the host in one download (logging
    /// and the NaN stop need them), before either optimizer steps.</summary>
    private Dictionary<string, double> TrainStep(IEnumerator<Batch> batches, out Tensor lastImages)
    {
        int micro = Settings.AccumulationSteps;
        float share = 1f / micro;
        bool trainDiscriminator = Loss.ShouldDiscriminatorBeTrained(Step);
        var values = new Dictionary<string, double>
        {
            ["lr"] = Optimizer.LearningRate,
            ["lr_discriminator"] = trainDiscriminator ? DiscriminatorOptimizer.LearningRate : 0.0,
        };
        lastImages = null!;
        var microTerms = new List<Dictionary<string, Tensor>>();
        for (int m = 0; m < micro; m++)
        {
            var images = NextBatch(batches).Images;
            lastImages = images;
            var (reconstructions, quantizer) = Model.Forward(images);
            var (loss, terms) = Loss.ForwardGenerator(images, reconstructions, quantizer, Step, Model.LastLayer);
            microTerms.Add(terms);
            (micro == 1 ? loss : loss * share).Backward();
            if (!trainDiscriminator) continue;
            var (discriminatorLoss, discriminatorTerms) = Loss.ForwardDiscriminator(images, reconstructions, Step);
            microTerms.Add(discriminatorTerms);
            (micro == 1 ? discriminatorLoss : discriminatorLoss * share).Backward();
        }

        var norms = new Dictionary<string, Tensor>();
        if (Settings.MaxGradNorm is { } maxNorm)
        {
            if (GradClip.ClipGradNormOnDevice(_modelParameters, (float)maxNorm) is { } norm) norms["grad_norm"] = norm;
            if (trainDiscriminator && GradClip.ClipGradNormOnDevice(DiscriminatorOptimizer.Parameters, (float)maxNorm) is { } discriminatorNorm)
                norms["discriminator_grad_norm"] = discriminatorNorm;
        }
        var host = Tensor.Items([.. microTerms.SelectMany(t => t.Values), .. norms.Values]);
        int next = 0;
        foreach (var terms in microTerms)
        {
            Accumulate(values, terms.Keys, host.AsSpan(next, terms.Count), share);
            next += terms.Count;
        }
        values["grad_norm"] = NormChecked(norms, "grad_norm", host, ref next, "the tokenizer's gradient norm");
        if (trainDiscriminator)
            values["discriminator_grad_norm"] = NormChecked(norms, "discriminator_grad_norm", host, ref next, "the discriminator's gradient norm");

        Optimizer.Step();
        Schedule.Advance(Optimizer);
        Model.ZeroGrad();
        if (trainDiscriminator)
        {
            DiscriminatorOptimizer.Step();
            DiscriminatorSchedule.Advance(DiscriminatorOptimizer);
            Loss.ZeroGrad();
        }
        Ema?.Step(_modelParameters);
        return values;
    }

    private Batch NextBatch(IEnumerator<Batch> batches)
    {
        batches.MoveNext();   // Batches() never ends
        var batch = batches.Current;
        (_dataEpoch, _dataBatch) = (batch.Epoch, batch.Index + 1);
        return batch;
    }

    /// <summary>Adds each term's share (its host value in <paramref name="termValues"/>) to <paramref name="values"/>;
    /// a non-finite term stops the run, naming a component (reconstruction_loss, ...) in preference to the sums it
    /// flows into.</summary>
    private void Accumulate(Dictionary<string, double> values, IEnumerable<string> names, ReadOnlySpan<float> termValues, float share)
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
        if (bad != null) throw new TrainingDivergedException(bad, Step + 1, badValue, LastCheckpoint);
    }

    /// <summary>The norm before clipping to training.max_grad_norm, read from <paramref name="host"/> (NaN when not
    /// clipping); a non-finite norm stops the run.</summary>
    private double NormChecked(Dictionary<string, Tensor> norms, string key, float[] host, ref int read, string what)
    {
        if (!norms.ContainsKey(key)) return Settings.MaxGradNorm == null ? double.NaN : 0.0;
        double norm = host[read++];
        if (!double.IsFinite(norm)) throw new TrainingDivergedException(what, Step + 1, norm, LastCheckpoint);
        return norm;
    }

    private string ProgressLine(IReadOnlyDictionary<string, double> v, double itPerSecond)
    {
        var line = new System.Text.StringBuilder();
        line.Append(CultureInfo.InvariantCulture, $"step {Step}/{Settings.MaxTrainSteps}");
        foreach (var (label, key) in new[] { ("loss", "total_loss"), ("rec", "reconstruction_loss"), ("quant", "quantizer_loss"),
                                             ("gan", "weighted_gan_loss"), ("disc", "discriminator_loss") })
            if (v.TryGetValue(key, out var x)) line.Append(CultureInfo.InvariantCulture, $"  {label} {x:F4}");
        line.Append(CultureInfo.InvariantCulture, $"  lr {v["lr"]:0.00e+00}  {itPerSecond:F2} it/s");
        double remaining = (Settings.MaxTrainSteps - Step) / Math.Max(itPerSecond, 1e-9);
        if (Step < Settings.MaxTrainSteps && double.IsFinite(remaining) && remaining < TimeSpan.MaxValue.TotalSeconds)
            line.Append(CultureInfo.InvariantCulture, $"  eta {TimeSpan.FromSeconds(Math.Round(remaining)):c}");
        return line.ToString();
    }

    // ---- reconstructions and evaluation (EMA weights when kept) ---------------------------------------------

    /// <summary>Runs <paramref name="body"/> with the EMA weights in the model (the reference's store / copy_to /
    /// restore around generation and evaluation).</summary>
    private T WithEmaWeights<T>(Func<T> body)
    {
        if (Ema == null) return body();
        List<Tensor> stored;
        using (Tape.NoGrad()) stored = _modelParameters.Select(p => p.Detach().Clone()).ToList();
        Ema.CopyTo(_modelParameters);
        try { return body(); }
        finally { for (int i = 0; i < stored.Count; i++) _modelParameters[i].CopyFrom_(stored[i]); }
    }

    private void SaveReconstructions(Tensor images)
    {
        int n = Math.Min(Settings.NumGeneratedImages, images.Shape[0]);
        if (n < 1) return;
        var originals = images.Narrow(0, 0, n);
        var grid = WithEmaWeights(() => TokenizerEvaluation.ComparisonGrid(originals, TokenizerEvaluation.Reconstruct(Model, originals).Reconstructions));
        string path = Path.Combine(OutputDir, ImagesFolder, $"{Step:D8}.png");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        ImageIO.Write(path, grid);
    }

    private void EvaluateDuringTraining(MetricsLog metrics)
    {
        var eval = TrainingData.Open(Settings.EvalSource!, train: false, TrainingData.Channels(Config));
        IReadOnlyDictionary<string, double> scores;
        try
        {
            var loader = TokenizerEvaluation.EvalLoader(eval, TrainingData.Transform(Config), Settings.BatchSize, Settings.Workers);
            scores = WithEmaWeights(() => TokenizerEvaluation.Evaluate(Model, loader.Epoch(0)));
        }
        finally { (eval as IDisposable)?.Dispose(); }
        metrics.Write(Step, scores.ToDictionary(kv => "eval/" + kv.Key, kv => kv.Value));
        _log.WriteLine($"eval at step {Step}: " + string.Join("  ", scores.Select(kv => $"{kv.Key} {kv.Value.ToString("F4", CultureInfo.InvariantCulture)}")));
    }

    // ---- checkpoints -----------------------------------------------------------------------------------------

    private static string CheckpointName(long step) => $"checkpoint-{step}.safetensors";

    [GeneratedRegex(@"^checkpoint-(\d+)\.safetensors$")]
    private static partial Regex CheckpointPattern();

    /// <summary>The newest checkpoint-&lt;step&gt;.safetensors in <paramref name="directory"/>, or null.</summary>
    public static string? LatestCheckpoint(string directory) =>
        !Directory.Exists(directory) ? null
        : Directory.EnumerateFiles(directory, "checkpoint-*.safetensors")
            .Select(f => (Path: f, Match: CheckpointPattern().Match(Path.GetFileName(f))))
            .Where(x => x.Match.Success)
            .OrderByDescending(x => long.Parse(x.Match.Groups[1].Value, CultureInfo.InvariantCulture))
            .Select(x => x.Path)
            .FirstOrDefault();

    private void SaveCheckpoint()
    {
        var state = State();
        state.Step = Step;
        state.ConfigYaml = Config.ToYaml();
        state.Extra["data_epoch"] = _dataEpoch.ToString(CultureInfo.InvariantCulture);
        state.Extra["data_batch"] = _dataBatch.ToString(CultureInfo.InvariantCulture);
        state.Extra["scheduler_step"] = Schedule.Step.ToString(CultureInfo.InvariantCulture);
        state.Extra["discriminator_scheduler_step"] = DiscriminatorSchedule.Step.ToString(CultureInfo.InvariantCulture);
        string path = Path.Combine(OutputDir, CheckpointName(Step));
        TrainingCheckpoint.Save(path, state);
        LastCheckpoint = path;
        _log.WriteLine($"saved checkpoint {path}");
    }

    private void StartOrResume()
    {
        string? latest = Settings.Resume ? LatestCheckpoint(OutputDir) : null;
        if (latest != null)
        {
            var state = State();
            TrainingCheckpoint.Restore(latest, state);
            Step = state.Step;
            _dataEpoch = int.Parse(state.Extra["data_epoch"], CultureInfo.InvariantCulture);
            _dataBatch = int.Parse(state.Extra["data_batch"], CultureInfo.InvariantCulture);
            Schedule.SetStep(long.Parse(state.Extra["scheduler_step"], CultureInfo.InvariantCulture), Optimizer);
            DiscriminatorSchedule.SetStep(long.Parse(state.Extra["discriminator_scheduler_step"], CultureInfo.InvariantCulture), DiscriminatorOptimizer);
            LastCheckpoint = latest;
            _log.WriteLine($"resumed from {latest} at step {Step}");
            return;
        }
        if (Settings.Resume) _log.WriteLine("no checkpoint to resume from; training from scratch");
        if (Settings.InitCheckpoint.Length > 0)
        {
            // As the reference, a missing init checkpoint is ignored; the weights (EMA if present) start the run.
            if (!File.Exists(Settings.InitCheckpoint)) _log.WriteLine($"note: experiment.init_checkpoint {Settings.InitCheckpoint} does not exist; ignored");
            else
            {
                var source = TokenizerWeights.Load(Model, Settings.InitCheckpoint);
                if (Ema != null) for (int i = 0; i < _modelParameters.Count; i++) Ema.Shadow[i].CopyFrom_(_modelParameters[i]);
                _log.WriteLine($"initialised the tokenizer from {Settings.InitCheckpoint} ({source})");
            }
        }
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}
