using MaskBit.Autograd.Optim;
using MaskBit.Models.Config;

namespace MaskBit.Models.Training;

/// <summary>The stage whose defaults apply where the reference's two training scripts (or their configs) differ.</summary>
public enum TrainingStage { Tokenizer, Generator }

/// <summary>optimizer.* — AdamW (the only optimizer either reference script builds).</summary>
public sealed record OptimizerSettings
{
    /// <summary>optimizer.params.learning_rate: required (both scripts read it without a default).</summary>
    public required double LearningRate { get; init; }
    public double Beta1 { get; init; } = 0.9;
    /// <summary>Tokenizer 0.999 (configs/tokenizer/*.yaml of scripts/train_tokenizer.py), generator 0.96
    /// (configs/generator/*.yaml of scripts/train_maskbit.py).</summary>
    public double Beta2 { get; init; }
    /// <summary>Tokenizer 0.01 (train_tokenizer.py's configs), generator 0.045 (train_maskbit.py's configs).</summary>
    public double WeightDecay { get; init; }
    public double Epsilon { get; init; } = 1e-8;

    public static OptimizerSettings From(MaskBitConfig c, TrainingStage stage)
    {
        string name = c.GetString("optimizer.name", "adamw");
        if (name != "adamw") throw new ConfigException($"{c.File}: optimizer.name '{name}' is not supported (adamw)");
        const string o = "optimizer.params.";
        return new OptimizerSettings
        {
            LearningRate = c.GetDouble(o + "learning_rate"),
            Beta1 = c.GetDouble(o + "beta1", 0.9),
            Beta2 = c.GetDouble(o + "beta2", stage == TrainingStage.Tokenizer ? 0.999 : 0.96),
            WeightDecay = c.GetDouble(o + "weight_decay", stage == TrainingStage.Tokenizer ? 0.01 : 0.045),
            Epsilon = c.GetDouble(o + "epsilon", 1e-8),
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
        try { settings.Create(1.0, 1); }
        catch (ArgumentException e) { throw new ConfigException($"{c.File}: lr_scheduler.scheduler: {e.Message}"); }
        return settings;
    }

    public LrSchedule Create(double learningRate, long totalSteps) => new(Name, learningRate, WarmupSteps, totalSteps, MinimumRate);
}
