using MaskBit.Models.Config;
using MaskBit.Models.Generator;

namespace MaskBit.Models.Training;

/// <summary>The settings of a generator run beyond the loop's (<see cref="LoopSettings"/>): config sections
/// experiment, training, optimizer, lr_scheduler, losses.mlm and the masking keys of model.mlm_model.</summary>
public sealed record GeneratorTrainingSettings
{
    public const double EmaDecay = 0.999;   // fixed in scripts/train_maskbit.py

    public required LoopSettings Loop { get; init; }
    public long MaxTrainSteps => Loop.MaxTrainSteps;
    public required int BatchSize { get; init; }
    /// <summary>training.max_grad_norm: clip when set (and positive); the norm is measured and guarded either way.</summary>
    public double? MaxGradNorm { get; init; }
    /// <summary>training.use_ema: off, as scripts/train_tokenizer.py's .get("use_ema", False) (train_maskbit.py
    /// requires the key; every shipped generator config turns it on).</summary>
    public bool UseEma { get; init; }
    /// <summary>training.seed: 42 in both stages.</summary>
    public int Seed { get; init; } = 42;
    public bool OverfitBatch { get; init; }
    public int OverfitBatchNum { get; init; } = 1;
    /// <summary>training.num_generated_images: samples per class row of the grids.</summary>
    public int NumGeneratedImages { get; init; } = 4;
    public long? MaxTrainExamples { get; init; }
    /// <summary>experiment.vqgan_checkpoint: the frozen tokenizer's weights.</summary>
    public string? TokenizerCheckpoint { get; init; }

    public required OptimizerSettings Optimizer { get; init; }
    public required ScheduleSettings Schedule { get; init; }

    public MaskSchedule TrainMaskSchedule { get; init; } = MaskSchedule.Arccos;
    public double MinMaskingRatio { get; init; }
    public double LabelDropout { get; init; } = 0.1;
    public float LabelSmoothing { get; init; } = 0.1f;
    public bool SumSplits { get; init; }

    public static GeneratorTrainingSettings From(MaskBitConfig c)
    {
        if (c.GetInt("training.gradient_accumulation_steps", 1) != 1)
            throw new ConfigException($"{c.File}: training.gradient_accumulation_steps other than 1 is not supported for the generator");
        const string m = "model.mlm_model.";
        var settings = new GeneratorTrainingSettings
        {
            Loop = LoopSettings.From(c),
            BatchSize = (int)c.GetInt("training.per_gpu_batch_size"),
            MaxGradNorm = c.Has("training.max_grad_norm") && c.GetDouble("training.max_grad_norm") > 0 ? c.GetDouble("training.max_grad_norm") : null,
            UseEma = c.GetBool("training.use_ema", false),
            Seed = (int)c.GetInt("training.seed", 42),
            OverfitBatch = c.GetBool("training.overfit_batch", false),
            OverfitBatchNum = (int)c.GetInt("training.overfit_batch_num", 1),
            NumGeneratedImages = (int)c.GetInt("training.num_generated_images", 4),
            MaxTrainExamples = c.Has("experiment.max_train_examples") ? c.GetInt("experiment.max_train_examples") : null,
            TokenizerCheckpoint = c.Has("experiment.vqgan_checkpoint") ? c.GetString("experiment.vqgan_checkpoint") : null,
            Optimizer = OptimizerSettings.From(c, TrainingStage.Generator),
            Schedule = ScheduleSettings.From(c),
            TrainMaskSchedule = Masking.ParseSchedule(c.GetString(m + "train_mask_schedule_strategy", "arccos")),
            MinMaskingRatio = c.GetDouble(m + "min_masking_ratio", 0.0),
            LabelDropout = c.GetDouble(m + "class_label_dropout", 0.1),
            LabelSmoothing = (float)c.GetDouble("losses.mlm.label_smoothing", 0.1),
            SumSplits = c.GetBool("losses.mlm.sum_splits", false),
        };
        if (settings.BatchSize < 1) throw new ConfigException($"{c.File}: training.per_gpu_batch_size must be at least 1");
        if (settings.OverfitBatchNum < 1) throw new ConfigException($"{c.File}: training.overfit_batch_num must be at least 1");
        if (settings.MaxTrainExamples is < 1) throw new ConfigException($"{c.File}: experiment.max_train_examples must be at least 1");
        return settings;
    }
}
