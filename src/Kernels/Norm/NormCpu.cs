using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using CommunityToolkit.HighPerformance.Buffers;

namespace MaskBit.Kernels.Cpu;

// GroupNorm (optionally fused with SiLU) and LayerNorm, forward and backward.
// Statistics: every L1-sized block gets a corrected two-pass mean and M2, and the blocks are merged in double
// (Chan et al.), so the statistics read x from memory once and eps-sized variances of offset data stay exact.
// Values are normalised as (x − mean)·scale, not x·scale + shift, which would cancel when |mean| ≫ std; the
// part of the double mean lost in rounding it to float goes into the shift.
// GroupNorm works on one (n, group) at a time — a contiguous run of C/G·HW elements — so its second pass
// finds the group still in cache. Inner loops are jitted fully optimised from the first call
// (AggressiveOptimization): tier-0 code of Vector256 loops is ~10× slower.
public sealed partial class CpuBackend
{
    private const int MomentBlock = 2048;

    public void GroupNormForward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd)
    {
        int groups = d.Groups, hw = d.HW, perGroup = d.C / d.Groups, groupLen = perGroup * d.HW;
        bool silu = d.FuseSilu; double eps = d.Eps;
        float[] xa = Arr(x), ya = Arr(y), ga = Arr(gamma), ba = Arr(beta), ma = Arr(mean), ra = Arr(rstd);
        int xo = Off(x), yo = Off(y), go = Off(gamma), bo = Off(beta), mo = Off(mean), ro = Off(rstd);
        CpuParallel.For(d.N * groups, (i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
            {
                int start = i * groupLen, firstChannel = i % groups * perGroup;
                var (mu, variance) = Moments(xa.AsSpan(xo + start, groupLen));
                float m = (float)mu, rs = (float)(1.0 / Math.Sqrt(variance + eps));
                ma[mo + i] = m; ra[ro + i] = rs;
                for (int c = 0; c < perGroup; c++)
                {
                    int ch = firstChannel + c, at = start + c * hw;
                    float scale = rs * ga[go + ch], shift = (float)(ba[bo + ch] - (mu - m) * scale);
                    NormalizeRow(xa.AsSpan(xo + at, hw), m, scale, shift, silu, ya.AsSpan(yo + at, hw));
                }
            }
        }, costPerItem: groupLen * (silu ? 12.0 : 4.0));
    }

    public void GroupNormBackward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf mean, Buf rstd, Buf dy,
        Buf dx, Buf dgamma, Buf dbeta)
    {
        int n = d.N, channels = d.C, groups = d.Groups, hw = d.HW, perGroup = d.C / d.Groups, groupLen = perGroup * d.HW;
        bool silu = d.FuseSilu;
        float[] xa = Arr(x), ga = Arr(gamma), ba = Arr(beta), ma = Arr(mean), ra = Arr(rstd), gya = Arr(dy), dxa = Arr(dx);
        int xo = Off(x), go = Off(gamma), bo = Off(beta), mo = Off(mean), ro = Off(rstd), gyo = Off(dy), dxo = Off(dx);
        // Per-(n, channel) Σ dv and Σ dv·x̂, where dv is the gradient at the GroupNorm output (before SiLU):
        // they give dβ, dγ (summed over n) and the group terms of dx.
        using var sumsOwner = MemoryOwner<double>.Allocate(2 * n * channels);
        CpuParallel.For(n * groups, (i0, i1) =>
        {
            var sums = sumsOwner.Span;
            for (int i = i0; i < i1; i++)
            {
                int start = i * groupLen, firstChannel = i % groups * perGroup, sumAt = i * perGroup * 2;
                float m = ma[mo + i], rs = ra[ro + i];
                double groupDv = 0, groupDvXhat = 0;
                for (int c = 0; c < perGroup; c++)
                {
                    int ch = firstChannel + c, at = start + c * hw;
                    // With SiLU, dv = dy·silu'(v) is parked in dx for the second pass (no second exp).
                    var (sDv, sDvXhat) = GroupNormChannelSums(xa.AsSpan(xo + at, hw), gya.AsSpan(gyo + at, hw),
                        silu ? dxa.AsSpan(dxo + at, hw) : Span<float>.Empty, m, rs, ga[go + ch], ba[bo + ch]);
                    sums[sumAt + 2 * c] = sDv; sums[sumAt + 2 * c + 1] = sDvXhat;
                    groupDv += ga[go + ch] * sDv; groupDvXhat += ga[go + ch] * sDvXhat;
                }
                // dx = rstd·(γ·dv − mean(γ·dv) − x̂·mean(γ·dv·x̂))
                float k0 = (float)(-rs * groupDv / groupLen), kx = (float)(-(double)rs * rs * groupDvXhat / groupLen);
                for (int c = 0; c < perGroup; c++)
                {
                    int at = start + c * hw;
                    var dv = silu ? dxa.AsSpan(dxo + at, hw) : gya.AsSpan(gyo + at, hw);
                    InputGradRow(xa.AsSpan(xo + at, hw), dv, m, rs * ga[go + firstChannel + c], kx, k0, dxa.AsSpan(dxo + at, hw));
                }
            }
        }, costPerItem: groupLen * (silu ? 16.0 : 8.0));

        // (n, group, c) order above is (n, channel) order: sums[2·(n·C + ch)] = Σ dv, next = Σ dv·x̂.
        var dg = F(dgamma, channels); var db = F(dbeta, channels); var allSums = sumsOwner.Span;
        for (int ch = 0; ch < channels; ch++)
        {
            double sDv = 0, sDvXhat = 0;
            for (int b = 0; b < n; b++) { sDv += allSums[2 * (b * channels + ch)]; sDvXhat += allSums[2 * (b * channels + ch) + 1]; }
            db[ch] = (float)sDv; dg[ch] = (float)sDvXhat;
        }
    }

    public void LayerNormForward(int rows, int cols, float eps, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd)
    {
        float[] xa = Arr(x), ya = Arr(y), ma = Arr(mean), ra = Arr(rstd), ga = Arr(gamma), ba = Arr(beta);
        int xo = Off(x), yo = Off(y), mo = Off(mean), ro = Off(rstd), go = Off(gamma), bo = Off(beta);
        CpuParallel.For(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var xr = xa.AsSpan(xo + r * cols, cols); var yr = ya.AsSpan(yo + r * cols, cols);
                var (mu, variance) = Moments(xr);
                float m = (float)mu, rs = (float)(1.0 / Math.Sqrt(variance + eps));
                ma[mo + r] = m; ra[ro + r] = rs;
                NormalizeRow(xr, m, rs, (float)(-(mu - m) * rs), silu: false, yr);
                TensorPrimitives.MultiplyAdd(yr, ga.AsSpan(go, cols), ba.AsSpan(bo, cols), yr);
            }
        }, costPerItem: cols * 6.0);
    }

    public void LayerNormBackward(int rows, int cols, Buf x, Buf gamma, Buf mean, Buf rstd, Buf dy,
        Buf dx, Buf dgamma, Buf dbeta)
    {
        float[] xa = Arr(x), ga = Arr(gamma), ma = Arr(mean), ra = Arr(rstd), gya = Arr(dy), dxa = Arr(dx);
        int xo = Off(x), go = Off(gamma), mo = Off(mean), ro = Off(rstd), gyo = Off(dy), dxo = Off(dx);
        // Rows are split into one chunk per worker; each chunk sums its own dγ, dβ partials (no races).
        int chunks = Math.Max(1, Math.Min(CpuParallel.Workers, rows));
        using var partialsOwner = MemoryOwner<float>.Allocate(chunks * 2 * cols, AllocationMode.Clear);
        CpuParallel.For(chunks, (k0, k1) =>
        {
            var partials = partialsOwner.Span;
            for (int k = k0; k < k1; k++)
            {
                var dgPart = partials.Slice(k * 2 * cols, cols); var dbPart = partials.Slice(k * 2 * cols + cols, cols);
                for (int r = (int)((long)rows * k / chunks), end = (int)((long)rows * (k + 1) / chunks); r < end; r++)
                {
                    var xr = xa.AsSpan(xo + r * cols, cols); var gr = gya.AsSpan(gyo + r * cols, cols); var dr = dxa.AsSpan(dxo + r * cols, cols);
                    var gammaRow = ga.AsSpan(go, cols);
                    float m = ma[mo + r], rs = ra[ro + r];
                    var (sG, sGXhat) = LayerNormRowSums(xr, gr, gammaRow, m, rs, dgPart, dbPart);
                    // dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = γ·dy, staged in dx
                    TensorPrimitives.Multiply(gr, gammaRow, dr);
                    InputGradRow(xr, dr, m, rs, (float)(-(double)rs * rs * sGXhat / cols), (float)(-rs * sG / cols), dr);
                }
            }
        }, costPerItem: (double)rows / chunks * cols * 10.0);

        var dg = F(dgamma, cols); var db = F(dbeta, cols); var allPartials = partialsOwner.Span;
        allPartials.Slice(0, cols).CopyTo(dg); allPartials.Slice(cols, cols).CopyTo(db);
        for (int k = 1; k < chunks; k++)
        {
            TensorPrimitives.Add(dg, allPartials.Slice(k * 2 * cols, cols), dg);
            TensorPrimitives.Add(db, allPartials.Slice(k * 2 * cols + cols, cols), db);
        }
    }

    /// <summary>Mean and biased variance (see the file comment).</summary>
    private static (double Mean, double Variance) Moments(ReadOnlySpan<float> x)
    {
        double mean = 0, m2 = 0;
        long count = 0;
        for (int s = 0; s < x.Length; s += MomentBlock)
        {
            var block = x.Slice(s, Math.Min(MomentBlock, x.Length - s));
            // Corrected two-pass: the rounded float mean is only a centre; the deviations' own sum restores
            // the exact block mean and M2.
            float center = TensorPrimitives.Sum(block) / block.Length;
            var (sumD, sumD2) = DeviationSums(block, center);
            double blockMean = center + sumD / block.Length, blockM2 = sumD2 - sumD * sumD / block.Length;
            long merged = count + block.Length;
            double delta = blockMean - mean;
            mean += delta * block.Length / merged;
            m2 += blockM2 + delta * delta * count * block.Length / merged;
            count = merged;
        }
        return (mean, m2 / count);
    }

    /// <summary>(Σ (x − center), Σ (x − center)²).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double Sum, double SumSquares) DeviationSums(ReadOnlySpan<float> x, float center)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        var c = Vector256.Create(center);
        Vector256<float> sum0 = Vector256<float>.Zero, sum1 = Vector256<float>.Zero, sq0 = Vector256<float>.Zero, sq1 = Vector256<float>.Zero;
        int i = 0;
        for (; i <= x.Length - 16; i += 16)
        {
            var d0 = Vector256.LoadUnsafe(ref xr, (nuint)i) - c;
            var d1 = Vector256.LoadUnsafe(ref xr, (nuint)(i + 8)) - c;
            sum0 += d0; sum1 += d1;
            sq0 = Vector256.FusedMultiplyAdd(d0, d0, sq0);
            sq1 = Vector256.FusedMultiplyAdd(d1, d1, sq1);
        }
        double sum = Vector256.Sum(sum0 + sum1), squares = Vector256.Sum(sq0 + sq1);
        for (; i < x.Length; i++) { double d = x[i] - center; sum += d; squares += d * d; }
        return (sum, squares);
    }

    /// <summary>y = act((x − mean)·scale + shift) with act = SiLU or the identity.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void NormalizeRow(ReadOnlySpan<float> x, float mean, float scale, float shift, bool silu, Span<float> y)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        Vector256<float> vm = Vector256.Create(mean), vs = Vector256.Create(scale), vb = Vector256.Create(shift);
        int i = 0;
        for (; i <= x.Length - 8; i += 8)
        {
            var v = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref xr, (nuint)i) - vm, vs, vb);
            if (silu) v *= SimdMath.Sigmoid(v);
            v.StoreUnsafe(ref yr, (nuint)i);
        }
        for (; i < x.Length; i++)
        {
            float v = MathF.FusedMultiplyAdd(x[i] - mean, scale, shift);
            y[i] = silu ? v * SimdMath.Sigmoid(v) : v;
        }
    }

    /// <summary>One GroupNorm channel: dv = dy·act'(v) at v = x̂·γ + β (act = SiLU when dvOut is given, which then
    /// receives dv; the identity otherwise). Returns (Σ dv, Σ dv·x̂).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double SumDv, double SumDvXhat) GroupNormChannelSums(ReadOnlySpan<float> x, ReadOnlySpan<float> dy,
        Span<float> dvOut, float mean, float rstd, float gamma, float beta)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float gr = ref MemoryMarshal.GetReference(dy);
        ref float dr = ref MemoryMarshal.GetReference(dvOut);
        bool silu = !dvOut.IsEmpty;
        Vector256<float> vm = Vector256.Create(mean), vr = Vector256.Create(rstd), vg = Vector256.Create(gamma), vb = Vector256.Create(beta);
        double sumDv = 0, sumDvXhat = 0;
        int i = 0;
        // Float accumulators per block, double across blocks (HW reaches 65536).
        for (int blockEnd = Math.Min(MomentBlock, x.Length); ; blockEnd = Math.Min(blockEnd + MomentBlock, x.Length))
        {
            Vector256<float> accDv = Vector256<float>.Zero, accDvXhat = Vector256<float>.Zero;
            for (; i <= blockEnd - 8; i += 8)
            {
                var xhat = (Vector256.LoadUnsafe(ref xr, (nuint)i) - vm) * vr;
                var dv = Vector256.LoadUnsafe(ref gr, (nuint)i);
                if (silu)
                {
                    var v = Vector256.FusedMultiplyAdd(xhat, vg, vb);
                    var s = SimdMath.Sigmoid(v);
                    dv *= s * Vector256.FusedMultiplyAdd(v, Vector256<float>.One - s, Vector256<float>.One);
                    dv.StoreUnsafe(ref dr, (nuint)i);
                }
                accDv += dv;
                accDvXhat = Vector256.FusedMultiplyAdd(dv, xhat, accDvXhat);
            }
            sumDv += Vector256.Sum(accDv); sumDvXhat += Vector256.Sum(accDvXhat);
            if (blockEnd == x.Length) break;
        }
        for (; i < x.Length; i++)
        {
            float xhat = (x[i] - mean) * rstd, dv = dy[i];
            if (silu)
            {
                float v = MathF.FusedMultiplyAdd(xhat, gamma, beta), s = SimdMath.Sigmoid(v);
                dv *= s * MathF.FusedMultiplyAdd(v, 1f - s, 1f);
                dvOut[i] = dv;
            }
            sumDv += dv; sumDvXhat += dv * xhat;
        }
        return (sumDv, sumDvXhat);
    }

    /// <summary>One LayerNorm row: accumulates dγ += dy·x̂ and dβ += dy, returns (Σ g, Σ g·x̂) with g = γ·dy.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double SumG, double SumGXhat) LayerNormRowSums(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, ReadOnlySpan<float> gamma,
        float mean, float rstd, Span<float> dgamma, Span<float> dbeta)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(dy);
        ref float gr = ref MemoryMarshal.GetReference(gamma);
        ref float dgr = ref MemoryMarshal.GetReference(dgamma);
        ref float dbr = ref MemoryMarshal.GetReference(dbeta);
        Vector256<float> vm = Vector256.Create(mean), vr = Vector256.Create(rstd), accG = Vector256<float>.Zero, accGXhat = Vector256<float>.Zero;
        int i = 0;
        for (; i <= x.Length - 8; i += 8)
        {
            var xhat = (Vector256.LoadUnsafe(ref xr, (nuint)i) - vm) * vr;
            var d = Vector256.LoadUnsafe(ref yr, (nuint)i);
            var g = d * Vector256.LoadUnsafe(ref gr, (nuint)i);
            accG += g;
            accGXhat = Vector256.FusedMultiplyAdd(g, xhat, accGXhat);
            Vector256.FusedMultiplyAdd(d, xhat, Vector256.LoadUnsafe(ref dgr, (nuint)i)).StoreUnsafe(ref dgr, (nuint)i);
            (Vector256.LoadUnsafe(ref dbr, (nuint)i) + d).StoreUnsafe(ref dbr, (nuint)i);
        }
        double sumG = Vector256.Sum(accG), sumGXhat = Vector256.Sum(accGXhat);
        for (; i < x.Length; i++)
        {
            float xhat = (x[i] - mean) * rstd, g = dy[i] * gamma[i];
            sumG += g; sumGXhat += g * xhat;
            dgamma[i] += dy[i] * xhat; dbeta[i] += dy[i];
        }
        return (sumG, sumGXhat);
    }

    /// <summary>dx = scale·dv + (x − mean)·kx + k0: the normalisation input gradient with its group sums folded
    /// into constants. dv may alias dx.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void InputGradRow(ReadOnlySpan<float> x, ReadOnlySpan<float> dv, float mean, float scale, float kx, float k0, Span<float> dx)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float vr = ref MemoryMarshal.GetReference(dv);
        ref float dr = ref MemoryMarshal.GetReference(dx);
        Vector256<float> vm = Vector256.Create(mean), vs = Vector256.Create(scale), vkx = Vector256.Create(kx), vk0 = Vector256.Create(k0);
        int i = 0;
        for (; i <= x.Length - 8; i += 8)
        {
            var rest = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref xr, (nuint)i) - vm, vkx, vk0);
            Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref vr, (nuint)i), vs, rest).StoreUnsafe(ref dr, (nuint)i);
        }
        for (; i < x.Length; i++) dx[i] = MathF.FusedMultiplyAdd(dv[i], scale, MathF.FusedMultiplyAdd(x[i] - mean, kx, k0));
    }
}
