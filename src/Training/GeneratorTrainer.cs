using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

public sealed class GeneratorTrainerOptions
{
    /// <summary>The run folder (<see cref="RunFolder"/>), which also keeps tokens.npz and generator.safetensors.</summary>
    public required string OutputDir { get; init; }
    /// <summary>Tokenizer weights; overrides experiment.vqgan_checkpoint.</summary>
    public string? TokenizerPath { get; init; }
    /// <summary>Training images instead of the config's dataset (with a key identifying them for the token cache).</summary>
    public (IImageDataset Dataset, string Key)? Dataset { get; init; }
    /// <summary>Encode each sample once (no augmentation; kept in tokens.npz once all are done) instead of encoding
    /// augmented batches every step.</summary>
    public bool CacheTokens { get; init; } = true;
    /// <summary>Decoding threads of the on-the-fly loader.</summary>
    public int DataWorkers { get; init; } = 2;
    public TextWriter Log { get; init; } = TextWriter.Null;
    /// <summary>Sees each step's values (tests; progress displays).</summary>
    public Action<TrainingStepReport>? OnStep { get; init; }
}

/// <summary>
/// Stage-II training (the reference's scripts/train_maskbit.py): the <see cref="MlmStep"/> on tokens of a frozen
/// tokenizer, through <see cref="TrainingLoop"/>. Grids hold samples of the first ten classes drawn with the config's
/// sampler settings from a seed fixed by the step (training draws are not touched). A completed run also writes
/// generator.safetensors: the weights to sample with (EMA when kept) as a plain state dict.
/// </summary>
public sealed class GeneratorTrainer : ITrainingStage
{
    public const string WeightsFileName = "generator.safetensors";

    public MaskBitConfig Config { get; }
    public GeneratorTrainingSettings Settings { get; }
    public MlmStep Step { get; }
    public MaskedGenerator Generator => Step.Generator;
    public ImageTokenizer Tokenizer { get; }
    public RunFolder Folder { get; }
    public TrainingState State { get; }
    public string WeightsPath => Path.Combine(Folder.Root, WeightsFileName);

    private readonly GeneratorTrainerOptions _options;
    private readonly string _tokenizerPath;
    private IEnumerator<TokenBatch>? _batches;

    public GeneratorTrainer(MaskBitConfig config, GeneratorTrainerOptions options)
    {
        Config = config;
        _options = options;
        Settings = GeneratorTrainingSettings.From(config);
        if (Settings.MixedPrecision != "no")
            options.Log.WriteLine($"note: training.mixed_precision '{Settings.MixedPrecision}' is not supported; training in float32");
        _tokenizerPath = options.TokenizerPath ?? Settings.TokenizerCheckpoint
            ?? throw new ConfigException($"{config.File}: no tokenizer weights: set experiment.vqgan_checkpoint or pass --tokenizer");
        Tokenizer = PretrainedModels.Tokenizer(config, _tokenizerPath, log: options.Log.WriteLine);
        var generatorConfig = GeneratorConfig.From(config);
        if (Tokenizer.DownsampleFactor != generatorConfig.InputStride)
            throw new ConfigException($"{config.File}: the tokenizer downsamples by {Tokenizer.DownsampleFactor}, the generator expects {generatorConfig.InputStride}");
        Step = new MlmStep(generatorConfig, Settings);
        State = Step.State(config.ToYaml());
        Folder = new RunFolder(options.OutputDir);
    }

    /// <summary>Trains until training.max_train_steps (see <see cref="TrainingLoop"/>); a completed run writes
    /// <see cref="WeightsPath"/>.</summary>
    public TrainingResult Run(CancellationToken cancellation = default)
    {
        var result = TrainingLoop.Run(Folder, Settings.Loop, this, _options.Log, _options.OnStep, cancellation);
        if (result.Outcome == TrainingOutcome.Completed && ProcessGroup.World.IsMain()) SaveWeights();
        return result;
    }

    private void SaveWeights()
    {
        EmaWeights.With(State, () => SafeTensors.Save(WeightsPath, Generator.StateDict().Select(kv => TensorRecord.FromTensor(kv.Name, kv.Tensor)).ToList(),
            new Dictionary<string, string> { ["step"] = State.Step.ToString(System.Globalization.CultureInfo.InvariantCulture), ["ema"] = (Step.Ema != null).ToString() }));
        _options.Log.WriteLine($"saved {WeightsPath}");
    }

    // ---- the stage ---------------------------------------------------------------------------------------------

    public int SamplesPerStep => Settings.BatchSize * ProcessGroup.World.WorldSize;

    public IReadOnlyList<(string Label, string Key)> ProgressTerms { get; } =
        [("loss", "train/mlm_loss"), ("masked loss", "train/masked_token_loss"), ("masked acc", "train/masked_correct_tokens"), ("grad norm", "grad_norm")];

    public string Describe() => $"training the generator: {Generator.ParameterCount():N0} parameters on tokens of {_tokenizerPath}; batch {Settings.BatchSize}" +
        (ProcessGroup.World.WorldSize > 1 ? $" × {ProcessGroup.World.WorldSize} ranks = {SamplesPerStep}" : "");

    public DataPosition Position { get; private set; }

    public void Start(DataPosition position, bool resumed)
    {
        Position = position;
        _batches?.Dispose();
        _batches = Batches(position).GetEnumerator();
    }

    public Dictionary<string, double> TrainStep(long stepsDone)
    {
        if (!_batches!.MoveNext()) throw new InvalidOperationException("the training data ended");
        var batch = _batches.Current;
        Position = new DataPosition(batch.Epoch, batch.Index + 1);
        return Step.Run(batch, stepsDone);
    }

    private IEnumerable<TokenBatch> Batches(DataPosition position)
    {
        var (dataset, key) = _options.Dataset ?? OpenDataset();
        if (Settings.MaxTrainExamples is { } limit && limit < dataset.Count)
            (dataset, key) = (SubsetDataset.First(dataset, (int)limit), $"{key}[:{limit}]");
        int seqLen = Generator.Config.SeqLen;
        var transform = TrainingData.Transform(Config);
        var group = ProcessGroup.World;
        ITokenBatches source = _options.CacheTokens
            ? new CachedTokenBatches(Path.Combine(Folder.Root, CachedTokenBatches.FileName), _tokenizerPath, Tokenizer, dataset, key,
                TrainingData.TokenTransform(transform, augment: false), seqLen, Settings.BatchSize, Settings.Seed, _options.Log.WriteLine,
                group.Rank, group.WorldSize)
            : new EncodedTokenBatches(new DataLoader(dataset, new DataLoaderOptions
            {
                BatchSize = Settings.BatchSize, Shuffle = true, Seed = Settings.Seed, DropLast = true, Workers = _options.DataWorkers,
                Transform = TrainingData.TokenTransform(transform, augment: true),
                OnSkipped = s => _options.Log.WriteLine($"skipped unreadable sample {s.Key}: {s.Reason}"),
                Rank = group.Rank, WorldSize = group.WorldSize,
            }), Tokenizer, seqLen);
        if (!Settings.OverfitBatch) return source.From(position);
        // Overfitting cycles over the first batches of epoch 0, whatever the position.
        var fixedBatches = source.From(new DataPosition(0, 0)).Take(Settings.OverfitBatchNum).ToList();
        return Cycle(fixedBatches, position);
    }

    private (IImageDataset, string) OpenDataset()
    {
        string source = TrainingData.RequireTrainSource(Settings.TrainSource, Config);
        var dataset = TrainingData.Open(source, train: true, TrainingData.Channels(Config));
        return (dataset, TrainingData.Key(source, dataset));
    }

    private static IEnumerable<TokenBatch> Cycle(List<TokenBatch> batches, DataPosition position)
    {
        for (int i = position.Batch; ; i++) yield return batches[i % batches.Count] with { Epoch = 0, Index = i };
    }

    public void WriteSamples(long step, string path)
    {
        int classes = Math.Min(Generator.Config.NumClasses, 10), perClass = Settings.NumGeneratedImages;
        var labels = Enumerable.Range(0, classes).SelectMany(c => Enumerable.Repeat(c, perClass)).ToArray();
        using (TensorScope.Begin())
        {
            var result = new Sampler(Generator, Tokenizer).Sample(labels, SamplerOptions.FromConfig(Config), new SeededRandomSource(Settings.Seed + step));
            ImageIO.SaveGrid(path, result.Images.Clamp(0f, 1f), nrow: perClass);
        }
        Generator.Train();
    }

    public IReadOnlyDictionary<string, double>? Evaluate() => null;
}
