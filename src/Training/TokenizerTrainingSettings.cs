using MaskBit.Models.Config;

namespace MaskBit.Models.Training;

/// <summary>The settings of a tokenizer run: the loop's (<see cref="LoopSettings"/>), the shared ones
/// (<see cref="RunSettings"/>, where their defaults are documented), the optimizers and the schedule.</summary>
public sealed record TokenizerTrainingSettings : StageTrainingSettings
{
    public required string Name { get; init; }
    public int BatchSize { get; init; }
    public int AccumulationSteps { get; init; } = 1;
    public int NumGeneratedImages { get; init; } = 2;
    public string InitCheckpoint { get; init; } = "";

    /// <summary>optimizer.params.discriminator_learning_rate (default: the tokenizer's).</summary>
    public double DiscriminatorLearningRate { get; init; }

    public string? EvalSource { get; init; }
    public int Workers { get; init; } = 2;

    public const double EmaDecay = 0.999;

    public static TokenizerTrainingSettings From(MaskBitConfig c)
    {
        var run = RunSettings.From(c, TrainingStage.Tokenizer);
        int batchSize = run.TrainingBatchSize(c), accumulation = run.AccumulationSteps;
        var optimizer = OptimizerSettings.From(c, TrainingStage.Tokenizer);
        double discriminatorLr = c.GetDouble("optimizer.params.discriminator_learning_rate", optimizer.LearningRate);
        if (c.GetBool("optimizer.params.scale_lr", false))
        {
            // One process: the reference scales by per-GPU batch × processes × accumulation.
            optimizer = optimizer with { LearningRate = optimizer.LearningRate * batchSize * accumulation };
            discriminatorLr *= batchSize * accumulation;
        }
        return new TokenizerTrainingSettings
        {
            Name = run.Name,
            Loop = LoopSettings.From(c),
            BatchSize = batchSize,
            AccumulationSteps = accumulation,
            MaxGradNorm = run.MaxGradNorm,
            UseEma = run.UseEma,
            Seed = run.Seed,
            OverfitBatch = run.OverfitBatch,
            OverfitBatchNum = run.OverfitBatchNum,
            NumGeneratedImages = run.NumGeneratedImages,
            MixedPrecision = run.MixedPrecision,
            MaxTrainExamples = run.MaxTrainExamples,
            InitCheckpoint = ExistingFileOrEmpty(c, "experiment.init_checkpoint"),
            Optimizer = optimizer,
            DiscriminatorLearningRate = discriminatorLr,
            Schedule = ScheduleSettings.From(c),
            TrainSource = run.TrainSource,
            EvalSource = run.EvalSource,
            Workers = run.Workers,
        };
    }

    /// <summary>A file a config names must exist (the reference ignores a missing init_checkpoint; a typo there
    /// would silently start from scratch).</summary>
    private static string ExistingFileOrEmpty(MaskBitConfig c, string key)
    {
        string path = c.GetString(key, "");
        if (path.Length > 0 && !File.Exists(path))
            throw new ConfigException($"{c.Find(key)!.Source}: '{key}' names {path}, which does not exist");
        return path;
    }
}
