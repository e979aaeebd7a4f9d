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
//
// The backward runs in float64 (tables, weights, sums, and the mean distribution p̄ recomputed in double): with the
// entropy loss per_sample − avg the two terms' gradients cancel to a few 1e-4 of their size where the latents are
// large, and the batch term needs differences log p̄_c − log p̄_c' of nearly equal codes, beyond float32.
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
        public readonly float[] A, B, LogA, LogB;
        /// <summary>The same tables in double (the backward's).</summary>
        public readonly double[] PA, PB, LA, LB;
        /// <summary>σ(x_k) and σ(−x_k), x_k = 4·z_k/T: q_k(+1) and q_k(−1).</summary>
        public readonly double[] Plus, Minus;
        /// <summary>The most probable code (bit k set where x_k ≥ 0) and log of its probability.</summary>
        public int Star;
        public double LogPStar;
        private readonly double[] _logPlus, _logMinus;

        public LfqTables(int bits)
        {
            Bits = bits; LoBits = bits / 2; HiBits = bits - LoBits;
            A = new float[1 << HiBits]; LogA = new float[1 << HiBits];
            B = new float[1 << LoBits]; LogB = new float[1 << LoBits];
            PA = new double[1 << HiBits]; LA = new double[1 << HiBits];
            PB = new double[1 << LoBits]; LB = new double[1 << LoBits];
            Plus = new double[bits]; Minus = new double[bits];
            _logPlus = new double[bits]; _logMinus = new double[bits];
        }

        /// <summary>Fills the tables for position (b, s). With <paramref name="logsFromStar"/> the log tables hold
        /// log p(c) − log p(c*) (c* = <see cref="Star"/>): −Σ|x_k| over the bits where c differs from c*, exact
        /// sums of like-signed terms, so differences of per-code gradients carry no cancellation.</summary>
        public void Build(float[] z, int zOffset, int hw, float invTemperature, bool logsFromStar = false)
        {
            Star = 0;
            LogPStar = 0;
            for (int k = 0; k < Bits; k++)
            {
                double x = 4.0 * z[zOffset + k * hw] * invTemperature;
                // σ(±x) and log σ(±x) = −softplus(∓x), without cancellation for large |x|.
                double e = Math.Exp(-Math.Abs(x)), softplus = Math.Log(1.0 + e);
                double big = 1.0 / (1.0 + e), small = e / (1.0 + e), logBig = -softplus, logSmall = -Math.Abs(x) - softplus;
                bool positive = x >= 0;
                (Plus[k], Minus[k]) = positive ? (big, small) : (small, big);
                if (positive) Star |= 1 << k;
                LogPStar += logBig;
                (_logPlus[k], _logMinus[k]) = logsFromStar
                    ? (positive ? (0.0, -Math.Abs(x)) : (-Math.Abs(x), 0.0))
                    : (positive ? (logBig, logSmall) : (logSmall, logBig));
            }
            Product(LoBits, HiBits, PA, LA, A, LogA);
            Product(0, LoBits, PB, LB, B, LogB);
        }

        private void Product(int first, int count, double[] t, double[] l, float[] table, float[] log)
        {
            t[0] = 1.0;
            l[0] = 0.0;
            for (int j = 0; j < count; j++)
            {
                int half = 1 << j, k = first + j;
                for (int c = 0; c < half; c++)
                {
                    t[c + half] = t[c] * Plus[k]; t[c] *= Minus[k];
                    l[c + half] = l[c] + _logPlus[k]; l[c] += _logMinus[k];
                }
            }
            for (int c = 0; c < table.Length; c++) { table[c] = (float)t[c]; log[c] = (float)l[c]; }
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
        double cPerSample = upstream[0] / (double)n, cAvg = upstream[1] / (double)n;
        double eps = EntropyEps, logEps = Math.Log(eps);
        int workers = Math.Max(1, Math.Min(CpuParallel.Workers, n));
        using var h = MemoryOwner<double>.Allocate(codes);
        MeanDistribution(za, zo, batch, bits, hw, invTemperature, workers, h.Span);
        var hInit = h.Span;
        for (int c = 0; c < codes; c++) hInit[c] = cAvg * -(hInit[c] >= eps ? Math.Log(hInit[c]) + 1.0 : logEps);

        CpuParallel.For(workers, (w0, w1) =>
        {
            for (int w = w0; w < w1; w++)
            {
                var t = new LfqTables(bits);
                int lo = 1 << t.LoBits;
                using var rowSumsOwner = SpanOwner<double>.Allocate(lo);          // Σ over c_hi of p·G', per c_lo
                using var colSumsOwner = SpanOwner<double>.Allocate(t.PA.Length); // Σ over c_lo of p·G', per c_hi
                Span<double> rowSums = rowSumsOwner.Span, colSums = colSumsOwner.Span;
                ReadOnlySpan<double> hAll = h.Span;
                for (int pos = (int)((long)n * w / workers); pos < (int)((long)n * (w + 1) / workers); pos++)
                {
                    int b = pos / hw, s = pos % hw;
                    int zBase = b * bits * hw + s;
                    t.Build(za, zo + zBase, hw, invTemperature, logsFromStar: true);
                    // G' = G − G(c*): the softmax gradient Σ_c p_c·(s_ck − E[s_k])·G_c is unchanged by a constant
                    // shift, and measured from the most probable code the per-code weights stay small where p is large.
                    var shift = new GradientShift(
                        Above: -cPerSample,
                        Below: t.LogPStar >= logEps ? cPerSample * (t.LogPStar + 1.0 - logEps) : 0.0,
                        HStar: hAll[t.Star]);
                    rowSums.Clear();
                    for (int hi = 0; hi < t.PA.Length; hi++)
                        colSums[hi] = GradientRow(t.PA[hi], t.LA[hi], t.PB, t.LB, hAll.Slice(hi * lo, lo), rowSums, shift);
                    // dL/dz_k = (2/T)·Σ_c w_c·(s_ck − E[s_k]) with s_ck − E[s_k] = 2σ(−x_k) where bit k is set and
                    // −2σ(x_k) where it is clear: dz_k = (4/T)·(σ(−x_k)·W⁺_k − σ(x_k)·W⁻_k), W± the sums of w over
                    // the codes with bit k set / clear (no difference of nearly equal totals).
                    for (int k = 0; k < bits; k++)
                    {
                        double set = 0, clear = 0;
                        if (k < t.LoBits)
                            for (int c = 0; c < lo; c++) { if ((c >> k & 1) != 0) set += rowSums[c]; else clear += rowSums[c]; }
                        else
                            for (int c = 0; c < t.PA.Length; c++) { if ((c >> (k - t.LoBits) & 1) != 0) set += colSums[c]; else clear += colSums[c]; }
                        dza[dzo + zBase + k * hw] = (float)(4.0 * invTemperature * (t.Minus[k] * set - t.Plus[k] * clear));
                    }
                }
            }
        }, costPerItem: 1e9);
    }

    /// <summary>p̄ in double: the mean over positions of each code's probability (per-worker partial sums).</summary>
    private static void MeanDistribution(float[] za, int zo, int batch, int bits, int hw, float invTemperature, int workers, Span<double> avg)
    {
        int n = batch * hw, codes = 1 << bits;
        using var partial = MemoryOwner<double>.Allocate(workers * codes, AllocationMode.Clear);
        CpuParallel.For(workers, (w0, w1) =>
        {
            for (int w = w0; w < w1; w++)
            {
                var t = new LfqTables(bits);
                var probs = partial.Span.Slice(w * codes, codes);
                int lo = 1 << t.LoBits;
                for (int pos = (int)((long)n * w / workers); pos < (int)((long)n * (w + 1) / workers); pos++)
                {
                    int b = pos / hw, s = pos % hw;
                    t.Build(za, zo + b * bits * hw + s, hw, invTemperature);
                    for (int hi = 0; hi < t.PA.Length; hi++)
                        TensorPrimitives.MultiplyAdd(t.PB, t.PA[hi], probs.Slice(hi * lo, lo), probs.Slice(hi * lo, lo));
                }
            }
        }, costPerItem: 1e9);
        avg.Clear();
        for (int w = 0; w < workers; w++) TensorPrimitives.Add(avg, partial.Span.Slice(w * codes, codes), avg);
        TensorPrimitives.Multiply(avg, 1.0 / n, avg);
    }

    /// <summary>The per-code gradient weight G'_c = G_c − G_c* of one position, as the inner loop needs it: at or
    /// above the clamp <c>Above·(log p_c − log p_c*)</c>, below it <c>Below</c>; plus h_c − <c>HStar</c>.</summary>
    private readonly record struct GradientShift(double Above, double Below, double HStar);

    /// <summary>For one high-half code: w = p·G' over all low-half codes (see <see cref="GradientShift"/>); adds w
    /// into rowSums and returns Σ w.</summary>
    private static double GradientRow(double a, double logA, double[] b, double[] logB, ReadOnlySpan<double> h, Span<double> rowSums,
        GradientShift shift)
    {
        int i = 0, len = b.Length;
        var acc = Vector256<double>.Zero;
        if (Vector256.IsHardwareAccelerated && len >= 4)
        {
            var va = Vector256.Create(a); var vla = Vector256.Create(logA);
            var veps = Vector256.Create((double)EntropyEps); var vAbove = Vector256.Create(shift.Above);
            var vBelow = Vector256.Create(shift.Below); var vhStar = Vector256.Create(shift.HStar);
            for (; i <= len - 4; i += 4)
            {
                var p = va * Vector256.Create(b, i);
                var g = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(p, veps), vAbove * (vla + Vector256.Create(logB, i)), vBelow);
                var wv = p * (g + (Vector256.Create(h[i..]) - vhStar));
                acc += wv;
                (Vector256.Create<double>(rowSums[i..]) + wv).CopyTo(rowSums[i..]);
            }
        }
        double sum = Vector256.Sum(acc);
        for (; i < len; i++)
        {
            double p = a * b[i];
            double g = p >= EntropyEps ? shift.Above * (logA + logB[i]) : shift.Below;
            double wv = p * (g + (h[i] - shift.HStar));
            sum += wv;
            rowSums[i] += wv;
        }
        return sum;
    }
}
