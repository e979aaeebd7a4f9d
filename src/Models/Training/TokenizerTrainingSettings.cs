using MaskBit.Models.Config;

namespace MaskBit.Models.Training;

/// <summary>The loop settings of a tokenizer run (config sections experiment, training, optimizer, lr_scheduler
/// and dataset.params), with the reference's defaults where a key may be left out.</summary>
public sealed record TokenizerTrainingSettings
{
    public required string Name { get; init; }
    public string? OutputDir { get; init; }
    public long MaxTrainSteps { get; init; }
    public int BatchSize { get; init; }
    public int AccumulationSteps { get; init; } = 1;
    public double? MaxGradNorm { get; init; }
    public bool UseEma { get; init; }
    public int Seed { get; init; }
    public bool OverfitBatch { get; init; }
    public int OverfitBatchNum { get; init; } = 1;
    public int NumGeneratedImages { get; init; } = 2;
    public string MixedPrecision { get; init; } = "no";
    public long? MaxTrainExamples { get; init; }
    public long LogEvery { get; init; } = 50;
    public long SaveEvery { get; init; }
    public long GenerateEvery { get; init; }
    public long EvalEvery { get; init; }
    public bool Resume { get; init; }
    public string InitCheckpoint { get; init; } = "";

    public double LearningRate { get; init; }
    public double DiscriminatorLearningRate { get; init; }
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double WeightDecay { get; init; } = 0.01;
    public double Epsilon { get; init; } = 1e-8;

    public string Scheduler { get; init; } = "cosine_with_minimum";
    public int WarmupSteps { get; init; }
    public double MinimumRate { get; init; } = 0.1;

    public string? TrainSource { get; init; }
    public string? EvalSource { get; init; }
    public int Workers { get; init; } = 2;

    public const double EmaDecay = 0.999;

    public static TokenizerTrainingSettings From(MaskBitConfig c)
    {
        string optimizer = c.GetString("optimizer.name", "adamw");
        if (optimizer != "adamw") throw new ConfigException($"{c.File}: optimizer.name '{optimizer}' is not supported (adamw)");
        int batchSize = (int)c.GetInt("training.per_gpu_batch_size");
        int accumulation = (int)c.GetInt("training.gradient_accumulation_steps", 1);
        if (batchSize < 1) throw new ConfigException($"{c.File}: training.per_gpu_batch_size must be at least 1");
        if (accumulation < 1) throw new ConfigException($"{c.File}: training.gradient_accumulation_steps must be at least 1");

        double lr = c.GetDouble("optimizer.params.learning_rate");
        double discriminatorLr = c.GetDouble("optimizer.params.discriminator_learning_rate", lr);
        if (c.GetBool("optimizer.params.scale_lr", false))
        {
            // One process: the reference scales by per-GPU batch × processes × accumulation.
            lr *= batchSize * accumulation;
            discriminatorLr *= batchSize * accumulation;
        }
        var settings = new TokenizerTrainingSettings
        {
            Name = c.GetString("experiment.name", "tokenizer"),
            OutputDir = c.Has("experiment.output_dir") ? c.GetString("experiment.output_dir") : null,
            MaxTrainSteps = c.GetInt("training.max_train_steps"),
            BatchSize = batchSize,
            AccumulationSteps = accumulation,
            MaxGradNorm = c.Has("training.max_grad_norm") ? c.GetDouble("training.max_grad_norm") : null,
            UseEma = c.GetBool("training.use_ema", false),
            Seed = (int)c.GetInt("training.seed", 0),
            OverfitBatch = c.GetBool("training.overfit_batch", false),
            OverfitBatchNum = (int)c.GetInt("training.overfit_batch_num", 1),
            NumGeneratedImages = (int)c.GetInt("training.num_generated_images", 2),
            MixedPrecision = c.GetString("training.mixed_precision", "no"),
            MaxTrainExamples = c.Has("experiment.max_train_examples") ? c.GetInt("experiment.max_train_examples") : null,
            LogEvery = c.GetInt("experiment.log_every", 50),
            SaveEvery = c.GetInt("experiment.save_every", 0),
            GenerateEvery = c.GetInt("experiment.generate_every", 0),
            EvalEvery = c.GetInt("experiment.eval_every", 0),
            Resume = c.GetBool("experiment.resume", false),
            InitCheckpoint = c.GetString("experiment.init_checkpoint", ""),
            LearningRate = lr,
            DiscriminatorLearningRate = discriminatorLr,
            Beta1 = c.GetDouble("optimizer.params.beta1", 0.9),
            Beta2 = c.GetDouble("optimizer.params.beta2", 0.999),
            WeightDecay = c.GetDouble("optimizer.params.weight_decay", 0.01),
            Epsilon = c.GetDouble("optimizer.params.epsilon", 1e-8),
            Scheduler = c.GetString("lr_scheduler.scheduler", "cosine_with_minimum"),
            WarmupSteps = (int)c.GetInt("lr_scheduler.params.warmup_steps", 0),
            MinimumRate = c.GetDouble("lr_scheduler.params.minimum_rate", 0.1),
            TrainSource = c.Has("dataset.params.train_shards_path_or_url") ? c.GetString("dataset.params.train_shards_path_or_url") : null,
            EvalSource = c.Has("dataset.params.eval_shards_path_or_url") ? c.GetString("dataset.params.eval_shards_path_or_url") : null,
            Workers = (int)Math.Clamp(c.GetInt("dataset.params.num_workers_per_gpu", 2), 0, Environment.ProcessorCount),
        };
        if (settings.MaxTrainSteps < 1) throw new ConfigException($"{c.File}: training.max_train_steps must be at least 1");
        if (settings.OverfitBatchNum < 1) throw new ConfigException($"{c.File}: training.overfit_batch_num must be at least 1");
        if (settings.LogEvery < 1) throw new ConfigException($"{c.File}: experiment.log_every must be at least 1");
        return settings;
    }
}
