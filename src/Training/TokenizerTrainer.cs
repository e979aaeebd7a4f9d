using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Models.Metrics;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

public sealed class TokenizerTrainerOptions
{
    /// <summary>The run folder (<see cref="RunFolder"/>).</summary>
    public required string OutputDir { get; init; }
    /// <summary>Weights files of the perceptual network, comma-separated (replace losses.perceptual_weights).</summary>
    public string? PerceptualWeights { get; init; }
    /// <summary>Train with the perceptual term off when losses.perceptual_weight &gt; 0 but no weights are given.</summary>
    public bool AllowNoPerceptual { get; init; }
    /// <summary>Progress lines and notices.</summary>
    public TextWriter Log { get; init; } = TextWriter.Null;
    /// <summary>Called after every optimisation step (progress bars, tests).</summary>
    public Action<TrainingStepReport>? OnStep { get; init; }
    /// <summary>Training images instead of dataset.params.train_shards_path_or_url.</summary>
    public IImageDataset? Dataset { get; init; }
    /// <summary>The FID InceptionV3: evaluation during training (eval_every) adds rFID and the Inception Score.</summary>
    public string? InceptionWeights { get; init; }
}

/// <summary>
/// Stage-I training (the reference's scripts/train_tokenizer.py): the <see cref="TokenizerStep"/> on batches of
/// the configured images, through <see cref="TrainingLoop"/> — which keeps the run folder, checkpoints, metrics,
/// resume, cancellation and the NaN stop. Grids are reconstructions of the step's last images.
/// </summary>
public sealed class TokenizerTrainer : ITrainingStage, IDisposable
{
    public MaskBitConfig Config { get; }
    public TokenizerTrainingSettings Settings { get; }
    public TokenizerStep Step { get; }
    public ConvVQModel Model => Step.Model;
    public VqganLoss Loss => Step.Loss;
    public DataLoader Loader { get; }
    public RunFolder Folder { get; }
    public TrainingState State { get; }

    private readonly TokenizerTrainerOptions _options;
    private readonly TextWriter _log;
    private readonly List<IDisposable> _owned = new();
    private IEnumerator<Batch>? _batches;
    private Tensor? _lastImages;
    private readonly InceptionFeatureExtractor? _inception;

    public TokenizerTrainer(MaskBitConfig config, TokenizerTrainerOptions options)
    {
        Config = config;
        _options = options;
        _log = options.Log;
        Settings = TokenizerTrainingSettings.From(config);
        if (options.PerceptualWeights != null)
            Settings = Settings with { PerceptualWeights = TokenizerTrainingSettings.FileList(options.PerceptualWeights) };
        var discriminatorConfig = DiscriminatorConfig.From(config);
        int channels = TrainingData.Channels(config);
        if (discriminatorConfig.NumChannels != channels)
            throw new ConfigException($"{config.File}: model.discriminator.num_channels {discriminatorConfig.NumChannels} differs from model.vq_model.num_channels {channels}");
        Step = new TokenizerStep(TokenizerConfig.From(config), discriminatorConfig, PerceptualChecked(VqganLossConfig.From(config)), Settings);
        State = Step.State(config.ToYaml());
        Loader = CreateLoader(options.Dataset ?? OpenTrainingSet(channels));
        Folder = new RunFolder(options.OutputDir);
        _inception = options.InceptionWeights == null ? null : InceptionFeatureExtractor.Load(options.InceptionWeights);
    }

    /// <summary>Trains until training.max_train_steps, or the <paramref name="target"/> that replaces it (see <see cref="TrainingLoop"/>).</summary>
    public TrainingResult Run(CancellationToken cancellation = default, StepTarget? target = null) =>
        TrainingLoop.Run(Folder, Settings.Loop, this, _log, _options.OnStep, cancellation, target);

    /// <summary>The loss settings, with the perceptual term dropped when asked to (--allow-no-perceptual) and no
    /// weights are given; otherwise the step loads the network, and missing weights stop with where to get them.</summary>
    private VqganLossConfig PerceptualChecked(VqganLossConfig loss)
    {
        if (loss.PerceptualWeight == 0f || Settings.PerceptualWeights.Count > 0 || !_options.AllowNoPerceptual) return loss;
        _log.WriteLine($"note: losses.perceptual_weight is {loss.PerceptualWeight} but no perceptual weights were given; " +
                       "training with the perceptual term off (--allow-no-perceptual)");
        return loss with { PerceptualWeight = 0f };
    }

    private IImageDataset OpenTrainingSet(int channels)
    {
        var dataset = TrainingData.Open(TrainingData.RequireTrainSource(Settings.TrainSource, Config), train: true, channels);
        if (dataset is IDisposable disposable) _owned.Add(disposable);
        return dataset;
    }

    private DataLoader CreateLoader(IImageDataset dataset)
    {
        var transform = TrainingData.Transform(Config);
        var group = ProcessGroup.World;
        var options = new DataLoaderOptions
        {
            BatchSize = Settings.BatchSize, Seed = Settings.Seed, Workers = Settings.Workers, DropLast = true,
            Transform = transform.Train, OnSkipped = s => _log.WriteLine($"warning: skipped unreadable sample {s.Key}: {s.Reason}"),
            Rank = group.Rank, WorldSize = group.WorldSize,
        };
        if (Settings.OverfitBatch)
        {
            // The reference keeps the first overfit_batch_num batches and cycles through them in order.
            var order = new DataLoader(dataset, options).EpochOrder(0);
            dataset = new SubsetDataset(dataset, order.Take(Settings.OverfitBatchNum * Settings.BatchSize * group.WorldSize).ToArray());
            options = new DataLoaderOptions
            {
                BatchSize = options.BatchSize, Seed = options.Seed, Workers = options.Workers, DropLast = true,
                Transform = options.Transform, OnSkipped = options.OnSkipped, Shuffle = false, Rank = options.Rank, WorldSize = options.WorldSize,
            };
        }
        var loader = new DataLoader(dataset, options);
        if (loader.BatchesPerEpoch == 0)
            throw new ConfigException($"{Config.File}: the training data has {dataset.Count} images, fewer than one global batch " +
                                      $"(training.per_gpu_batch_size {Settings.BatchSize} × {group.WorldSize} ranks)");
        return loader;
    }

    // ---- the stage ---------------------------------------------------------------------------------------------

    public int SamplesPerStep => Loader.GlobalBatchSize * Settings.AccumulationSteps;

    public IReadOnlyList<(string Label, string Key)> ProgressTerms { get; } =
        [("loss", "total_loss"), ("rec", "reconstruction_loss"), ("quant", "quantizer_loss"), ("gan", "weighted_gan_loss"), ("disc", "discriminator_loss")];

    public string Describe() =>
        $"training {Settings.Name}: tokenizer {Model.ParameterCount():N0} parameters, discriminator {Loss.ParameterCount():N0}; " +
        $"{Loader.Dataset.Count:N0} images, batch {Settings.BatchSize} × {Settings.AccumulationSteps} accumulation" +
        (Loader.Options.WorldSize > 1 ? $" × {Loader.Options.WorldSize} ranks = {SamplesPerStep}" : "");

    public DataPosition Position { get; private set; }

    public void Start(DataPosition position, bool resumed)
    {
        Position = position;
        _batches?.Dispose();
        _batches = Loader.Batches(position.Epoch, position.Batch).GetEnumerator();
        if (!resumed) Initialize();
    }

    /// <summary>experiment.init_checkpoint naming a weights file (not a training checkpoint, which the loop
    /// restores whole) starts a fresh run from those weights (EMA if present); a missing file is refused when the
    /// config is read (LoopSettings).</summary>
    private void Initialize()
    {
        string path = Settings.Loop.InitCheckpoint;
        if (path.Length == 0) return;
        var loaded = PretrainedModels.LoadTokenizerWeights(Model, path);
        if (Step.Ema is { } ema)
        {
            var parameters = Model.Parameters().ToList();
            for (int i = 0; i < parameters.Count; i++) ema.Shadow[i].CopyFrom_(parameters[i]);
        }
        _log.WriteLine($"initialised the tokenizer from {loaded}");
    }

    public Dictionary<string, double> TrainStep(long stepsDone) => Step.Run(NextImages, stepsDone);

    private Tensor NextImages()
    {
        _batches!.MoveNext();   // Batches() never ends
        var batch = _batches.Current;
        Position = new DataPosition(batch.Epoch, batch.Index + 1);
        return _lastImages = batch.Images;
    }

    public string SamplesTag => "Train Reconstruction";

    public void WriteSamples(long step, string path)
    {
        int n = Math.Min(Settings.NumGeneratedImages, _lastImages!.Shape[0]);
        if (n < 1) return;
        var originals = _lastImages.Narrow(0, 0, n);
        ImageIO.Write(path, TokenizerEvaluation.ComparisonGrid(originals, TokenizerEvaluation.Reconstruct(Model, originals).Reconstructions));
    }

    public IReadOnlyDictionary<string, double>? Evaluate()
    {
        if (Settings.EvalSource == null) return null;
        var eval = TrainingData.Open(Settings.EvalSource, train: false, TrainingData.Channels(Config));
        try
        {
            var loader = TokenizerEvaluation.EvalLoader(eval, TrainingData.Transform(Config), Settings.BatchSize, Settings.Workers);
            return TokenizerEvaluation.Evaluate(Model, loader.Epoch(0), inception: _inception);
        }
        finally { (eval as IDisposable)?.Dispose(); }
    }

    public void Dispose()
    {
        _batches?.Dispose();
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}
