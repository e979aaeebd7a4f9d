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

    /// <summary>erf(x) by Eigen/XLA's rational approximation, as the ILGPU kernels compute it: x clamped to [−4, 4],
    /// an odd degree-13 polynomial over an even degree-8 one in x² (|error| ≤ 4.3e-7 in float arithmetic). One
    /// division and no exponential (GELU is one of the generator step's larger element-wise costs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Erf(Vector256<float> x)
    {
        x = Vector256.MaxNative(Vector256.MinNative(x, Vector256.Create(4f)), Vector256.Create(-4f));   // NaN: GELU's x factor keeps it
        var x2 = x * x;
        var p = Vector256.FusedMultiplyAdd(x2, Vector256.Create(-2.72614225801306e-10f), Vector256.Create(2.77068142495902e-08f));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(-2.10102402082508e-06f));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(-5.69250639462346e-05f));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(-7.34990630326855e-04f));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(-2.95459980854025e-03f));
        p = Vector256.FusedMultiplyAdd(x2, p, Vector256.Create(-1.60960333262415e-02f));
        var q = Vector256.FusedMultiplyAdd(x2, Vector256.Create(-1.45660718464996e-05f), Vector256.Create(-2.13374055278905e-04f));
        q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(-1.68282697438203e-03f));
        q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(-7.37332916720468e-03f));
        q = Vector256.FusedMultiplyAdd(x2, q, Vector256.Create(-1.42647390514189e-02f));
        return p * x / q;
    }

    /// <summary>Exact (erf) GELU x·Φ(x) over a span; the scalar tail runs through the same vector code.</summary>
    public static void Gelu(ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        for (; i + 8 <= x.Length; i += 8)
            GeluLanes(Vector256.Create(x.Slice(i, 8))).CopyTo(y.Slice(i, 8));
        for (; i < x.Length; i++) y[i] = GeluLanes(Vector256.Create(x[i])).ToScalar();
    }

    /// <summary>dx = dy·GELU'(x) (or dx += with <paramref name="accumulate"/>), GELU'(x) = Φ(x) + x·φ(x).</summary>
    public static void GeluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, bool accumulate)
    {
        int i = 0;
        for (; i + 8 <= x.Length; i += 8)
        {
            var d = Vector256.Create(dy.Slice(i, 8)) * GeluGradLanes(Vector256.Create(x.Slice(i, 8)));
            (accumulate ? Vector256.Create(dx.Slice(i, 8)) + d : d).CopyTo(dx.Slice(i, 8));
        }
        for (; i < x.Length; i++)
        {
            float d = dy[i] * GeluGradLanes(Vector256.Create(x[i])).ToScalar();
            dx[i] = accumulate ? dx[i] + d : d;
        }
    }

    /// <summary>Leaky ReLU: y = x if x &gt; 0, else slope·x (NaN stays NaN).</summary>
    public static void LeakyRelu(ReadOnlySpan<float> x, Span<float> y, float slope)
    {
        var s = Vector256.Create(slope);
        int i = 0;
        for (; i + 8 <= x.Length; i += 8)
        {
            var v = Vector256.Create(x.Slice(i, 8));
            Vector256.ConditionalSelect(Vector256.GreaterThan(v, Vector256<float>.Zero), v, v * s).CopyTo(y.Slice(i, 8));
        }
        for (; i < x.Length; i++) y[i] = x[i] > 0 ? x[i] : x[i] * slope;
    }

    /// <summary>dx = dy·(1 if x &gt; 0, else slope) (or dx += with <paramref name="accumulate"/>): the gradient of leaky
    /// ReLU, and of ReLU with slope 0 (PyTorch's value at the kink either way).</summary>
    public static void LeakyReluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, float slope, bool accumulate)
    {
        var s = Vector256.Create(slope);
        int i = 0;
        for (; i + 8 <= x.Length; i += 8)
        {
            var g = Vector256.Create(dy.Slice(i, 8));
            var d = Vector256.ConditionalSelect(Vector256.GreaterThan(Vector256.Create(x.Slice(i, 8)), Vector256<float>.Zero), g, g * s);
            (accumulate ? Vector256.Create(dx.Slice(i, 8)) + d : d).CopyTo(dx.Slice(i, 8));
        }
        for (; i < x.Length; i++)
        {
            float d = x[i] > 0 ? dy[i] : dy[i] * slope;
            dx[i] = accumulate ? dx[i] + d : d;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GeluLanes(Vector256<float> x)
    {
        var half = Vector256.Create(0.5f) * x;
        return Vector256.FusedMultiplyAdd(half, Erf(x * Vector256.Create(0.70710678118654752f)), half);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> GeluGradLanes(Vector256<float> x)
    {
        var cdf = Vector256.Create(0.5f) * (Vector256<float>.One + Erf(x * Vector256.Create(0.70710678118654752f)));
        var pdf = Vector256.Create(0.39894228040143268f) * Exp(Vector256.Create(-0.5f) * x * x);
        return Vector256.FusedMultiplyAdd(x, pdf, cdf);
    }
}
