namespace MaskBit.Models.Training;

/// <summary>The settings both stages share: the loop's (<see cref="LoopSettings"/>), those read from
/// <see cref="RunSettings"/> (where their defaults are documented), the optimizer and the schedule.</summary>
public abstract record StageTrainingSettings
{
    public required LoopSettings Loop { get; init; }
    public long MaxTrainSteps => Loop.MaxTrainSteps;
    public double? MaxGradNorm { get; init; }
    public bool UseEma { get; init; }
    public int Seed { get; init; } = 42;
    public bool OverfitBatch { get; init; }
    public int OverfitBatchNum { get; init; } = 1;
    public string MixedPrecision { get; init; } = "no";
    public long? MaxTrainExamples { get; init; }
    public string? TrainSource { get; init; }
    public required OptimizerSettings Optimizer { get; init; }
    public required ScheduleSettings Schedule { get; init; }
}
