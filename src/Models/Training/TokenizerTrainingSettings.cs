using MaskBit.Models.Config;

namespace MaskBit.Models.Training;

/// <summary>The settings of a tokenizer run beyond the loop's (<see cref="LoopSettings"/>): config sections
/// experiment, training, optimizer, lr_scheduler and dataset.params, with their defaults.</summary>
public sealed record TokenizerTrainingSettings
{
    public required string Name { get; init; }
    public string? OutputDir { get; init; }
    public required LoopSettings Loop { get; init; }
    public long MaxTrainSteps => Loop.MaxTrainSteps;
    public int BatchSize { get; init; }
    public int AccumulationSteps { get; init; } = 1;
    public double? MaxGradNorm { get; init; }
    /// <summary>training.use_ema: off (train_tokenizer.py reads it with .get("use_ema", False)).</summary>
    public bool UseEma { get; init; }
    /// <summary>training.seed: 42 in both stages (every shipped config's value; the reference seeds nothing without it).</summary>
    public int Seed { get; init; } = 42;
    public bool OverfitBatch { get; init; }
    public int OverfitBatchNum { get; init; } = 1;
    public int NumGeneratedImages { get; init; } = 2;
    public string MixedPrecision { get; init; } = "no";
    public long? MaxTrainExamples { get; init; }
    public string InitCheckpoint { get; init; } = "";

    public required OptimizerSettings Optimizer { get; init; }
    /// <summary>optimizer.params.discriminator_learning_rate (default: the tokenizer's).</summary>
    public double DiscriminatorLearningRate { get; init; }
    public required ScheduleSettings Schedule { get; init; }

    public string? TrainSource { get; init; }
    public string? EvalSource { get; init; }
    public int Workers { get; init; } = 2;

    public const double EmaDecay = 0.999;

    public static TokenizerTrainingSettings From(MaskBitConfig c)
    {
        int batchSize = (int)c.GetInt("training.per_gpu_batch_size");
        int accumulation = (int)c.GetInt("training.gradient_accumulation_steps", 1);
        if (batchSize < 1) throw new ConfigException($"{c.File}: training.per_gpu_batch_size must be at least 1");
        if (accumulation < 1) throw new ConfigException($"{c.File}: training.gradient_accumulation_steps must be at least 1");

        var optimizer = OptimizerSettings.From(c, TrainingStage.Tokenizer);
        double discriminatorLr = c.GetDouble("optimizer.params.discriminator_learning_rate", optimizer.LearningRate);
        if (c.GetBool("optimizer.params.scale_lr", false))
        {
            // One process: the reference scales by per-GPU batch × processes × accumulation.
            optimizer = optimizer with { LearningRate = optimizer.LearningRate * batchSize * accumulation };
            discriminatorLr *= batchSize * accumulation;
        }
        var settings = new TokenizerTrainingSettings
        {
            Name = c.GetString("experiment.name", "tokenizer"),
            OutputDir = c.Has("experiment.output_dir") ? c.GetString("experiment.output_dir") : null,
            Loop = LoopSettings.From(c),
            BatchSize = batchSize,
            AccumulationSteps = accumulation,
            MaxGradNorm = c.Has("training.max_grad_norm") ? c.GetDouble("training.max_grad_norm") : null,
            UseEma = c.GetBool("training.use_ema", false),
            Seed = (int)c.GetInt("training.seed", 42),
            OverfitBatch = c.GetBool("training.overfit_batch", false),
            OverfitBatchNum = (int)c.GetInt("training.overfit_batch_num", 1),
            NumGeneratedImages = (int)c.GetInt("training.num_generated_images", 2),
            MixedPrecision = c.GetString("training.mixed_precision", "no"),
            MaxTrainExamples = c.Has("experiment.max_train_examples") ? c.GetInt("experiment.max_train_examples") : null,
            InitCheckpoint = c.GetString("experiment.init_checkpoint", ""),
            Optimizer = optimizer,
            DiscriminatorLearningRate = discriminatorLr,
            Schedule = ScheduleSettings.From(c),
            TrainSource = c.Has("dataset.params.train_shards_path_or_url") ? c.GetString("dataset.params.train_shards_path_or_url") : null,
            EvalSource = c.Has("dataset.params.eval_shards_path_or_url") ? c.GetString("dataset.params.eval_shards_path_or_url") : null,
            Workers = (int)Math.Clamp(c.GetInt("dataset.params.num_workers_per_gpu", 2), 0, Environment.ProcessorCount),
        };
        if (settings.OverfitBatchNum < 1) throw new ConfigException($"{c.File}: training.overfit_batch_num must be at least 1");
        return settings;
    }
}
