namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.Conv2d with parameters <c>weight</c> (out, in/groups, k, k) and optional <c>bias</c>,
/// initialised like torch (kaiming-uniform with a = √5, i.e. U(±1/√fan_in) for both). Padding is either a fixed
/// symmetric amount or, with <paramref name="same"/>, the reference's Conv2dSame: TF SAME padding computed from
/// each input's size (the extra row/column at the bottom/right).</summary>
public sealed class Conv2d : Module
{
    public Tensor Weight { get; }
    public Tensor? Bias { get; }
    public int Stride { get; }
    public int Groups { get; }
    /// <summary>Symmetric padding; ignored when <see cref="Same"/> is set.</summary>
    public int Padding { get; }
    public bool Same { get; }

    public Conv2d(int inChannels, int outChannels, int kernelSize, int stride = 1, bool bias = true, int groups = 1,
        int padding = 0, bool same = false, Random? rng = null)
    {
        if (inChannels % groups != 0 || outChannels % groups != 0)
            throw new ArgumentException($"conv2d: {inChannels} → {outChannels} channels are not divisible into {groups} groups");
        rng ??= Random.Shared;
        Stride = stride; Groups = groups; Padding = padding; Same = same;
        int fanIn = inChannels / groups * kernelSize * kernelSize;
        float bound = 1f / MathF.Sqrt(fanIn);
        Weight = WeightParameter("weight", Init.Uniform(new[] { outChannels, inChannels / groups, kernelSize, kernelSize }, bound, rng));
        if (bias) Bias = Parameter("bias", Init.Uniform(new[] { outChannels }, bound, rng));
    }

    /// <summary>The reference's Conv2dSame(in, out, k, stride, bias).</summary>
    public static Conv2d SamePadded(int inChannels, int outChannels, int kernelSize, int stride = 1, bool bias = true,
        int groups = 1, Random? rng = null) =>
        new(inChannels, outChannels, kernelSize, stride, bias, groups, same: true, rng: rng);

    public Tensor Forward(Tensor x) => Same
        ? F.Conv2dSame(x, Weight, Bias, Stride, Groups)
        : F.Conv2d(x, Weight, Bias, Stride, Padding2d.Symmetric(Padding), Groups);
}
