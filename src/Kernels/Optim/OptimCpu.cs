namespace MaskBit.Kernels.Cpu;

// Optimizer updates: one pass over each parameter, chunked over the cores (struct bodies: one call per parameter
// tensor per step, most of them small).
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
            for (int i = 0; i < len; i++)
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
            for (int i = 0; i < len; i++) sh[i] -= oneMinusDecay * (sh[i] - p[i]);
        }
    }
}
