using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Perceptual;

/// <summary>nn.Conv2d for networks whose weights always come from a checkpoint: zero-initialised (no random
/// init of millions of values), rectangular kernel and padding allowed. Keys <c>weight</c> and optional
/// <c>bias</c>.</summary>
public sealed class PretrainedConv2d : Module
{
    public Tensor Weight { get; }
    public Tensor? Bias { get; }
    public int Stride { get; }
    public Padding2d Padding { get; }
    public int Groups { get; }

    public PretrainedConv2d(int inChannels, int outChannels, (int H, int W) kernel, int stride = 1, (int H, int W) padding = default,
        bool bias = false, int groups = 1)
    {
        Stride = stride;
        Groups = groups;
        Padding = new Padding2d(padding.W, padding.W, padding.H, padding.H);
        Weight = Parameter("weight", Tensor.Zeros(new[] { outChannels, inChannels / groups, kernel.H, kernel.W }));
        if (bias) Bias = Parameter("bias", Tensor.Zeros(outChannels));
    }

    public PretrainedConv2d(int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0, bool bias = false, int groups = 1)
        : this(inChannels, outChannels, (kernel, kernel), stride, (padding, padding), bias, groups) { }

    public Tensor Forward(Tensor x) => F.Conv2d(x, Weight, Bias, Stride, Padding, Groups);

    /// <summary>conv followed by an eval-mode BatchNorm, folded into one conv: weight·scale and bias shift (per
    /// output channel), so the normalisation costs no pass over the activations.</summary>
    public Tensor ForwardWithBatchNorm(Tensor x, BatchNorm2d bn)
    {
        if (Bias != null || Groups != 1) throw new InvalidOperationException("folding a BatchNorm needs a plain conv without bias");
        var (scale, shift) = bn.ScaleShift();
        var weight = Weight.Mul(scale.Reshape(Weight.Size(0), 1, 1, 1));
        return F.Conv2d(x, weight, shift, Stride, Padding);
    }
}

/// <summary>nn.Linear for checkpoint weights: zero-initialised <c>weight</c> (out, in) and <c>bias</c>.</summary>
public sealed class PretrainedLinear : Module
{
    public Tensor Weight { get; }
    public Tensor Bias { get; }

    public PretrainedLinear(int inFeatures, int outFeatures)
    {
        Weight = Parameter("weight", Tensor.Zeros(outFeatures, inFeatures));
        Bias = Parameter("bias", Tensor.Zeros(outFeatures));
    }

    public Tensor Forward(Tensor x) => Tensor.Linear(x, Weight, Bias);
}
