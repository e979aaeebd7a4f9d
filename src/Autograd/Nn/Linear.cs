namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.Linear: weight (out, in), optional bias; initialised like torch (U(±1/√in)).</summary>
public sealed class Linear : Module
{
    public Tensor Weight { get; }
    public Tensor? Bias { get; }

    public Linear(int inFeatures, int outFeatures, bool bias = true, Random? rng = null)
    {
        rng ??= Random.Shared;
        float bound = 1f / MathF.Sqrt(inFeatures);
        Weight = WeightParameter("weight", Init.Uniform(new[] { outFeatures, inFeatures }, bound, rng));
        if (bias) Bias = Parameter("bias", Init.Uniform(new[] { outFeatures }, bound, rng));
    }

    public Tensor Forward(Tensor x) => Tensor.Linear(x, Weight, Bias);
}
