using MaskBit.Distributed;
using MaskBit.Models.Config;

namespace MaskBit.Models.Training;

/// <summary>The settings of a tokenizer run: the loop's (<see cref="LoopSettings"/>), the shared ones
/// (<see cref="RunSettings"/>, where their defaults are documented), the optimizers and the schedule.</summary>
public sealed record TokenizerTrainingSettings : StageTrainingSettings
{
    public required string Name { get; init; }
    public int BatchSize { get; init; }
    public int NumGeneratedImages { get; init; } = 2;

    /// <summary>optimizer.params.discriminator_learning_rate (default: the tokenizer's).</summary>
    public double DiscriminatorLearningRate { get; init; }

    /// <summary>The perceptual network's weights files (losses.perceptual_weights, comma-separated; the CLI's
    /// --perceptual-weights replaces them); see <see cref="PretrainedModels.PerceptualWeightFiles"/>.</summary>
    public IReadOnlyList<string> PerceptualWeights { get; init; } = [];

    /// <summary>training.finetune_decoder (default false; the reference's ConvVQModel(finetune_decoder=True), which
    /// its configs do not reach): the encoder runs without gradients and the quantizer's losses are zero, so only the
    /// decoder (and the discriminator) train and every image keeps the tokens of the starting weights
    /// (experiment.init_checkpoint): generators trained on those tokens keep working with the new decoder.</summary>
    public bool FinetuneDecoder { get; init; }


    public const double EmaDecay = 0.999;

    public static TokenizerTrainingSettings From(MaskBitConfig c)
    {
        var run = RunSettings.From(c, TrainingStage.Tokenizer);
        int batchSize = run.TrainingBatchSize(c), accumulation = run.AccumulationSteps;
        var optimizer = OptimizerSettings.From(c, TrainingStage.Tokenizer);
        double discriminatorLr = c.GetDouble("optimizer.params.discriminator_learning_rate", optimizer.LearningRate);
        if (c.GetBool("optimizer.params.scale_lr", false))
        {
            // As the reference: by the global batch, per-GPU batch × processes × accumulation.
            int globalBatch = batchSize * ProcessGroup.World.WorldSize * accumulation;
            optimizer = optimizer with { LearningRate = optimizer.LearningRate * globalBatch };
            discriminatorLr *= globalBatch;
        }
        return WithRunSettings(new TokenizerTrainingSettings
        {
            Name = run.Name,
            Loop = LoopSettings.From(c, run),
            BatchSize = batchSize,
            NumGeneratedImages = run.NumGeneratedImages,
            Optimizer = optimizer,
            DiscriminatorLearningRate = discriminatorLr,
            Schedule = ScheduleSettings.From(c),
            PerceptualWeights = FileList(c.GetString("losses.perceptual_weights", "")),
            FinetuneDecoder = c.GetBool("training.finetune_decoder", false),
        }, run);
    }

    /// <summary>Paths separated by commas (blank entries dropped).</summary>
    public static IReadOnlyList<string> FileList(string paths) =>
        paths.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
}
