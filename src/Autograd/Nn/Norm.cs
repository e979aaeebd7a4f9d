namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.GroupNorm over (N, C, *spatial): weight (C) = 1, bias (C) = 0 when affine.</summary>
public sealed class GroupNorm : Module
{
    public int NumGroups { get; }
    public int NumChannels { get; }
    public float Eps { get; }
    public Tensor? Weight { get; }
    public Tensor? Bias { get; }

    public GroupNorm(int numGroups, int numChannels, float eps = 1e-5f, bool affine = true)
    {
        if (numGroups <= 0 || numChannels % numGroups != 0)
            throw new ArgumentException($"GroupNorm: {numChannels} channels do not split into {numGroups} groups");
        NumGroups = numGroups; NumChannels = numChannels; Eps = eps;
        if (!affine) return;
        Weight = Parameter("weight", Tensor.Ones(numChannels));
        Bias = Parameter("bias", Tensor.Zeros(numChannels));
    }

    public Tensor Forward(Tensor x) => F.GroupNorm(x, NumGroups, Weight, Bias, Eps);

    /// <summary>silu(Forward(x)) in one fused pass (the GroupNorm → SiLU pair of residual blocks).</summary>
    public Tensor ForwardSilu(Tensor x) => F.GroupNorm(x, NumGroups, Weight, Bias, Eps, fuseSilu: true);
}

/// <summary>torch.nn.LayerNorm over the last axis of size <c>dim</c>: weight = 1, bias = 0.</summary>
public sealed class LayerNorm : Module
{
    public float Eps { get; }
    public Tensor Weight { get; }
    public Tensor Bias { get; }

    public LayerNorm(int dim, float eps = 1e-5f)
    {
        Eps = eps;
        Weight = Parameter("weight", Tensor.Ones(dim));
        Bias = Parameter("bias", Tensor.Zeros(dim));
    }

    public Tensor Forward(Tensor x) => F.LayerNorm(x, Weight, Bias, Eps);
}
