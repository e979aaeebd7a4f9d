using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Optimizer updates on an ILGPU accelerator: one grid-stride pass over each parameter, in the CPU kernel's
// operation order (Optim/OptimCpu.cs) so both devices round alike.
public sealed partial class IlgpuBackend
{
    /// <summary>Kernel copy of <see cref="AdamWScalars"/> (plain fields).</summary>
    public struct AdamWArgs
    {
        public float Decay, Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, StepSize, Bc2Sqrt, Eps;
    }

    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, long, AdamWArgs> AdamWEntry = AdamWKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, long, float> EmaEntry = EmaKernel;

    public void AdamWUpdate(Buf param, Buf grad, Buf expAvg, Buf expAvgSq, long n, in AdamWScalars s)
    {
        if (n == 0) return;
        var args = new AdamWArgs
        {
            Decay = s.Decay, Beta1 = s.Beta1, OneMinusBeta1 = s.OneMinusBeta1, Beta2 = s.Beta2, OneMinusBeta2 = s.OneMinusBeta2,
            StepSize = s.StepSize, Bc2Sqrt = s.Bc2Sqrt, Eps = s.Eps,
        };
        Kernel(AdamWEntry)(
            GridStride(n, Sizes.ElementGroup), F(param, n), F(grad, n), F(expAvg, n), F(expAvgSq, n), n, args);
    }

    public void EmaUpdate(Buf shadow, Buf param, long n, float oneMinusDecay)
    {
        if (n == 0) return;
        Kernel(EmaEntry)(GridStride(n, Sizes.ElementGroup), F(shadow, n), F(param, n), n, oneMinusDecay);
    }

    internal static void AdamWKernel(ArrayView<float> param, ArrayView<float> grad, ArrayView<float> expAvg, ArrayView<float> expAvgSq,
        long n, AdamWArgs k)
    {
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep)
        {
            float g = grad[i];
            float p = param[i] * k.Decay;
            float m = expAvg[i] * k.Beta1 + k.OneMinusBeta1 * g;
            float v = expAvgSq[i] * k.Beta2 + k.OneMinusBeta2 * g * g;
            expAvg[i] = m;
            expAvgSq[i] = v;
            float denom = XMath.Sqrt(v) / k.Bc2Sqrt + k.Eps;
            param[i] = p + -k.StepSize * m / denom;
        }
    }

    internal static void EmaKernel(ArrayView<float> shadow, ArrayView<float> param, long n, float oneMinusDecay)
    {
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep) shadow[i] -= oneMinusDecay * (shadow[i] - param[i]);
    }
}
