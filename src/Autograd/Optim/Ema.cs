namespace MaskBit.Autograd.Optim;

/// <summary>Exponential moving average of parameters, following the reference's EMAModel
/// (modeling/modules/ema_model.py): warm-up or (1+s)/(10+s) decay, update_after_step, update_every, min_decay.</summary>
public sealed class Ema
{
    public double Decay { get; }
    public double MinDecay { get; }
    public int UpdateAfterStep { get; }
    public int UpdateEvery { get; }
    public bool UseEmaWarmup { get; }
    public double InvGamma { get; }
    public double Power { get; }
    public long OptimizationStep { get; private set; }
    /// <summary>The decay used by the last update (null before the first).</summary>
    public double? CurrentDecay { get; private set; }
    public IReadOnlyList<Tensor> Shadow { get; }

    public Ema(IEnumerable<Tensor> parameters, double decay = 0.9999, double minDecay = 0.0, int updateAfterStep = 0,
        int updateEvery = 1, bool useEmaWarmup = false, double invGamma = 1.0, double power = 2.0 / 3.0, long currentStep = 0)
    {
        if (decay is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(decay), $"EMA decay {decay} must lie in [0, 1]");
        if (updateEvery < 1) throw new ArgumentOutOfRangeException(nameof(updateEvery), $"update_every {updateEvery} must be ≥ 1");
        Decay = decay; MinDecay = minDecay; UpdateAfterStep = updateAfterStep; UpdateEvery = updateEvery;
        UseEmaWarmup = useEmaWarmup; InvGamma = invGamma; Power = power; OptimizationStep = currentStep;
        using var _ = TensorScope.Outside();
        Shadow = parameters.Select(p => p.Detach().CloneNoGrad()).ToList();
    }

    public void SetStep(long step) => OptimizationStep = step;

    public double GetDecay(long optimizationStep)
    {
        long step = Math.Max(0, optimizationStep - UpdateAfterStep - 1);
        if (step <= 0) return 0.0;   // before min_decay applies: the first update copies the weights
        double cur = UseEmaWarmup ? 1 - Math.Pow(1 + step / InvGamma, -Power) : (1.0 + step) / (10.0 + step);
        cur = Math.Min(cur, Decay);
        return Math.Max(cur, MinDecay);
    }

    /// <summary>One EMA step with the current parameters (same order as at construction).</summary>
    public void Step(IReadOnlyList<Tensor> parameters)
    {
        if (parameters.Count != Shadow.Count) throw new ArgumentException($"EMA tracks {Shadow.Count} tensors, got {parameters.Count}");
        OptimizationStep++;
        if ((OptimizationStep - 1) % UpdateEvery != 0) return;
        double decay = GetDecay(OptimizationStep);
        CurrentDecay = decay;
        float oneMinusDecay = (float)(1 - decay);
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            if (p.RequiresGrad) p.Device.EmaUpdate(Shadow[i].Buf, p.Buf, p.Numel, oneMinusDecay);
            else Shadow[i].CopyFrom_(p);
        }
    }

    /// <summary>Copies the averaged values into the given parameters.</summary>
    public void CopyTo(IReadOnlyList<Tensor> parameters)
    {
        for (int i = 0; i < parameters.Count; i++) parameters[i].CopyFrom_(Shadow[i]);
    }
}
