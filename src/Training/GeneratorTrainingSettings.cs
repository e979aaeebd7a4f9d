using MaskBit.Models.Config;
using MaskBit.Models.Generator;

namespace MaskBit.Models.Training;

/// <summary>The settings of a generator run: the loop's (<see cref="LoopSettings"/>), the shared ones
/// (<see cref="RunSettings"/>, where their defaults are documented), the optimizer, the schedule, losses.mlm and
/// the masking keys of model.mlm_model.</summary>
public sealed record GeneratorTrainingSettings : StageTrainingSettings
{
    public const double EmaDecay = 0.999;   // fixed in scripts/train_maskbit.py

    public required int BatchSize { get; init; }
    public int NumGeneratedImages { get; init; } = 4;
    /// <summary>experiment.vqgan_checkpoint: the frozen tokenizer's weights.</summary>
    public string? TokenizerCheckpoint { get; init; }

    public MaskSchedule TrainMaskSchedule { get; init; } = MaskSchedule.Arccos;
    public double MinMaskingRatio { get; init; }
    public double LabelDropout { get; init; } = 0.1;
    public float LabelSmoothing { get; init; } = 0.1f;
    public bool SumSplits { get; init; }

    public static GeneratorTrainingSettings From(MaskBitConfig c)
    {
        var run = RunSettings.From(c, TrainingStage.Generator);
        const string m = "model.mlm_model.";
        return WithRunSettings(new GeneratorTrainingSettings
        {
            Loop = LoopSettings.From(c, run),
            BatchSize = run.TrainingBatchSize(c),
            NumGeneratedImages = run.NumGeneratedImages,
            TokenizerCheckpoint = run.TokenizerCheckpoint,
            Optimizer = OptimizerSettings.From(c, TrainingStage.Generator),
            Schedule = ScheduleSettings.From(c),
            TrainMaskSchedule = Masking.ParseSchedule(c.GetString(m + "train_mask_schedule_strategy", "arccos")),
            MinMaskingRatio = c.GetDouble(m + "min_masking_ratio", 0.0),
            LabelDropout = c.GetDouble(m + "class_label_dropout", 0.1),
            LabelSmoothing = (float)c.GetDouble("losses.mlm.label_smoothing", 0.1),
            SumSplits = c.GetBool("losses.mlm.sum_splits", false),
        }, run);
    }
}
