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
    /// <summary>training.mixed_precision: the autocast type, null for float32.</summary>
    public Kernels.DType? MixedPrecision { get; init; }
    public bool ActivationCheckpointing { get; init; }
    /// <summary>training.gradient_accumulation_steps: micro-batches per optimisation step; each micro-batch's loss
    /// is divided by it (as accelerate does) and the schedules count optimisation steps.</summary>
    public int AccumulationSteps { get; init; } = 1;
    public string? TrainSource { get; init; }
    /// <summary>dataset.params.eval_shards_path_or_url: the held-out images of experiment.eval_every.</summary>
    public string? EvalSource { get; init; }
    public int Workers { get; init; } = 2;
    public required OptimizerSettings Optimizer { get; init; }
    public required ScheduleSettings Schedule { get; init; }

    /// <summary>What the CPU backend's buffer pools keep idle at most under training.activation_checkpointing.</summary>
    public const long CheckpointingIdlePoolBytes = 128L << 20;

    /// <summary>Opened by both steps around each <c>Run</c>. training.activation_checkpointing is the memory-saving mode,
    /// so for the step it also lowers the CPU pools' mark (<see cref="Kernels.Cpu.BufferPool.LimitIdleBytes"/>): their
    /// exact-length buffers of every activation size otherwise stay idle beside the live ones (the 12-bit tokenizer's
    /// bf16 step peaked at 3,054 MB with the default mark, 2,670 MB with 128 MB), and arrays beyond the mark are
    /// collected. Disposing restores the marks, so what runs after the step (evaluation, other steps) is unaffected.</summary>
    internal IDisposable? MemoryMode() =>
        ActivationCheckpointing ? Kernels.Cpu.BufferPool.LimitIdleBytes(CheckpointingIdlePoolBytes) : null;

    /// <summary>Called by both steps between phases (after a backward, before the optimizer allocates or updates its
    /// state): under training.activation_checkpointing the pools are emptied and the heap compacted
    /// (<see cref="Kernels.Cpu.BufferPool.Trim"/>), so the next phase's buffers and AdamW's first moments take the
    /// memory the last phase's activations left instead of landing on top of it. Numerics are untouched.</summary>
    internal void ReleaseIdleMemory()
    {
        if (ActivationCheckpointing) Kernels.Cpu.BufferPool.Trim();
    }

    /// <summary><paramref name="settings"/> with the fields both stages read from <paramref name="run"/> unchanged.</summary>
    protected static T WithRunSettings<T>(T settings, RunSettings run) where T : StageTrainingSettings =>
        (T)((StageTrainingSettings)settings with
        {
            MaxGradNorm = run.MaxGradNorm,
            UseEma = run.UseEma,
            Seed = run.Seed,
            OverfitBatch = run.OverfitBatch,
            OverfitBatchNum = run.OverfitBatchNum,
            MixedPrecision = run.MixedPrecision,
            ActivationCheckpointing = run.ActivationCheckpointing,
            AccumulationSteps = run.AccumulationSteps,
            TrainSource = run.TrainSource,
            EvalSource = run.EvalSource,
            Workers = run.Workers,
        });
}
