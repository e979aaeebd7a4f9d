using MaskBit.Autograd;
using MaskBit.Autograd.Optim;
using MaskBit.Kernels;
using MaskBit.Models.Config;

namespace MaskBit.Models.Training;

/// <summary>The stage whose defaults apply where the reference's two training scripts (or their configs) differ.</summary>
public enum TrainingStage { Tokenizer, Generator, Classifier }

/// <summary>optimizer.* — AdamW (the only optimizer either reference script builds).</summary>
public sealed record OptimizerSettings
{
    /// <summary>optimizer.params.learning_rate: required (both scripts read it without a default).</summary>
    public required double LearningRate { get; init; }
    public double Beta1 { get; init; } = 0.9;
    /// <summary>Tokenizer (and classifier) 0.999 (configs/tokenizer/*.yaml of scripts/train_tokenizer.py), generator 0.96
    /// (configs/generator/*.yaml of scripts/train_maskbit.py).</summary>
    public double Beta2 { get; init; }
    /// <summary>Tokenizer (and classifier) 0.01 (train_tokenizer.py's configs), generator 0.045 (train_maskbit.py's configs).</summary>
    public double WeightDecay { get; init; }
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>optimizer.params.moments_dtype: float32 (default, as the reference) or bf16, which halves AdamW's state
    /// (<see cref="AdamW.MomentDType"/>; the 12-bit generator's moments are 2.4 GB in float32).</summary>
    public DType MomentDType { get; init; } = DType.Float32;

    /// <summary>An <see cref="AdamW"/> over <paramref name="parameters"/> with these settings.</summary>
    public AdamW Create(IEnumerable<Tensor> parameters, double? learningRate = null) =>
        new(parameters, learningRate ?? LearningRate, Beta1, Beta2, Epsilon, WeightDecay) { MomentDType = MomentDType };

    public static OptimizerSettings From(MaskBitConfig c, TrainingStage stage)
    {
        string name = c.GetString("optimizer.name", "adamw");
        if (name != "adamw") throw new ConfigException($"{c.File}: optimizer.name '{name}' is not supported (adamw)");
        const string o = "optimizer.params.";
        return new OptimizerSettings
        {
            LearningRate = c.GetDouble(o + "learning_rate"),
            Beta1 = c.GetDouble(o + "beta1", 0.9),
            Beta2 = c.GetDouble(o + "beta2", stage == TrainingStage.Generator ? 0.96 : 0.999),
            WeightDecay = c.GetDouble(o + "weight_decay", stage == TrainingStage.Generator ? 0.045 : 0.01),
            Epsilon = c.GetDouble(o + "epsilon", 1e-8),
            MomentDType = MomentsType(c, o + "moments_dtype"),
        };
    }

    private static DType MomentsType(MaskBitConfig c, string key)
    {
        string value = c.GetString(key, "float32");
        return value.Trim().ToLowerInvariant() switch
        {
            "float32" or "fp32" => DType.Float32,
            "bf16" or "bfloat16" => DType.BFloat16,
            _ => throw new ConfigException($"{c.File}: {key}: '{value}' is not a moments type (expected float32 or bf16)"),
        };
    }
}

/// <summary>lr_scheduler.* — warm-up then the named decay (the reference's get_scheduler) over a run's steps.</summary>
public sealed record ScheduleSettings(string Name, int WarmupSteps, double MinimumRate)
{
    public static ScheduleSettings From(MaskBitConfig c)
    {
        var settings = new ScheduleSettings(c.GetString("lr_scheduler.scheduler", "cosine_with_minimum"),
            (int)c.GetInt("lr_scheduler.params.warmup_steps", 0), c.GetDouble("lr_scheduler.params.minimum_rate", 0.1));
        // The optimizer's rate: the polynomial decay refuses one at or below its end rate.
        try { settings.Create(c.GetDouble("optimizer.params.learning_rate", 1.0), 1); }
        catch (ArgumentException e) { throw new ConfigException($"{c.File}: lr_scheduler.scheduler: {e.Message}"); }
        return settings;
    }

    public LrSchedule Create(double learningRate, long totalSteps) => new(Name, learningRate, WarmupSteps, totalSteps, MinimumRate);
}

/// <summary>The keys of experiment, training and dataset.params that both stages (and evaluation) share, read once
/// with one default each; the stage settings take theirs from here. Where the stages' defaults differ, the field
/// names the reference file each follows.</summary>
public sealed record RunSettings
{
    /// <summary>experiment.name: tokenizer "tokenizer", generator "maskbit_generator" (the run folder's default name).</summary>
    public required string Name { get; init; }
    public string? OutputDir { get; init; }
    public long? MaxTrainExamples { get; init; }
    /// <summary>experiment.vqgan_checkpoint: the tokenizer weights (the generator's frozen tokenizer).</summary>
    public string? TokenizerCheckpoint { get; init; }
    public string? TrainSource { get; init; }
    public string? EvalSource { get; init; }
    /// <summary>dataset.params.num_workers_per_gpu, at most the processor count.</summary>
    public int Workers { get; init; } = 2;
    /// <summary>dataset.params.num_workers_per_gpu as written (the reference's epoch length counts with it).</summary>
    public int ConfiguredWorkers { get; init; } = 2;
    /// <summary>training.per_gpu_batch_size: required for training (both scripts read it without a default).</summary>
    public int? BatchSize { get; init; }
    public int AccumulationSteps { get; init; } = 1;
    /// <summary>training.mixed_precision: no (null, float32), bf16 or fp16 (<see cref="Training.MixedPrecision"/>).</summary>
    public DType? MixedPrecision { get; init; }
    /// <summary>training.activation_checkpointing (default false): the generator's transformer layers and the
    /// tokenizer's encoder/decoder stages keep only their inputs for the backward and recompute their activations
    /// there (<see cref="Checkpoint"/>): less memory for one more forward; the gradients are the same.</summary>
    public bool ActivationCheckpointing { get; init; }
    /// <summary>training.num_generated_images: tokenizer 2 (reconstructions, scripts/train_tokenizer.py's configs),
    /// generator 4 (samples per class row).</summary>
    public int NumGeneratedImages { get; init; }
    /// <summary>training.seed: 42 in both stages (every shipped config's value; both scripts seed nothing without it).</summary>
    public int Seed { get; init; } = 42;
    /// <summary>training.use_ema: off in both stages, as train_tokenizer.py's .get("use_ema", False) (train_maskbit.py
    /// requires the key; every shipped generator config turns it on).</summary>
    public bool UseEma { get; init; }
    public bool OverfitBatch { get; init; }
    public int OverfitBatchNum { get; init; } = 1;
    /// <summary>training.max_grad_norm: clip when positive; the norm is measured and guarded either way.</summary>
    public double? MaxGradNorm { get; init; }

    public static RunSettings From(MaskBitConfig c, TrainingStage stage)
    {
        string? Text(string key) => c.Has(key) ? c.GetString(key) : null;
        var settings = new RunSettings
        {
            Name = c.GetString("experiment.name", stage switch { TrainingStage.Tokenizer => "tokenizer", TrainingStage.Generator => "maskbit_generator", _ => "classifier" }),
            OutputDir = Text("experiment.output_dir"),
            MaxTrainExamples = c.Has("experiment.max_train_examples") ? c.GetInt("experiment.max_train_examples") : null,
            TokenizerCheckpoint = Text("experiment.vqgan_checkpoint"),
            TrainSource = Text("dataset.params.train_shards_path_or_url"),
            EvalSource = Text("dataset.params.eval_shards_path_or_url"),
            Workers = (int)Math.Clamp(c.GetInt("dataset.params.num_workers_per_gpu", 2), 0, Environment.ProcessorCount),
            ConfiguredWorkers = (int)c.GetInt("dataset.params.num_workers_per_gpu", 2),
            BatchSize = c.Has("training.per_gpu_batch_size") ? (int)c.GetInt("training.per_gpu_batch_size") : null,
            AccumulationSteps = (int)c.GetInt("training.gradient_accumulation_steps", 1),
            MixedPrecision = Precision(c),
            ActivationCheckpointing = c.GetBool("training.activation_checkpointing", false),
            NumGeneratedImages = (int)c.GetInt("training.num_generated_images", stage == TrainingStage.Tokenizer ? 2 : 4),
            Seed = (int)c.GetInt("training.seed", 42),
            UseEma = c.GetBool("training.use_ema", false),
            OverfitBatch = c.GetBool("training.overfit_batch", false),
            OverfitBatchNum = (int)c.GetInt("training.overfit_batch_num", 1),
            MaxGradNorm = c.Has("training.max_grad_norm") && c.GetDouble("training.max_grad_norm") > 0 ? c.GetDouble("training.max_grad_norm") : null,
        };
        if (settings.BatchSize is < 1) throw new ConfigException($"{c.File}: training.per_gpu_batch_size must be at least 1");
        if (settings.AccumulationSteps < 1) throw new ConfigException($"{c.File}: training.gradient_accumulation_steps must be at least 1");
        if (settings.OverfitBatchNum < 1) throw new ConfigException($"{c.File}: training.overfit_batch_num must be at least 1");
        if (settings.MaxTrainExamples is < 1) throw new ConfigException($"{c.File}: experiment.max_train_examples must be at least 1");
        return settings;
    }

    private static DType? Precision(MaskBitConfig c)
    {
        try { return Autocast.Parse(c.GetString("training.mixed_precision", "no"), "training.mixed_precision"); }
        catch (ArgumentException e) { throw new ConfigException($"{c.File}: {e.Message}"); }
    }

    /// <summary>The batch size of a training run (required there).</summary>
    public int TrainingBatchSize(MaskBitConfig c) =>
        BatchSize ?? throw new ConfigException($"{c.File}: required key 'training.per_gpu_batch_size' is missing");
}
