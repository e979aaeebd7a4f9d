using System.Runtime.Intrinsics;

namespace MaskBit.Kernels.Cpu;

// Optimizer updates: one pass over each parameter, chunked over the cores (struct bodies: one call per parameter
// tensor per step, most of them small). The vector bodies do the scalar formula's operations in the same order,
// without fused multiply-adds, so every lane rounds as the scalar tail does (and as before they were vectorised).
public sealed partial class CpuBackend
{
    public void AdamWUpdate(Buf param, Buf grad, Buf expAvg, Buf expAvgSq, long n, in AdamWScalars s) =>
        Chunked(n, new AdamWBody(param, grad, expAvg, expAvgSq, s));

    private readonly struct AdamWBody(Buf param, Buf grad, Buf expAvg, Buf expAvgSq, AdamWScalars k) : IRangeBody
    {
        public void Run(int start, int end)
        {
            int len = end - start;
            var p = F(param.At(start), len); var g = F(grad.At(start), len);
            var m = F(expAvg.At(start), len); var v = F(expAvgSq.At(start), len);
            var decay = Vector256.Create(k.Decay);
            var beta1 = Vector256.Create(k.Beta1); var oneMinusBeta1 = Vector256.Create(k.OneMinusBeta1);
            var beta2 = Vector256.Create(k.Beta2); var oneMinusBeta2 = Vector256.Create(k.OneMinusBeta2);
            var bc2Sqrt = Vector256.Create(k.Bc2Sqrt); var eps = Vector256.Create(k.Eps); var minusStep = Vector256.Create(-k.StepSize);
            int i = 0;
            for (; i + 8 <= len; i += 8)
            {
                var gi = Vector256.Create(g.Slice(i, 8));
                var mi = Vector256.Create(m.Slice(i, 8)) * beta1 + oneMinusBeta1 * gi;
                var vi = Vector256.Create(v.Slice(i, 8)) * beta2 + oneMinusBeta2 * gi * gi;
                var denom = Vector256.Sqrt(vi) / bc2Sqrt + eps;
                var pi = Vector256.Create(p.Slice(i, 8)) * decay;
                (pi + minusStep * mi / denom).CopyTo(p.Slice(i, 8));
                mi.CopyTo(m.Slice(i, 8));
                vi.CopyTo(v.Slice(i, 8));
            }
            for (; i < len; i++)
            {
                float gi = g[i];
                p[i] *= k.Decay;
                m[i] = m[i] * k.Beta1 + k.OneMinusBeta1 * gi;
                v[i] = v[i] * k.Beta2 + k.OneMinusBeta2 * gi * gi;
                float denom = MathF.Sqrt(v[i]) / k.Bc2Sqrt + k.Eps;
                p[i] += -k.StepSize * m[i] / denom;
            }
        }
    }

    public void EmaUpdate(Buf shadow, Buf param, long n, float oneMinusDecay) =>
        Chunked(n, new EmaBody(shadow, param, oneMinusDecay));

    private readonly struct EmaBody(Buf shadow, Buf param, float oneMinusDecay) : IRangeBody
    {
        public void Run(int start, int end)
        {
            int len = end - start;
            var sh = F(shadow.At(start), len); var p = F(param.At(start), len);
            var rate = Vector256.Create(oneMinusDecay);
            int i = 0;
            for (; i + 8 <= len; i += 8)
            {
                var s = Vector256.Create(sh.Slice(i, 8));
                (s - rate * (s - Vector256.Create(p.Slice(i, 8)))).CopyTo(sh.Slice(i, 8));
            }
            for (; i < len; i++) sh[i] -= oneMinusDecay * (sh[i] - p[i]);
        }
    }
}
