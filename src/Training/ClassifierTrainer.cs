using System.Globalization;
using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Autograd.Optim;
using MaskBit.Distributed;
using MaskBit.Models.Classifier;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Models.Metrics;

namespace MaskBit.Models.Training;

/// <summary>The settings of a classifier run: the loop's, the shared ones (<see cref="RunSettings"/>), the
/// optimizer and the schedule.</summary>
public sealed record ClassifierTrainingSettings : StageTrainingSettings
{
    public required string Name { get; init; }
    public int BatchSize { get; init; }

    public const double EmaDecay = 0.999;

    public static ClassifierTrainingSettings From(MaskBitConfig c)
    {
        var run = RunSettings.From(c, TrainingStage.Classifier);
        return WithRunSettings(new ClassifierTrainingSettings
        {
            Name = run.Name,
            Loop = LoopSettings.From(c, run),
            BatchSize = run.TrainingBatchSize(c),
            Optimizer = OptimizerSettings.From(c, TrainingStage.Classifier),
            Schedule = ScheduleSettings.From(c),
        }, run);
    }
}

public sealed class ClassifierTrainerOptions
{
    /// <summary>The run folder (<see cref="RunFolder"/>), which also keeps classifier.safetensors.</summary>
    public required string OutputDir { get; init; }
    public TextWriter Log { get; init; } = TextWriter.Null;
    public Action<TrainingStepReport>? OnStep { get; init; }
}

/// <summary>
/// Trains the <see cref="ImageClassifier"/> that scores generated samples (model.classifier.*): cross-entropy on
/// labelled batches of dataset.params.train_shards_path_or_url, AdamW, the configured schedule and optional EMA,
/// through <see cref="TrainingLoop"/> (run folder, checkpoints, resume, metrics, the NaN stop). Evaluation
/// (experiment.eval_every, dataset.params.eval_shards_path_or_url) scores the accuracy on held-out images. A completed
/// run writes classifier.safetensors: the weights to score with (EMA when kept) and their test accuracy.
/// </summary>
public sealed class ClassifierTrainer : ITrainingStage, IDisposable
{
    public const string WeightsFileName = "classifier.safetensors";
    public const string ModelPart = "model";

    public MaskBitConfig Config { get; }
    public ClassifierTrainingSettings Settings { get; }
    public ImageClassifier Model { get; }
    public AdamW Optimizer { get; }
    public LrSchedule Schedule { get; }
    public Ema? Ema { get; }
    public DataLoader Loader { get; }
    public RunFolder Folder { get; }
    public TrainingState State { get; }
    public string WeightsPath => Path.Combine(Folder.Root, WeightsFileName);

    private readonly ClassifierTrainerOptions _options;
    private readonly List<Tensor> _parameters;
    private readonly GradientAverager _gradients = new(ProcessGroup.World);
    private readonly IImageDataset _train;
    private IEnumerator<Batch>? _batches;

    public ClassifierTrainer(MaskBitConfig config, ClassifierTrainerOptions options)
    {
        Config = config;
        _options = options;
        Settings = ClassifierTrainingSettings.From(config);
        var modelConfig = ClassifierConfig.From(config);
        Model = new ImageClassifier(modelConfig, Settings.Seed);
        Model.Train();
        _parameters = Model.Parameters().ToList();
        var o = Settings.Optimizer;
        Optimizer = o.Create(_parameters);
        Schedule = Settings.Schedule.Create(o.LearningRate, Settings.MaxTrainSteps);
        Schedule.SetStep(0, Optimizer);
        if (Settings.UseEma) Ema = new Ema(_parameters, ClassifierTrainingSettings.EmaDecay);
        State = new TrainingState
        {
            Modules = new Dictionary<string, Module> { [ModelPart] = Model },
            Optimizers = new Dictionary<string, AdamW> { [ModelPart] = Optimizer },
            Schedules = new Dictionary<string, LrSchedule> { [ModelPart] = Schedule },
            Emas = Ema == null ? new Dictionary<string, Ema>() : new Dictionary<string, Ema> { [ModelPart] = Ema },
            ConfigYaml = config.ToYaml(),
        };
        _train = TrainingData.Open(TrainingData.RequireTrainSource(Settings.TrainSource, config), train: true, modelConfig.NumChannels);
        var group = ProcessGroup.World;
        Loader = new DataLoader(_train, new DataLoaderOptions
        {
            BatchSize = Settings.BatchSize, Seed = Settings.Seed, Workers = Settings.Workers, DropLast = true,
            Transform = TrainingData.Transform(config).Train, Rank = group.Rank, WorldSize = group.WorldSize,
            OnSkipped = s => _options.Log.WriteLine($"warning: skipped unreadable sample {s.Key}: {s.Reason}"),
        });
        if (Loader.BatchesPerEpoch == 0)
            throw new ConfigException($"{config.File}: the training data has {_train.Count} images, fewer than one global batch " +
                                      $"(training.per_gpu_batch_size {Settings.BatchSize} × {group.WorldSize} ranks)");
        Folder = new RunFolder(options.OutputDir);
    }

    /// <summary>Trains until training.max_train_steps; a completed run writes <see cref="WeightsPath"/>.</summary>
    public TrainingResult Run(CancellationToken cancellation = default)
    {
        var result = TrainingLoop.Run(Folder, Settings.Loop, this, _options.Log, _options.OnStep, cancellation);
        if (result.Outcome == TrainingOutcome.Completed && ProcessGroup.World.IsMain()) SaveWeights();
        return result;
    }

    private void SaveWeights()
    {
        var metadata = new Dictionary<string, string>
        {
            ["step"] = State.Step.ToString(CultureInfo.InvariantCulture), ["ema"] = (Ema != null).ToString(),
        };
        EmaWeights.With(State, () =>
        {
            if (Evaluate() is { } scores) metadata["eval_accuracy"] = scores["accuracy"].ToString("F4", CultureInfo.InvariantCulture);
            SafeTensors.Save(WeightsPath, Model.StateDict().Select(kv => TensorRecord.FromTensor(kv.Name, kv.Tensor)).ToList(), metadata);
        });
        _options.Log.WriteLine($"saved {WeightsPath}" + (metadata.TryGetValue("eval_accuracy", out var a) ? $" (held-out accuracy {a})" : ""));
    }

    // ---- the stage ---------------------------------------------------------------------------------------------

    public int SamplesPerStep => Loader.GlobalBatchSize * Settings.AccumulationSteps;

    public IReadOnlyList<(string Label, string Key)> ProgressTerms { get; } = [("loss", "train/loss"), ("acc", "train/accuracy")];

    public string Describe() => $"training {Settings.Name}: classifier {Model.ParameterCount():N0} parameters; {_train.Count:N0} images, " +
                                $"batch {Settings.BatchSize} × {Settings.AccumulationSteps} accumulation" +
                                (Loader.Options.WorldSize > 1 ? $" × {Loader.Options.WorldSize} ranks = {SamplesPerStep}" : "");

    public DataPosition Position { get; private set; }

    public void Start(DataPosition position, bool resumed)
    {
        Position = position;
        _batches?.Dispose();
        _batches = Loader.Batches(position.Epoch, position.Batch).GetEnumerator();
        if (!resumed && Settings.Loop.InitCheckpoint.Length > 0)
            _options.Log.WriteLine($"initialised the classifier from {PretrainedModels.LoadClassifierWeights(Model, Settings.Loop.InitCheckpoint)}");
    }

    /// <summary>Cross-entropy over training.gradient_accumulation_steps micro-batches (each divided by their number),
    /// the gradients averaged over the ranks and clipped, then AdamW, the schedule and the EMA.</summary>
    /// <exception cref="TrainingDivergedException">The loss or the gradient norm is NaN or ±Inf; nothing was applied.</exception>
    public Dictionary<string, double> TrainStep(long stepsDone)
    {
        int micro = Settings.AccumulationSteps;
        double learningRate = Optimizer.LearningRate;
        var logged = new List<Tensor>();
        for (int m = 0; m < micro; m++)
        {
            _batches!.MoveNext();   // Batches() never ends
            var batch = _batches.Current;
            Position = new DataPosition(batch.Epoch, batch.Index + 1);
            var logits = Model.Forward(batch.Images);
            var loss = F.CrossEntropy(logits, batch.Labels);
            using (m == micro - 1 ? _gradients.AverageDuring(_parameters) : null)
                (micro == 1 ? loss : loss.MulScalar(1f / micro)).Backward();
            logged.Add(loss.Detach());
            logged.Add(logits.Detach().ArgMaxLastAxis());
            logged.Add(batch.Labels);
        }
        _gradients.Wait();
        var norm = GradClip.ClipGradNormOnDevice(_parameters, (float)(Settings.MaxGradNorm ?? double.PositiveInfinity));
        double lossSum = 0, correct = 0, seen = 0;
        for (int m = 0; m < micro; m++)
        {
            float value = logged[3 * m].Item();
            if (!float.IsFinite(value)) throw new TrainingDivergedException("loss", stepsDone + 1, value);
            lossSum += value;
            var (predicted, labels) = (logged[3 * m + 1].ToIntArray(), logged[3 * m + 2].ToIntArray());
            for (int i = 0; i < labels.Length; i++) correct += predicted[i] == labels[i] ? 1 : 0;
            seen += labels.Length;
        }
        float gradNorm = norm?.Item() ?? 0f;
        if (!float.IsFinite(gradNorm)) throw new TrainingDivergedException("grad_norm", stepsDone + 1, gradNorm);
        var values = new Dictionary<string, double>
        {
            ["lr"] = learningRate, ["train/loss"] = lossSum / micro, ["train/accuracy"] = correct / seen, ["grad_norm"] = gradNorm,
        };
        if (Settings.Loop.LogsGradNormsAt(stepsDone))
            foreach (var (name, parameterNorm) in GradientNorms.PerParameter(Model)) values[name] = parameterNorm;
        Optimizer.Step();
        Schedule.Advance(Optimizer);
        Optimizer.ZeroGrad();
        Ema?.Step(_parameters);
        return values;
    }

    public string SamplesTag => "Train Images";

    /// <summary>A classifier has no images of its own to show; experiment.generate_every writes nothing.</summary>
    public void WriteSamples(long step, string path) { }

    public IReadOnlyDictionary<string, double>? Evaluate()
    {
        if (Settings.EvalSource == null) return null;
        var eval = TrainingData.Open(Settings.EvalSource, train: false, Model.Config.NumChannels);
        try
        {
            Model.Eval();
            return new Dictionary<string, double> { ["accuracy"] = SampleQuality.Score(Model, eval, Settings.BatchSize, TrainingData.Transform(Config)).Agreement };
        }
        finally
        {
            (eval as IDisposable)?.Dispose();
            Model.Train();
        }
    }

    public void Dispose()
    {
        _batches?.Dispose();
        (_train as IDisposable)?.Dispose();
    }
}
