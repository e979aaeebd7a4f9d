using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using CommunityToolkit.HighPerformance.Buffers;

namespace MaskBit.Kernels.Cpu;

// Lookup-free quantization on the CPU.
//
// The entropy terms never build the reference's N×2^K probability matrix. The logits 2·z·c/T of code c (c_k = ±1)
// are a sum of per-bit terms, so each position's softmax factorises over bits: p(c) = Π_k q_k(c_k) with
// q_k(+1) = σ(4·z_k/T). Splitting the K bits into a low half (index bits 0…Klo−1) and a high half gives
// p(c) = A[c_hi]·B[c_lo] from two 2^(K/2) tables per position, and log p = log A + log B. The clamp in
// log(max(p, 1e-5)) does not factorise, so every code is still visited (O(N·2^K) multiply-adds, no logs in the
// inner loop), but memory stays O(2^K + 2^(K/2)) per thread.
public sealed partial class CpuBackend
{
    /// <summary>The reference's clamp bound, float32(1e-5).</summary>
    private const float EntropyEps = 1e-5f;

    public void LfqQuantize(int batch, int bits, int hw, Buf z, Buf zq, Buf indices, Buf commitmentSum)
    {
        float[] za = Arr(z), qa = Arr(zq); int[] ia = IntArr(indices);
        int zo = Off(z), qo = Off(zq), io = Off(indices);
        var partial = new double[batch];
        CpuParallel.For(batch, (b0, b1) =>
        {
            for (int b = b0; b < b1; b++)
            {
                double sum = 0;
                var idx = ia.AsSpan(io + b * hw, hw);
                idx.Clear();
                for (int k = 0; k < bits; k++)
                {
                    int baseIdx = (b * bits + k) * hw;
                    for (int s = 0; s < hw; s++)
                    {
                        float v = za[zo + baseIdx + s];
                        float q = v > 0f ? 1f : -1f;
                        qa[qo + baseIdx + s] = q;
                        if (q > 0) idx[s] |= 1 << k;
                        float d = q - v;
                        sum += d * d;
                    }
                }
                partial[b] = sum;
            }
        }, costPerItem: bits * hw * 4);
        F(commitmentSum, 1)[0] = (float)partial.Sum();
    }

    /// <summary>Per-thread tables of one position: per-bit probabilities, the two half-code tables and their logs.</summary>
    private sealed class LfqTables
    {
        public readonly int Bits, LoBits, HiBits;
        public readonly float[] A, B, LogA, LogB, Q;
        public LfqTables(int bits)
        {
            Bits = bits; LoBits = bits / 2; HiBits = bits - LoBits;
            A = new float[1 << HiBits]; LogA = new float[1 << HiBits];
            B = new float[1 << LoBits]; LogB = new float[1 << LoBits];
            Q = new float[bits];
        }

        /// <summary>Fills the tables for position (b, s); Q[k] = q_k(+1).</summary>
        public void Build(float[] z, int zOffset, int hw, float invTemperature)
        {
            Span<double> plus = stackalloc double[Bits];
            Span<double> minus = stackalloc double[Bits];
            for (int k = 0; k < Bits; k++)
            {
                double x = 4.0 * z[zOffset + k * hw] * invTemperature;
                // σ(±x) computed without cancellation for large |x|.
                plus[k] = 1.0 / (1.0 + Math.Exp(-x));
                minus[k] = 1.0 / (1.0 + Math.Exp(x));
                Q[k] = (float)plus[k];
            }
            Product(plus[LoBits..], minus[LoBits..], A, LogA);
            Product(plus[..LoBits], minus[..LoBits], B, LogB);
        }

        private static void Product(ReadOnlySpan<double> plus, ReadOnlySpan<double> minus, float[] table, float[] log)
        {
            Span<double> t = stackalloc double[table.Length];
            t[0] = 1.0;
            for (int j = 0; j < plus.Length; j++)
            {
                int half = 1 << j;
                for (int c = 0; c < half; c++) { t[c + half] = t[c] * plus[j]; t[c] *= minus[j]; }
            }
            for (int c = 0; c < table.Length; c++) { table[c] = (float)t[c]; log[c] = (float)Math.Log(t[c]); }
        }
    }

    public void LfqEntropyForward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf result)
    {
        int n = batch * hw, codes = 1 << bits;
        float[] za = Arr(z); int zo = Off(z);
        float logEps = MathF.Log(EntropyEps);
        int workers = Math.Max(1, Math.Min(CpuParallel.Workers, n));
        // Each worker accumulates its own distribution (codes floats), summed into avgProbs afterwards.
        using var partialProbs = MemoryOwner<float>.Allocate(workers * codes, AllocationMode.Clear);
        var partialEntropy = new double[workers];
        CpuParallel.For(workers, (w0, w1) =>
        {
            for (int w = w0; w < w1; w++)
            {
                var t = new LfqTables(bits);
                var probs = partialProbs.Span.Slice(w * codes, codes);
                double entropy = 0;
                int lo = 1 << t.LoBits;
                for (int pos = (int)((long)n * w / workers); pos < (int)((long)n * (w + 1) / workers); pos++)
                {
                    int b = pos / hw, s = pos % hw;
                    t.Build(za, zo + b * bits * hw + s, hw, invTemperature);
                    for (int hi = 0; hi < t.A.Length; hi++)
                        entropy += AccumulateRow(t.A[hi], t.LogA[hi], t.B, t.LogB, probs.Slice(hi * lo, lo), logEps);
                }
                partialEntropy[w] = entropy;
            }
        }, costPerItem: 1e9);

        var avg = F(avgProbs, codes);
        avg.Clear();
        float invN = 1f / n;
        for (int w = 0; w < workers; w++) TensorPrimitives.Add(avg, partialProbs.Span.Slice(w * codes, codes), avg);
        TensorPrimitives.Multiply(avg, invN, avg);
        double avgEntropy = 0;
        foreach (var p in avg) avgEntropy -= p >= EntropyEps ? p * (double)MathF.Log(p) : p * (double)logEps;
        var r = F(result, 2);
        r[0] = (float)(-partialEntropy.Sum() / n);
        r[1] = (float)avgEntropy;
    }

    /// <summary>For one high-half code: adds p = a·B[c_lo] into probs and returns Σ p·log(max(p, eps)).</summary>
    private static double AccumulateRow(float a, float logA, float[] b, float[] logB, Span<float> probs, float logEps)
    {
        int i = 0, len = b.Length;
        var acc = Vector256<float>.Zero;
        if (Vector256.IsHardwareAccelerated && len >= 8)
        {
            var va = Vector256.Create(a); var vla = Vector256.Create(logA);
            var veps = Vector256.Create(EntropyEps); var vlogEps = Vector256.Create(logEps);
            for (; i <= len - 8; i += 8)
            {
                var p = va * Vector256.Create(b, i);
                var logp = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(p, veps), vla + Vector256.Create(logB, i), vlogEps);
                acc += p * logp;
                (Vector256.Create<float>(probs[i..]) + p).CopyTo(probs[i..]);
            }
        }
        double sum = Vector256.Sum(acc);
        for (; i < len; i++)
        {
            float p = a * b[i];
            sum += p * (p >= EntropyEps ? logA + logB[i] : logEps);
            probs[i] += p;
        }
        return sum;
    }

    public void LfqEntropyBackward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf dResult, Buf dz)
    {
        int n = batch * hw, codes = 1 << bits;
        float[] za = Arr(z), dza = Arr(dz); int zo = Off(z), dzo = Off(dz);
        var upstream = F(dResult, 2);
        // dL/dp_nc = cPerSample·g_nc + cAvg·h_c with g = −d[p·clog p]/dp per position and h the same for p̄.
        float cPerSample = upstream[0] / n, cAvg = upstream[1] / n;
        float logEps = MathF.Log(EntropyEps);
        using var h = MemoryOwner<float>.Allocate(codes);
        var avg = F(avgProbs, codes);
        var hInit = h.Span;
        for (int c = 0; c < codes; c++) hInit[c] = cAvg * -(avg[c] >= EntropyEps ? MathF.Log(avg[c]) + 1f : logEps);

        int workers = Math.Max(1, Math.Min(CpuParallel.Workers, n));
        CpuParallel.For(workers, (w0, w1) =>
        {
            for (int w = w0; w < w1; w++)
            {
                var t = new LfqTables(bits);
                int lo = 1 << t.LoBits;
                using var rowSumsOwner = SpanOwner<float>.Allocate(lo);          // Σ over c_hi of p·G, per c_lo
                using var colSumsOwner = SpanOwner<double>.Allocate(t.A.Length); // Σ over c_lo of p·G, per c_hi
                Span<float> rowSums = rowSumsOwner.Span; Span<double> colSums = colSumsOwner.Span;
                ReadOnlySpan<float> hAll = h.Span;
                for (int pos = (int)((long)n * w / workers); pos < (int)((long)n * (w + 1) / workers); pos++)
                {
                    int b = pos / hw, s = pos % hw;
                    int zBase = b * bits * hw + s;
                    t.Build(za, zo + zBase, hw, invTemperature);
                    rowSums.Clear();
                    double total = 0;
                    for (int hi = 0; hi < t.A.Length; hi++)
                    {
                        colSums[hi] = GradientRow(t.A[hi], t.LogA[hi], t.B, t.LogB, hAll.Slice(hi * lo, lo), rowSums, cPerSample, logEps);
                        total += colSums[hi];
                    }
                    // dL/dz_k = (2/T)·(Σ_c s_ck·w_c − total·E[s_k]), E[s_k] = 2q_k − 1.
                    for (int k = 0; k < bits; k++)
                    {
                        double signed = 0;
                        if (k < t.LoBits)
                            for (int c = 0; c < lo; c++) signed += (c >> k & 1) != 0 ? rowSums[c] : -rowSums[c];
                        else
                            for (int c = 0; c < t.A.Length; c++) signed += (c >> (k - t.LoBits) & 1) != 0 ? colSums[c] : -colSums[c];
                        dza[dzo + zBase + k * hw] = (float)(2.0 * invTemperature * (signed - total * (2.0 * t.Q[k] - 1.0)));
                    }
                }
            }
        }, costPerItem: 1e9);
    }

    /// <summary>For one high-half code: w = p·(cPerSample·g + h) over all low-half codes; adds w into rowSums and
    /// returns Σ w.</summary>
    private static double GradientRow(float a, float logA, float[] b, float[] logB, ReadOnlySpan<float> h, Span<float> rowSums,
        float cPerSample, float logEps)
    {
        int i = 0, len = b.Length;
        var acc = Vector256<float>.Zero;
        float gSmall = -cPerSample * logEps;   // g below the clamp: −log(eps)
        if (Vector256.IsHardwareAccelerated && len >= 8)
        {
            var va = Vector256.Create(a); var vla1 = Vector256.Create(logA + 1f);
            var veps = Vector256.Create(EntropyEps); var vc = Vector256.Create(-cPerSample); var vsmall = Vector256.Create(gSmall);
            for (; i <= len - 8; i += 8)
            {
                var p = va * Vector256.Create(b, i);
                var g = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(p, veps), vc * (vla1 + Vector256.Create(logB, i)), vsmall);
                var wv = p * (g + Vector256.Create(h[i..]));
                acc += wv;
                (Vector256.Create<float>(rowSums[i..]) + wv).CopyTo(rowSums[i..]);
            }
        }
        double sum = Vector256.Sum(acc);
        for (; i < len; i++)
        {
            float p = a * b[i];
            float g = p >= EntropyEps ? -cPerSample * (logA + 1f + logB[i]) : gSmall;
            float wv = p * (g + h[i]);
            sum += wv;
            rowSums[i] += wv;
        }
        return sum;
    }
}
