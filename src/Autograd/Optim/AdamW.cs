using MaskBit.Kernels;

namespace MaskBit.Autograd.Optim;

/// <summary>torch.optim.AdamW (PyTorch 1.13 single-tensor path, amsgrad off): decoupled weight decay, bias
/// corrections in float64 on the host, one fused update pass per parameter on its device.</summary>
public sealed class AdamW
{
    public IReadOnlyList<Tensor> Parameters { get; }
    /// <summary>Current learning rate (a scheduler sets it before each step).</summary>
    public double LearningRate { get; set; }
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }
    /// <summary>The moments' storage type: float32 (torch's), or bfloat16 to halve the optimizer's memory (not the
    /// reference's). Each step then widens a parameter's moments into float32 temporaries, updates them with the same
    /// kernel, and rounds them back to nearest, one parameter at a time; the parameter's update itself is float32's.</summary>
    public DType MomentDType
    {
        get => _momentDType;
        init => _momentDType = value is DType.Float32 or DType.BFloat16 ? value
            : throw new ArgumentOutOfRangeException(nameof(MomentDType), $"AdamW's moments are float32 or bfloat16, not {value}");
    }
    private readonly DType _momentDType = DType.Float32;
    /// <summary>Steps taken (torch keeps one counter per parameter; they are equal here as every parameter is
    /// stepped each time, parameters without a gradient excepted — see <see cref="StepOf"/>).</summary>
    private readonly Dictionary<Tensor, (Tensor ExpAvg, Tensor ExpAvgSq, long Step)> _state = new(ReferenceEqualityComparer.Instance);

    public AdamW(IEnumerable<Tensor> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weightDecay = 1e-2)
    {
        Parameters = parameters.ToList();
        if (lr < 0) throw new ArgumentOutOfRangeException(nameof(lr), $"learning rate {lr} < 0");
        if (beta1 is < 0 or >= 1 || beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), $"betas ({beta1}, {beta2}) must lie in [0, 1)");
        LearningRate = lr; Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
    }

    public long StepOf(Tensor p) => _state.TryGetValue(p, out var s) ? s.Step : 0;
    public Tensor? ExpAvgOf(Tensor p) => _state.TryGetValue(p, out var s) ? s.ExpAvg : null;
    public Tensor? ExpAvgSqOf(Tensor p) => _state.TryGetValue(p, out var s) ? s.ExpAvgSq : null;

    /// <summary>Updates every parameter that has a gradient.</summary>
    public void Step()
    {
        foreach (var p in Parameters)
        {
            if (p.Grad == null) continue;
            if (!_state.TryGetValue(p, out var st))
                using (TensorScope.Outside()) st = (Tensor.Zeros(p.Shape, p.Device, MomentDType), Tensor.Zeros(p.Shape, p.Device, MomentDType), 0);
            long step = st.Step + 1;
            _state[p] = (st.ExpAvg, st.ExpAvgSq, step);
            double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
            var scalars = new AdamWScalars(
                Decay: (float)(1 - LearningRate * WeightDecay),
                Beta1: (float)Beta1, OneMinusBeta1: (float)(1 - Beta1),
                Beta2: (float)Beta2, OneMinusBeta2: (float)(1 - Beta2),
                StepSize: (float)(LearningRate / bc1), Bc2Sqrt: (float)Math.Sqrt(bc2), Eps: (float)Eps);
            if (MomentDType == DType.Float32)
            {
                p.Device.AdamWUpdate(p.Buf, p.Grad.Buf, st.ExpAvg.Buf, st.ExpAvgSq.Buf, p.Numel, scalars);
                continue;
            }
            using (TensorScope.Begin())
            {
                Tensor expAvg = st.ExpAvg.To(DType.Float32), expAvgSq = st.ExpAvgSq.To(DType.Float32);
                p.Device.AdamWUpdate(p.Buf, p.Grad.Buf, expAvg.Buf, expAvgSq.Buf, p.Numel, scalars);
                st.ExpAvg.CopyFrom_(expAvg);
                st.ExpAvgSq.CopyFrom_(expAvgSq);
            }
        }
    }

    public void ZeroGrad() { foreach (var p in Parameters) p.ZeroGrad(); }

    /// <summary>Restores moment buffers (converted to <see cref="MomentDType"/>) and step counts (checkpoint resume).</summary>
    public void LoadState(Tensor p, Tensor expAvg, Tensor expAvgSq, long step)
    {
        using var _ = TensorScope.Outside();
        Tensor Moment(Tensor saved) => saved.DType == MomentDType ? saved.CloneNoGrad() : saved.To(MomentDType);
        _state[p] = (Moment(expAvg), Moment(expAvgSq), step);
    }
}

/// <summary>torch.nn.utils.clip_grad_norm_ (2-norm).</summary>
public static class GradClip
{
    /// <summary>Scales all gradients by min(maxNorm/(total + 1e-6), 1) and returns the total norm before clipping.</summary>
    public static float ClipGradNorm(IEnumerable<Tensor> parameters, float maxNorm) => ClipGradNormOnDevice(parameters, maxNorm)?.Item() ?? 0f;

    /// <summary><see cref="ClipGradNorm"/> without leaving the device (as torch's clip_grad_norm_, which returns a
    /// tensor): the factor is computed and applied by kernels, so nothing waits for the device; the total norm
    /// before clipping comes back as a scalar tensor (null when no parameter has a gradient). Gradients under
    /// the limit are multiplied by exactly 1, so the result equals clipping on the host.</summary>
    public static Tensor? ClipGradNormOnDevice(IEnumerable<Tensor> parameters, float maxNorm)
    {
        var grads = parameters.Select(p => p.Grad).Where(g => g != null).Cast<Tensor>().ToList();
        if (grads.Count == 0) return null;
        using var _ = Tape.NoGrad();
        // torch takes the norm of the per-tensor norms; the sum of all squares, gradient after gradient into one
        // accumulator, is the same to float32 rounding and reads each gradient once without a squared copy.
        var device = grads[0].Device;
        var sumOfSquares = Tensor.Scalar(0f, device);
        foreach (var g in grads)
        {
            if (g.Device != device) throw new ArgumentException($"gradients on {device} and {g.Device}: clip_grad_norm_ needs one device");
            device.SumOfSquares(g.Buf, g.Numel, sumOfSquares.Buf, accumulate: true);
        }
        var total = sumOfSquares.Sqrt();
        var coef = Tensor.Scalar(maxNorm, total.Device).Div(total.AddScalar(1e-6f)).ClampMax(1f);
        foreach (var g in grads)
            g.Device.Binary(BinaryOp.Mul, g.Buf, ShapeUtil.ContiguousStrides(g.Shape), coef.Buf, new int[g.Rank], g.Buf, g.Shape);
        return total;
    }
}
