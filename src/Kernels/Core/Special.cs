namespace MaskBit.Kernels;

/// <summary>Special functions shared by CPU kernels (.NET has no erf).</summary>
public static class Special
{
    /// <summary>erf(x) with |error| ≤ 1.2e-7 (Chebyshev-fitted erfc, Numerical Recipes §6.2), evaluated in double.</summary>
    public static double Erf(double x)
    {
        double z = Math.Abs(x);
        double t = 1.0 / (1.0 + 0.5 * z);
        double erfc = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? 1.0 - erfc : erfc - 1.0;
    }

    /// <summary>Exact (erf) GELU: x·Φ(x).</summary>
    public static float Gelu(float x) => (float)(0.5 * x * (1.0 + Erf(x * 0.7071067811865476)));

    /// <summary>d/dx GELU = Φ(x) + x·φ(x).</summary>
    public static float GeluGrad(float x)
    {
        double cdf = 0.5 * (1.0 + Erf(x * 0.7071067811865476));
        double pdf = 0.3989422804014327 * Math.Exp(-0.5 * (double)x * x);
        return (float)(cdf + x * pdf);
    }

    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));
}
