namespace MaskBit.Autograd.Optim;

/// <summary>The reference's learning-rate schedules (utils/lr_schedulers.py) as LambdaLR factors of the base
/// rate: lr(k) = base · factor(k), k = number of scheduler steps taken so far.</summary>
public sealed class LrSchedule
{
    public string Name { get; }
    public double BaseLearningRate { get; }
    public int WarmupSteps { get; }
    public long TotalSteps { get; }
    public double MinimumRate { get; }
    /// <summary>Scheduler steps taken (torch's last_epoch).</summary>
    public long Step { get; private set; }

    public LrSchedule(string name, double baseLearningRate, int warmupSteps, long totalSteps, double minimumRate = 0.1)
    {
        if (name is not ("cosine_with_minimum" or "cosine" or "linear" or "constant" or "constant_with_warmup"))
            throw new ArgumentException($"unknown lr_scheduler '{name}' (cosine_with_minimum, cosine, linear, constant, constant_with_warmup)");
        Name = name; BaseLearningRate = baseLearningRate; WarmupSteps = warmupSteps; TotalSteps = totalSteps; MinimumRate = minimumRate;
    }

    public double Factor(long step)
    {
        if (Name == "constant") return 1.0;
        if (step < WarmupSteps) return (double)step / Math.Max(1, WarmupSteps);
        if (Name == "constant_with_warmup") return 1.0;
        double progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
        switch (Name)
        {
            case "linear": return Math.Max(0.0, (double)(TotalSteps - step) / Math.Max(1, TotalSteps - WarmupSteps));
            case "cosine": return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * progress)));
            default:
                // No clamp at the end: past TotalSteps the factor rises again, as in the reference.
                double cos = 0.5 * (1.0 + Math.Cos(Math.PI * progress));
                return Math.Max(0.0, cos + MinimumRate - MinimumRate * cos);
        }
    }

    public double LearningRateAt(long step) => BaseLearningRate * Factor(step);

    /// <summary>The rate for the next optimizer step (torch's get_last_lr()).</summary>
    public double CurrentLearningRate => LearningRateAt(Step);

    /// <summary>Advances one step and sets the optimizer's rate (torch: scheduler.step()).</summary>
    public void Advance(AdamW? optimizer = null)
    {
        Step++;
        if (optimizer != null) optimizer.LearningRate = CurrentLearningRate;
    }

    /// <summary>Puts the schedule at <paramref name="step"/> (checkpoint resume).</summary>
    public void SetStep(long step, AdamW? optimizer = null)
    {
        Step = step;
        if (optimizer != null) optimizer.LearningRate = CurrentLearningRate;
    }
}
