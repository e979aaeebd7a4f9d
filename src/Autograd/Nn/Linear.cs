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
        Weight = Parameter("weight", Init.Uniform(new[] { outFeatures, inFeatures }, bound, rng));
        if (bias) Bias = Parameter("bias", Init.Uniform(new[] { outFeatures }, bound, rng));
    }

    public Tensor Forward(Tensor x) => Tensor.Linear(x, Weight, Bias);
}

/// <summary>Parameter initialisers.</summary>
public static class Init
{
    public static Tensor Uniform(int[] shape, float bound, Random rng)
    {
        var data = new float[ShapeUtil.Numel(shape)];
        for (int i = 0; i < data.Length; i++) data[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        return Tensor.FromArray(data, shape);
    }

    public static Tensor Normal(int[] shape, float std, Random rng)
    {
        var data = new float[ShapeUtil.Numel(shape)];
        for (int i = 0; i < data.Length; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            data[i] = (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return Tensor.FromArray(data, shape);
    }
}
