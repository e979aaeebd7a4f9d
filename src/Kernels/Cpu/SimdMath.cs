using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MaskBit.Kernels.Cpu;

/// <summary>Vector transcendental functions shared by the CPU kernels (softmax, norms, attention). .NET's Vector256.Exp
/// widens to double and is ~8× slower; this float-only version (Cephes expf) is within 2 ulp.</summary>
internal static class SimdMath
{
    /// <summary>e^x for x in [−87.3, 88]; inputs outside are clamped (so −∞ gives ~1e−38, not 0 — harmless
    /// in every sum and product it feeds here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        // 88, not ln(FLT_MAX) = 88.72: round(x·log2 e) must stay ≤ 127 for the exponent trick below.
        x = Vector256.Max(Vector256.Min(x, Vector256.Create(88f)), Vector256.Create(-87.33654f));
        var k = Vector256.Round(x * Vector256.Create(1.44269504088896341f));
        // r = x − k·ln 2 in two steps (Cody–Waite) so r keeps full precision.
        var r = Vector256.FusedMultiplyAdd(k, Vector256.Create(-0.693359375f), x);
        r = Vector256.FusedMultiplyAdd(k, Vector256.Create(2.12194440e-4f), r);
        var p = Vector256.Create(1.9875691500e-4f);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.3981999507e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        p = Vector256.FusedMultiplyAdd(p * r, r, r + Vector256<float>.One);
        var twoPowK = (Vector256.ConvertToInt32(k) + Vector256.Create(127)) << 23;
        return p * twoPowK.AsSingle();
    }

    /// <summary>σ(x) = 1 / (1 + e^−x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> x) => Vector256<float>.One / (Vector256<float>.One + Exp(-x));

    /// <summary>Scalar e^x through the same polynomial, for loop tails (so tails and bodies round alike).</summary>
    public static float Exp(float x) => Exp(Vector256.Create(x)).ToScalar();

    public static float Sigmoid(float x) => 1f / (1f + Exp(-x));
}
