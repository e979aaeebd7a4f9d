namespace MaskBit.Autograd;

/// <summary>torch.nn.functional-style entry points. Op families add their own partial files.</summary>
public static partial class F
{
    /// <summary>mean((x − t)²).</summary>
    public static Tensor MseLoss(Tensor input, Tensor target) => input.Sub(target).Square().Mean();

    /// <summary>mean(|x − t|); the derivative at equality is 0 (as torch).</summary>
    public static Tensor L1Loss(Tensor input, Tensor target) => input.Sub(target).Abs().Mean();

    /// <summary>x / max(‖x‖₂, eps) along <paramref name="dim"/> (torch.nn.functional.normalize).</summary>
    public static Tensor Normalize(Tensor x, int dim = -1, float eps = 1e-12f) =>
        x.Div(x.Square().Sum(dim, keepDim: true).Sqrt().ClampMin(eps));

    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null) => Tensor.Linear(x, weight, bias);
}
