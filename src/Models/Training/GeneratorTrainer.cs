using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Autograd.Optim;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>Masking and label-dropout draws from a checkpointable <see cref="Rng"/> (its state is saved with
/// the training checkpoint, so a resumed run draws what the uninterrupted one would have).</summary>
public sealed class RngRandomSource(Rng rng) : IRandomSource
{
    public Rng Rng { get; } = rng;

    public void Uniform(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = Rng.NextFloat();
    }

    public void CategoricalUniform(Span<float> destination) => Uniform(destination);

    public void Gumbel(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            double u = ((Rng.NextUInt64() >> 40) + 0.5) / (1 << 24);   // strictly inside (0, 1)
            destination[i] = (float)-Math.Log(-Math.Log(u));
        }
    }
}

public sealed class GeneratorTrainerOptions
{
    /// <summary>Run folder: checkpoints/, samples/, metrics.jsonl, config.yaml, tokens.npz, generator.safetensors.</summary>
    public required string OutputDir { get; init; }
    /// <summary>Tokenizer weights; overrides experiment.vqgan_checkpoint.</summary>
    public string? TokenizerPath { get; init; }
    /// <summary>Overrides training.seed.</summary>
    public int? Seed { get; init; }
    /// <summary>Training images instead of the config's dataset (with a key identifying them for the token cache).</summary>
    public (IImageDataset Dataset, string Key)? Dataset { get; init; }
    /// <summary>Encode each sample once (no augmentation; kept in tokens.npz once all are done) instead of encoding
    /// augmented batches every step.</summary>
    public bool CacheTokens { get; init; } = true;
    /// <summary>Decoding threads of the on-the-fly loader.</summary>
    public int DataWorkers { get; init; } = 2;
    public TextWriter? Log { get; init; }
    /// <summary>Stops after the current step with a resumable checkpoint (Ctrl-C).</summary>
    public CancellationToken Cancel { get; init; }
    /// <summary>Sees each step's values (tests; progress displays).</summary>
    public Action<GeneratorStepLog>? OnStep { get; init; }
}

/// <summary>One optimisation step: the backpropagated MLM loss, the masked-only loss and the accuracies of
/// <see cref="MlmLoss"/>, the learning rate used, the gradient norm before clipping and the throughput.</summary>
public sealed record GeneratorStepLog(long Step, int Epoch, double LearningRate, float Loss, float MaskedLoss,
    float CorrectTokens, float MaskedCorrectTokens, float GradNorm, double SamplesPerSecond);

public sealed record GeneratorTrainingResult(long Step, bool Interrupted, string CheckpointPath, string WeightsPath);

/// <summary>
/// Stage-II training as the reference's train_maskbit.py: tokens of a frozen tokenizer, split into groups, masked
/// per sample along the train schedule, class labels dropped for classifier-free guidance, the MLM loss, AdamW with
/// warm-up + cosine-with-minimum, gradient clipping, EMA, periodic checkpoints and sample grids. Every random draw
/// of a step (masking, label dropout, dropout masks) comes from one <see cref="Rng"/> saved in the checkpoint,
/// and the data position is saved too, so an interrupted run resumes bit for bit.
/// </summary>
public sealed class GeneratorTrainer
{
    private const double EmaDecay = 0.999;   // fixed in the reference script

    private readonly MaskBitConfig _config;
    private readonly GeneratorTrainerOptions _options;
    private readonly string _tokenizerPath;
    private readonly int _seed, _batchSize, _logEvery, _saveEvery, _generateEvery;
    private readonly long _maxSteps;
    private readonly MaskSchedule _trainSchedule;
    private readonly double _minMaskingRatio, _labelDropout;
    private readonly float _maxGradNorm;
    private readonly Rng _rng;
    private readonly RngRandomSource _random;
    private readonly MlmLoss _loss;
    private readonly AdamW _optimizer;
    private readonly LrSchedule _schedule;
    private readonly Ema? _ema;
    private readonly List<Tensor> _parameters;
    private readonly TrainingState _state;

    public MaskedGenerator Generator { get; }
    public ImageTokenizer Tokenizer { get; }
    public string CheckpointDir => Path.Combine(_options.OutputDir, "checkpoints");
    public string MetricsPath => Path.Combine(_options.OutputDir, "metrics.jsonl");
    public string SamplesDir => Path.Combine(_options.OutputDir, "samples");
    public string WeightsPath => Path.Combine(_options.OutputDir, "generator.safetensors");

    public GeneratorTrainer(MaskBitConfig config, GeneratorTrainerOptions options)
    {
        _config = config;
        _options = options;
        _tokenizerPath = options.TokenizerPath ?? config.GetString("experiment.vqgan_checkpoint", "");
        if (_tokenizerPath.Length == 0)
            throw new ConfigException($"{config.File}: no tokenizer weights: set experiment.vqgan_checkpoint or pass --tokenizer");
        if (config.GetInt("training.gradient_accumulation_steps", 1) != 1)
            throw new ConfigException($"{config.File}: training.gradient_accumulation_steps other than 1 is not supported");
        _seed = options.Seed ?? (int)config.GetInt("training.seed", 42);
        _batchSize = Positive("training.per_gpu_batch_size", 32);
        _maxSteps = Positive("training.max_train_steps", 1000);
        _logEvery = Positive("experiment.log_every", 50);
        _saveEvery = Positive("experiment.save_every", 1000);
        _generateEvery = Positive("experiment.generate_every", 1000);
        const string m = "model.mlm_model.";
        _trainSchedule = Masking.ParseSchedule(config.GetString(m + "train_mask_schedule_strategy", "arccos"));
        _minMaskingRatio = config.GetDouble(m + "min_masking_ratio", 0.0);
        _labelDropout = config.GetDouble(m + "class_label_dropout", 0.1);
        _maxGradNorm = (float)config.GetDouble("training.max_grad_norm", 0.0);

        Tokenizer = GeneratorSetup.LoadTokenizer(config, _tokenizerPath, Log);
        var generatorConfig = GeneratorConfig.From(config);
        Generator = new MaskedGenerator(generatorConfig, _seed);
        if (Tokenizer.DownsampleFactor != generatorConfig.InputStride)
            throw new ConfigException($"{config.File}: the tokenizer downsamples by {Tokenizer.DownsampleFactor}, the generator expects {generatorConfig.InputStride}");
        _rng = new Rng((ulong)_seed);
        Generator.DropoutGenerator = _rng;
        _random = new RngRandomSource(_rng);
        _loss = new MlmLoss((float)config.GetDouble("losses.mlm.label_smoothing", 0.1), config.GetBool("losses.mlm.sum_splits", false));

        const string o = "optimizer.params.";
        string optimizerName = config.GetString("optimizer.name", "adamw");
        if (optimizerName != "adamw") throw new ConfigException($"{config.File}: optimizer.name '{optimizerName}' is not supported (adamw)");
        _parameters = Generator.Parameters().ToList();
        double learningRate = config.GetDouble("lr_scheduler.params.learning_rate", config.GetDouble(o + "learning_rate", 1e-4));
        _optimizer = new AdamW(_parameters, learningRate, config.GetDouble(o + "beta1", 0.9), config.GetDouble(o + "beta2", 0.96),
            config.GetDouble(o + "epsilon", 1e-8), config.GetDouble(o + "weight_decay", 0.045));
        _schedule = new LrSchedule(config.GetString("lr_scheduler.scheduler", "cosine_with_minimum"), learningRate,
            (int)config.GetInt("lr_scheduler.params.warmup_steps", 0), _maxSteps, config.GetDouble("lr_scheduler.params.minimum_rate", 0.1));
        if (config.GetBool("training.use_ema", true)) _ema = new Ema(_parameters, EmaDecay);

        _state = new TrainingState
        {
            Modules = new Dictionary<string, Autograd.Nn.Module> { ["model"] = Generator },
            Optimizers = new Dictionary<string, AdamW> { ["model"] = _optimizer },
            Emas = _ema == null ? new Dictionary<string, Ema>() : new Dictionary<string, Ema> { ["model"] = _ema },
            Rng = _rng,
            ConfigYaml = config.ToYaml(),
        };
    }

    private int Positive(string key, long fallback)
    {
        long v = _config.GetInt(key, fallback);
        if (v <= 0) throw new ConfigException($"{_config.File}: {key} must be positive, got {v}");
        return checked((int)v);
    }

    private void Log(string line) => _options.Log?.WriteLine(line);

    /// <summary>The newest checkpoint-&lt;step&gt;.safetensors of the run folder, or null.</summary>
    public string? LatestCheckpoint() =>
        !Directory.Exists(CheckpointDir) ? null
            : Directory.GetFiles(CheckpointDir, "checkpoint-*.safetensors")
                .Select(f => (Path: f, Step: long.TryParse(Path.GetFileNameWithoutExtension(f)["checkpoint-".Length..], out var s) ? s : -1))
                .Where(c => c.Step >= 0).OrderByDescending(c => c.Step).Select(c => c.Path).FirstOrDefault();

    public GeneratorTrainingResult Run()
    {
        Directory.CreateDirectory(_options.OutputDir);
        File.WriteAllText(Path.Combine(_options.OutputDir, "config.yaml"), _state.ConfigYaml);
        var position = new DataPosition(0, 0);
        if (_config.GetBool("experiment.resume", true) && LatestCheckpoint() is { } latest)
        {
            TrainingCheckpoint.Restore(latest, _state);
            position = new DataPosition(int.Parse(_state.Extra["data_epoch"], CultureInfo.InvariantCulture),
                int.Parse(_state.Extra["data_batch"], CultureInfo.InvariantCulture));
            Log($"resumed from {latest} at step {_state.Step}");
        }
        _schedule.SetStep(_state.Step, _optimizer);
        Generator.Train();

        using var batches = Batches(position).GetEnumerator();
        using var metrics = new StreamWriter(MetricsPath, append: _state.Step > 0);
        var clock = Stopwatch.StartNew();
        bool interrupted = false;
        while (_state.Step < _maxSteps)
        {
            if (_options.Cancel.IsCancellationRequested) { interrupted = true; break; }
            if (!batches.MoveNext()) throw new InvalidOperationException("the training data ended");
            var batch = batches.Current;
            double learningRate = _optimizer.LearningRate;
            var losses = Step(batch);
            long step = ++_state.Step;
            _state.Extra["data_epoch"] = batch.Epoch.ToString(CultureInfo.InvariantCulture);
            _state.Extra["data_batch"] = (batch.Index + 1).ToString(CultureInfo.InvariantCulture);
            var log = new GeneratorStepLog(step, batch.Epoch, learningRate, losses.Loss, losses.Log.MaskedTokenLoss, losses.Log.CorrectTokens,
                losses.Log.MaskedCorrectTokens, losses.GradNorm, batch.Count / clock.Elapsed.TotalSeconds);
            clock.Restart();
            _options.OnStep?.Invoke(log);
            if (step % _logEvery == 0 || step == _maxSteps)
            {
                metrics.WriteLine(ToJson(log));
                metrics.Flush();
                Log(string.Create(CultureInfo.InvariantCulture,
                    $"step {step}/{_maxSteps} epoch {batch.Epoch} lr {learningRate:0.000000} loss {log.Loss:0.0000} masked loss {log.MaskedLoss:0.0000} " +
                    $"acc {log.CorrectTokens:0.0000} masked acc {log.MaskedCorrectTokens:0.0000} grad norm {log.GradNorm:0.000} {log.SamplesPerSecond:0.0} samples/s"));
            }
            if (step % _saveEvery == 0) SaveCheckpoint();
            if (step % _generateEvery == 0) SaveSampleGrid(step);
        }

        string checkpoint = SaveCheckpoint();
        if (interrupted) Log($"interrupted at step {_state.Step}; resume by running the same command again ({checkpoint})");
        else SaveWeights();
        return new GeneratorTrainingResult(_state.Step, interrupted, checkpoint, WeightsPath);
    }

    private IEnumerable<TokenBatch> Batches(DataPosition position)
    {
        var (dataset, key) = _options.Dataset ?? GeneratorSetup.OpenTrainDataset(_config);
        if (_config.Has("experiment.max_train_examples"))
        {
            int limit = Positive("experiment.max_train_examples", 1);
            if (limit < dataset.Count) (dataset, key) = (GeneratorSetup.Take(dataset, limit), $"{key}[:{limit}]");
        }
        int seqLen = Generator.Config.SeqLen;
        ITokenBatches source = _options.CacheTokens
            ? new CachedTokenBatches(Path.Combine(_options.OutputDir, CachedTokenBatches.FileName), _tokenizerPath, Tokenizer, dataset, key,
                GeneratorSetup.Transform(_config, augment: false), seqLen, _batchSize, _seed, Log)
            : new EncodedTokenBatches(new DataLoader(dataset, new DataLoaderOptions
            {
                BatchSize = _batchSize, Shuffle = true, Seed = _seed, DropLast = true, Workers = _options.DataWorkers,
                Transform = GeneratorSetup.Transform(_config, augment: true),
                OnSkipped = s => Log($"skipped unreadable sample {s.Key}: {s.Reason}"),
            }), Tokenizer, seqLen);
        if (!_config.GetBool("training.overfit_batch", false)) return source.From(position);
        // Overfitting cycles over the first batches of epoch 0, whatever the position.
        int count = Positive("training.overfit_batch_num", 1);
        var fixedBatches = source.From(new DataPosition(0, 0)).Take(count).ToList();
        return Cycle(fixedBatches, position);
    }

    private static IEnumerable<TokenBatch> Cycle(List<TokenBatch> batches, DataPosition position)
    {
        for (int i = position.Batch; ; i++) yield return batches[i % batches.Count] with { Epoch = 0, Index = i };
    }

    private (float Loss, MlmLossLog Log, float GradNorm) Step(TokenBatch batch)
    {
        var cfg = Generator.Config;
        using var scope = TensorScope.Begin();
        var device = Generator.PosEmb.Device;
        var masked = Masking.MaskBatch(batch.Tokens, batch.Count, cfg.CodebookSize, cfg.Splits, cfg.MaskToken, _trainSchedule,
            _minMaskingRatio, _random, device);
        var labelDraws = new float[batch.Count];
        _random.Uniform(labelDraws);
        var dropLabels = labelDraws.Select(u => u < _labelDropout).ToArray();

        var logits = Generator.Forward(masked.Tokens, batch.Labels, dropLabels);
        var (loss, statistics) = _loss.Forward(logits, masked.Targets, masked.Mask);
        loss.Backward();
        // Without max_grad_norm the norm is still measured (logged and guarded) but nothing is scaled.
        var norm = GradClip.ClipGradNormOnDevice(_parameters, _maxGradNorm > 0 ? _maxGradNorm : float.PositiveInfinity);
        // The loss, the norm and the logged statistics come to the host together (one wait for the device),
        // before anything is applied.
        List<Tensor> logged = [loss, .. statistics.Sums];
        if (norm != null) logged.Add(norm);
        var host = Tensor.Items(logged);
        float lossValue = host[0], gradNorm = norm != null ? host[^1] : 0f;
        var log = statistics.ToLog(host.AsSpan(1, statistics.Sums.Count));
        long step = _state.Step + 1;
        if (!float.IsFinite(lossValue))
            throw new TrainingDivergedException("mlm_loss", step, lossValue, LatestCheckpoint());
        if (!float.IsFinite(gradNorm))
            throw new TrainingDivergedException("gradient norm", step, gradNorm, LatestCheckpoint());
        _optimizer.Step();
        _schedule.Advance(_optimizer);
        _optimizer.ZeroGrad();
        _ema?.Step(_parameters);
        return (lossValue, log, gradNorm);
    }

    private string SaveCheckpoint()
    {
        string path = Path.Combine(CheckpointDir, $"checkpoint-{_state.Step}.safetensors");
        TrainingCheckpoint.Save(path, _state);
        Log($"saved {path}");
        return path;
    }

    /// <summary>The weights to sample with (EMA when kept) as a plain state dict with the model's keys.</summary>
    private void SaveWeights()
    {
        WithEmaWeights(() => SafeTensors.Save(WeightsPath, Generator.StateDict().Select(kv => Record(kv.Name, kv.Tensor)).ToList(),
            new Dictionary<string, string> { ["step"] = _state.Step.ToString(CultureInfo.InvariantCulture), ["ema"] = (_ema != null).ToString() }));
        Log($"saved {WeightsPath}");
    }

    private static TensorRecord Record(string name, Tensor t) => t.DType == Kernels.DType.Int32
        ? new TensorRecord(name, TensorDType.Int32, t.Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.ToIntArray().AsSpan()).ToArray())
        : TensorRecord.FromFloats(name, t.ToArray(), t.Shape);

    /// <summary>Runs <paramref name="action"/> with the EMA weights swapped in (as the reference's store / copy_to / restore).</summary>
    private void WithEmaWeights(Action action)
    {
        if (_ema == null) { action(); return; }
        List<Tensor> saved;
        using (TensorScope.Outside()) using (Tape.NoGrad()) saved = _parameters.Select(p => p.Detach().Clone()).ToList();
        _ema.CopyTo(_parameters);
        try { action(); }
        finally { for (int i = 0; i < saved.Count; i++) _parameters[i].CopyFrom_(saved[i]); }
    }

    /// <summary>A grid with one row per class (the first ten classes), training.num_generated_images samples each,
    /// drawn with the config's sampler settings from a seed fixed by the step (training draws are not touched).</summary>
    private void SaveSampleGrid(long step)
    {
        int classes = Math.Min(Generator.Config.NumClasses, 10), perClass = (int)_config.GetInt("training.num_generated_images", 4);
        var labels = Enumerable.Range(0, classes).SelectMany(c => Enumerable.Repeat(c, perClass)).ToArray();
        string path = Path.Combine(SamplesDir, $"step-{step}.png");
        WithEmaWeights(() =>
        {
            using var scope = TensorScope.Begin();
            var result = new Sampler(Generator, Tokenizer).Sample(labels, SamplerOptions.FromConfig(_config), new SeededRandomSource(_seed + step));
            Directory.CreateDirectory(SamplesDir);
            ImageIO.SaveGrid(path, result.Images.Clamp(0f, 1f), nrow: perClass);
        });
        Generator.Train();
        Log($"saved {path}");
    }

    private static string ToJson(GeneratorStepLog log)
    {
        static double? Finite(double v) => double.IsFinite(v) ? v : null;
        return JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["step"] = log.Step, ["epoch"] = log.Epoch, ["lr"] = log.LearningRate,
            ["train/mlm_loss"] = Finite(log.Loss), ["train/masked_token_loss"] = Finite(log.MaskedLoss),
            ["train/correct_tokens"] = Finite(log.CorrectTokens), ["train/masked_correct_tokens"] = Finite(log.MaskedCorrectTokens),
            ["grad_norm"] = Finite(log.GradNorm), ["samples_per_sec"] = Finite(log.SamplesPerSecond),
        });
    }
}
