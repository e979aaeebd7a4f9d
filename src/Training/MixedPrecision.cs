using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Interop;

namespace MaskBit.Models.Training;

/// <summary>
/// training.mixed_precision of both stages, as accelerate applies it: each forward and loss runs inside
/// <see cref="Autocast"/> of the configured 16-bit type (no: float32 throughout), parameters and optimizer state stay
/// float32, and fp16 adds dynamic loss scaling (torch's GradScaler with its defaults: the loss is multiplied by the
/// scale before backward, the gradients divided by it after; a step whose gradients overflowed is skipped and halves
/// the scale, and every 2000 steps without overflow double it). bf16 has float32's range and needs no scaling.
/// </summary>
public sealed class MixedPrecision : ILossScaleState
{
    public const double InitialScale = 65536, GrowthFactor = 2, BackoffFactor = 0.5;
    public const int GrowthInterval = 2000;

    /// <summary>The autocast type, null for float32.</summary>
    public DType? DType { get; }
    /// <summary>The current loss scale (1 unless fp16); settable, as GradScaler.update(new_scale).</summary>
    public double Scale { get; set; }
    /// <summary>Steps skipped so far because their gradients overflowed (fp16 only).</summary>
    public long SkippedSteps { get; set; }
    /// <summary>Clean steps since the last overflow or growth (GradScaler's growth tracker).</summary>
    public int GrowthTracker { get; set; }

    /// <summary>What a training checkpoint keeps of the loss scale: this when the loss is scaled (fp16), else null.</summary>
    public ILossScaleState? CheckpointState => ScalesLoss ? this : null;

    public MixedPrecision(DType? dtype, double initialScale = InitialScale)
    {
        if (dtype is { } t && !t.Is16Bit()) throw new ArgumentException($"mixed precision needs bf16 or fp16, got {t}");
        DType = dtype;
        Scale = dtype == Kernels.DType.Float16 ? initialScale : 1;
    }

    public bool ScalesLoss => DType == Kernels.DType.Float16;

    /// <summary>The region of a forward and its loss.</summary>
    public IDisposable Autocast() => Autograd.Autocast.Enable(DType);

    /// <summary>Back-propagates <paramref name="loss"/> multiplied by the loss scale.</summary>
    public void Backward(Tensor loss) => (ScalesLoss ? loss.MulScalar((float)Scale) : loss).Backward();

    /// <summary>Divides the gradients of <paramref name="parameters"/> by the loss scale and returns a device scalar
    /// that is finite exactly when they all are (the sum of every gradient: a float32 sum of unscaled gradients
    /// does not overflow in practice), for the step's single download; null when the loss is not scaled.</summary>
    public Tensor? Unscale(IEnumerable<Tensor> parameters)
    {
        if (!ScalesLoss) return null;
        using var _ = Tape.NoGrad();
        Tensor? probe = null;
        foreach (var p in parameters)
        {
            if (p.Grad == null) continue;
            p.Grad.Mul_((float)(1 / Scale));
            var sum = p.Grad.Sum();
            probe = probe == null ? sum : probe.Add(sum);
        }
        return probe ?? Tensor.Scalar(0f);
    }

    /// <summary>Updates the scale after a step whose <see cref="Unscale"/> probe read <paramref name="probe"/>; returns
    /// whether the step may be applied (false: the gradients overflowed, the caller skips the optimizer step).</summary>
    public bool Update(float probe)
    {
        if (!ScalesLoss) return true;
        if (!float.IsFinite(probe))
        {
            Scale *= BackoffFactor;
            SkippedSteps++;
            GrowthTracker = 0;
            return false;
        }
        if (++GrowthTracker == GrowthInterval)
        {
            Scale *= GrowthFactor;
            GrowthTracker = 0;
        }
        return true;
    }

    /// <summary>The logged values of loss scaling (none unless fp16): the scale the step used and the skipped steps so far.</summary>
    public void Log(Dictionary<string, double> values, double scaleUsed)
    {
        if (!ScalesLoss) return;
        values["loss_scale"] = scaleUsed;
        values["skipped_steps"] = SkippedSteps;
    }
}
