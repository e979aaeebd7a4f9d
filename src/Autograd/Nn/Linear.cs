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
    [ThreadStatic] private static bool shapesOnly;

    /// <summary>While the returned scope is open, initialisers on this thread leave parameters uninitialised
    /// instead of drawing random values — for building a model only to count its parameters or to load a
    /// checkpoint over them: a 300M-parameter model then costs no random draws, and its untouched pages no memory.</summary>
    public static bool IsShapesOnly => shapesOnly;

    public static IDisposable ShapesOnly()
    {
        bool outer = shapesOnly;
        shapesOnly = true;
        return new Restore(() => shapesOnly = outer);
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    public static Tensor Uniform(int[] shape, float bound, Random rng)
    {
        if (shapesOnly) return Tensor.Empty(shape);
        var data = new float[ShapeUtil.Numel(shape)];
        for (int i = 0; i < data.Length; i++) data[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        return Tensor.FromArray(data, shape);
    }

    public static Tensor Normal(int[] shape, float std, Random rng)
    {
        if (shapesOnly) return Tensor.Empty(shape);
        var data = new float[ShapeUtil.Numel(shape)];
        for (int i = 0; i < data.Length; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            data[i] = (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return Tensor.FromArray(data, shape);
    }

    /// <summary>torch.nn.init.trunc_normal_(std, a, b): normal draws outside [a, b] are redrawn.</summary>
    public static Tensor TruncNormal(int[] shape, float std, float a, float b, Random rng)
    {
        if (shapesOnly) return Tensor.Empty(shape);
        var data = new float[ShapeUtil.Numel(shape)];
        for (int i = 0; i < data.Length; i++)
        {
            double x;
            do { x = std * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()); } while (x < a || x > b);
            data[i] = (float)x;
        }
        return Tensor.FromArray(data, shape);
    }
}
