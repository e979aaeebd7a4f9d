namespace MaskBit.Autograd.Optim;

/// <summary>The reference's learning-rate schedules (utils/lr_schedulers.py, all seven of get_scheduler) as LambdaLR
/// factors of the base rate: lr(k) = base · factor(k), k = number of scheduler steps taken so far.</summary>
public sealed class LrSchedule
{
    public static readonly IReadOnlyList<string> Names =
        ["linear", "cosine", "cosine_with_minimum", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"];

    /// <summary>The polynomial schedule's final rate (get_polynomial_decay_schedule_with_warmup's lr_end, which
    /// get_scheduler never overrides).</summary>
    public const double PolynomialEndRate = 1e-7;

    public string Name { get; }
    public double BaseLearningRate { get; }
    public int WarmupSteps { get; }
    public long TotalSteps { get; private set; }
    public double MinimumRate { get; }
    /// <summary>cosine_with_restarts: hard restarts (get_scheduler's num_cycles, default 1).</summary>
    public int Cycles { get; }
    /// <summary>polynomial: the decay's power (get_scheduler's power, default 1).</summary>
    public double Power { get; }
    /// <summary>Scheduler steps taken (torch's last_epoch).</summary>
    public long Step { get; private set; }

    public LrSchedule(string name, double baseLearningRate, int warmupSteps, long totalSteps, double minimumRate = 0.1, int cycles = 1, double power = 1.0)
    {
        if (!Names.Contains(name)) throw new ArgumentException($"unknown lr_scheduler '{name}' ({string.Join(", ", Names)})");
        // As the reference: the polynomial decay needs a base rate above its end rate.
        if (name == "polynomial" && !(baseLearningRate > PolynomialEndRate))
            throw new ArgumentException($"polynomial: the learning rate {baseLearningRate} must be above the end rate {PolynomialEndRate}");
        Name = name; BaseLearningRate = baseLearningRate; WarmupSteps = warmupSteps; TotalSteps = totalSteps; MinimumRate = minimumRate;
        Cycles = cycles; Power = power;
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
            case "cosine_with_restarts":
                return progress >= 1.0 ? 0.0 : Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * (Cycles * progress % 1.0))));
            case "polynomial":
                if (step > TotalSteps) return PolynomialEndRate / BaseLearningRate;
                double remaining = 1.0 - (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
                return ((BaseLearningRate - PolynomialEndRate) * Math.Pow(remaining, Power) + PolynomialEndRate) / BaseLearningRate;
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

    /// <summary>Stretches or shortens the schedule to <paramref name="totalSteps"/> from the step it is at (a run
    /// whose length is re-planned while it trains, as the demo's time budget does); the warm-up is kept.</summary>
    public void Retarget(long totalSteps, AdamW? optimizer = null)
    {
        TotalSteps = totalSteps;
        if (optimizer != null) optimizer.LearningRate = CurrentLearningRate;
    }

    /// <summary>Puts the schedule at <paramref name="step"/> (checkpoint resume).</summary>
    public void SetStep(long step, AdamW? optimizer = null)
    {
        Step = step;
        if (optimizer != null) optimizer.LearningRate = CurrentLearningRate;
    }
}
