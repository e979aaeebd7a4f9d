using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Metrics;
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
    /// <summary>Encode each sample once (un-augmented; kept in tokens.npz once all are done) instead of encoding
    /// augmented batches every step. Null: cache only when the config does not augment
    /// (dataset.preprocessing.use_random_crop off), so the reference's random crop and flip are kept by default.</summary>
    public bool? CacheTokens { get; init; }
    /// <summary>The FID InceptionV3: experiment.eval_every also samples one image per held-out label (as the
    /// reference's eval_generation) and scores the Inception Score of the samples (one split).</summary>
    public IFeatureExtractor? Inception { get; init; }
    /// <summary>Reference statistics (ADM-style mu / sigma) for gFID, with <see cref="Inception"/>.</summary>
    public GaussianStatistics? FidReference { get; init; }
    /// <summary>Decoding threads of the on-the-fly loader.</summary>
    public int DataWorkers { get; init; } = 2;
    public TextWriter Log { get; init; } = TextWriter.Null;
    /// <summary>Sees each step's values (tests; progress displays).</summary>
    public Action<TrainingStepReport>? OnStep { get; init; }
}

/// <summary>
/// Stage-II training (the reference's scripts/train_maskbit.py): the <see cref="MlmStep"/> on tokens of a frozen
/// tokenizer, through <see cref="TrainingLoop"/>. Grids hold samples of the first ten classes drawn with the config's
/// sampler settings from a seed fixed by the step (training draws are not touched). Evaluation (experiment.eval_every,
/// with dataset.params.eval_shards_path_or_url) scores the MLM loss and accuracies on held-out tokens, masked the same
/// way at every evaluation, and, given the FID InceptionV3, the Inception Score (and gFID against reference statistics)
/// of one sample per held-out label. A completed run also writes generator.safetensors: the weights to sample with (EMA when
/// kept) as a plain state dict.
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

    /// <summary>Trains until training.max_train_steps, or the <paramref name="target"/> that replaces it (see
    /// <see cref="TrainingLoop"/>); a completed run writes <see cref="WeightsPath"/>.</summary>
    public TrainingResult Run(CancellationToken cancellation = default, StepTarget? target = null)
    {
        var result = TrainingLoop.Run(Folder, Settings.Loop, this, _options.Log, _options.OnStep, cancellation, target);
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

    public int SamplesPerStep => Settings.BatchSize * Settings.AccumulationSteps * ProcessGroup.World.WorldSize;

    public IReadOnlyList<(string Label, string Key)> ProgressTerms { get; } =
        [("loss", "train/mlm_loss"), ("masked loss", "train/masked_token_loss"), ("masked acc", "train/masked_correct_tokens"), ("grad norm", "grad_norm")];

    public string Describe() => $"training the generator: {Generator.ParameterCount():N0} parameters on tokens of {_tokenizerPath}; " +
                                $"batch {Settings.BatchSize} × {Settings.AccumulationSteps} accumulation" +
                                (ProcessGroup.World.WorldSize > 1 ? $" × {ProcessGroup.World.WorldSize} ranks = {SamplesPerStep}" : "");

    public DataPosition Position { get; private set; }

    public void Start(DataPosition position, bool resumed)
    {
        Position = position;
        _batches?.Dispose();
        _batches = Batches(position).GetEnumerator();
        if (!resumed) Initialize();
    }

    /// <summary>experiment.init_checkpoint naming a weights file (a training checkpoint is restored whole by the
    /// loop): the generator (and its EMA) start from those weights.</summary>
    private void Initialize()
    {
        string path = Settings.Loop.InitCheckpoint;
        if (path.Length == 0) return;
        var loaded = WeightsLoader.Load(Generator, path, PretrainedModels.GeneratorLayout, preferEma: true);
        if (Step.Ema is { } ema)
        {
            var parameters = Generator.Parameters().ToList();
            for (int i = 0; i < parameters.Count; i++) ema.Shadow[i].CopyFrom_(parameters[i]);
        }
        _options.Log.WriteLine($"initialised the generator from {loaded}");
    }

    public Dictionary<string, double> TrainStep(long stepsDone) => Step.Run(NextBatch, stepsDone);

    private TokenBatch NextBatch()
    {
        if (!_batches!.MoveNext()) throw new InvalidOperationException("the training data ended");
        var batch = _batches.Current;
        Position = new DataPosition(batch.Epoch, batch.Index + 1);
        return batch;
    }

    private IEnumerable<TokenBatch> Batches(DataPosition position)
    {
        var (dataset, key) = _options.Dataset ?? OpenDataset();
        int seqLen = Generator.Config.SeqLen;
        var transform = TrainingData.Transform(Config);
        bool augments = transform.UseRandomCrop;
        bool cache = _options.CacheTokens ?? !augments;
        if (cache && augments)
            _options.Log.WriteLine("note: the token cache holds tokens of un-augmented (resized, centre-cropped) images: " +
                                   "the config's random crop and flip (dataset.preprocessing.use_random_crop) are not applied");
        var group = ProcessGroup.World;
        ITokenBatches source = cache
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

    public string SamplesTag => "Train Generated";

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

    public IReadOnlyDictionary<string, double>? Evaluate()
    {
        if (Settings.EvalSource == null) return null;
        var eval = TrainingData.Open(Settings.EvalSource, train: false, TrainingData.Channels(Config));
        try
        {
            var loader = TokenizerEvaluation.EvalLoader(eval, TrainingData.Transform(Config), Settings.BatchSize, Settings.Workers);
            // The same masks at every evaluation, so that scores of different steps compare.
            var random = new SeededRandomSource(Settings.Seed);
            double images = 0, loss = 0, maskedLoss = 0, correct = 0, maskedCorrect = 0;
            var samples = _options.Inception is { } inception ? new SampleScores(inception, eval.Count, _options.FidReference) : null;
            Generator.Eval();
            foreach (var batch in loader.Epoch(0))
            {
                using var scope = TensorScope.Begin();
                using var noGrad = Tape.NoGrad();
                var tokens = new TokenBatch(ImageTokens.Encode(Tokenizer, batch.Images), batch.Labels.ToIntArray(), 0, 0);
                if (samples != null)
                {
                    var sampled = new Sampler(Generator, Tokenizer).Sample(tokens.Labels, SamplerOptions.FromConfig(Config), new SeededRandomSource(Settings.Seed + batch.Index));
                    samples.Add(sampled.Images.Clamp(0f, 1f));
                    Generator.Eval();
                }
                var (batchLoss, statistics) = Step.Loss(tokens, random, dropLabels: false);
                var host = Tensor.Items([batchLoss, .. statistics.Sums]);
                var log = statistics.ToLog(host.AsSpan(1));
                int n = tokens.Count;
                (images, loss, maskedLoss, correct, maskedCorrect) = (images + n, loss + n * host[0], maskedLoss + n * log.MaskedTokenLoss,
                    correct + n * log.CorrectTokens, maskedCorrect + n * log.MaskedCorrectTokens);
            }
            if (images == 0) return null;
            var scores = new Dictionary<string, double>
            {
                ["mlm_loss"] = loss / images, ["masked_token_loss"] = maskedLoss / images,
                ["correct_tokens"] = correct / images, ["masked_correct_tokens"] = maskedCorrect / images,
            };
            samples?.AddTo(scores);
            return scores;
        }
        finally
        {
            Generator.Train();
            (eval as IDisposable)?.Dispose();
        }
    }

    /// <summary>Inception Score (one split, as the reference's generator evaluator) and, against reference statistics,
    /// gFID of samples, accumulated batch by batch.</summary>
    private sealed class SampleScores(IFeatureExtractor inception, int count, GaussianStatistics? reference)
    {
        private readonly FeatureMoments _moments = new(inception.FeatureDim);
        private readonly InceptionScoreAccumulator _score = new(inception.LogitsDim, splits: 1, totalImages: count);

        public void Add(Tensor images)
        {
            if (images.Shape[1] != 3) throw new InvalidDataException($"gFID / IS need RGB samples; the tokenizer decodes {images.Shape[1]} channel(s)");
            var batch = ImageBatch.FromTensor(images);
            var outputs = inception.Extract(batch.ToUInt8(), batch.N, batch.H, batch.W);
            for (int i = 0; i < outputs.Count; i++)
            {
                _moments.Add(outputs.FeatureRow(i));
                _score.Add(outputs.LogitsRow(i));
            }
        }

        public void AddTo(Dictionary<string, double> scores)
        {
            scores["InceptionScore"] = _score.Result();
            if (reference != null) scores["gFID"] = Frechet.Distance(_moments.ToStatistics(), reference);
        }
    }
}
