using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MaskBit.Kernels.Cpu;

// Softmax / log-softmax over the last axis and label-smoothed cross-entropy: one row at a time, rows in
// parallel. Row sums run in float inside L1-sized blocks and in double across blocks, so 2^18-wide rows
// (LFQ codebooks) keep full precision.
public sealed partial class CpuBackend
{
    private const int RowSumBlock = 4096;

    public void SoftmaxForward(int rows, int cols, Buf x, Buf y, bool log)
    {
        float[] xa = Arr(x), ya = Arr(y); int xo = Off(x), yo = Off(y);
        CpuParallel.For(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var xr = xa.AsSpan(xo + r * cols, cols); var yr = ya.AsSpan(yo + r * cols, cols);
                float max = TensorPrimitives.Max(xr);
                if (log)
                {
                    float lse = (float)(max + Math.Log(ExpSum(xr, max, Span<float>.Empty).SumExp));
                    TensorPrimitives.Subtract(xr, lse, yr);
                }
                else
                {
                    // Exp is the expensive part: compute it once into y, then rescale in place.
                    double sum = ExpSum(xr, max, yr).SumExp;
                    TensorPrimitives.Multiply(yr, (float)(1.0 / sum), yr);
                }
            }
        }, costPerItem: cols * 8.0);
    }

    public void SoftmaxBackward(int rows, int cols, Buf y, Buf dy, Buf dx, bool log)
    {
        float[] ya = Arr(y), ga = Arr(dy), da = Arr(dx); int yo = Off(y), go = Off(dy), dOff = Off(dx);
        CpuParallel.For(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var yr = ya.AsSpan(yo + r * cols, cols); var gr = ga.AsSpan(go + r * cols, cols); var dr = da.AsSpan(dOff + r * cols, cols);
                if (log)
                {
                    // y = log p: dx = dy − p·Σdy
                    float sum = (float)BlockedSum(gr);
                    SubtractScaledExp(gr, yr, 0f, sum, dr);
                }
                else
                {
                    // y = p: dx = p·(dy − Σ dy·p)
                    float dot = (float)BlockedDot(gr, yr);
                    TensorPrimitives.AddMultiply(gr, -dot, yr, dr);
                }
            }
        }, costPerItem: cols * 6.0);
    }

    public void CrossEntropyForward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf loss, Buf lse)
    {
        float[] xa = Arr(logits), la = Arr(loss), sa = Arr(lse); int[] ta = IntArr(targets);
        int xo = Off(logits), lo = Off(loss), so = Off(lse), to = Off(targets);
        IndexFault.Check(ta.AsSpan(to, rows), cols, IndexedOp.CrossEntropy);
        CpuParallel.For(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var xr = xa.AsSpan(xo + r * cols, cols);
                float max = TensorPrimitives.Max(xr);
                var (sumExp, sumX) = ExpSum(xr, max, Span<float>.Empty);
                double rowLse = max + Math.Log(sumExp);
                // −(1−ε)·logp[t] − ε/C·Σ logp  with logp = x − lse
                la[lo + r] = (float)(rowLse - (1.0 - labelSmoothing) * xr[ta[to + r]] - labelSmoothing * sumX / cols);
                sa[so + r] = (float)rowLse;
            }
        }, costPerItem: cols * 8.0);
    }

    public void CrossEntropyBackward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf lse, Buf dloss, Buf dlogits)
    {
        float[] xa = Arr(logits), sa = Arr(lse), ga = Arr(dloss), da = Arr(dlogits); int[] ta = IntArr(targets);
        int xo = Off(logits), so = Off(lse), go = Off(dloss), dOff = Off(dlogits), to = Off(targets);
        CpuParallel.For(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var dr = da.AsSpan(dOff + r * cols, cols);
                float g = ga[go + r];
                // dx = g·(p − ε/C − (1−ε)·[c = t]) with p = e^(x − lse)
                SubtractScaledExp(ReadOnlySpan<float>.Empty, xa.AsSpan(xo + r * cols, cols), sa[so + r], -g, dr, offset: -g * labelSmoothing / cols);
                dr[ta[to + r]] -= g * (1f - labelSmoothing);
            }
        }, costPerItem: cols * 8.0);
    }

    /// <summary>dst = a − scale·e^(x − shift) + offset (a = 0 when empty).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SubtractScaledExp(ReadOnlySpan<float> a, ReadOnlySpan<float> x, float shift, float scale, Span<float> dst, float offset = 0f)
    {
        ref float ar = ref MemoryMarshal.GetReference(a);
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float dr = ref MemoryMarshal.GetReference(dst);
        bool hasA = !a.IsEmpty;
        Vector256<float> vShift = Vector256.Create(shift), vScale = Vector256.Create(-scale), vOffset = Vector256.Create(offset);
        int i = 0;
        for (; i <= x.Length - 8; i += 8)
        {
            var baseline = hasA ? Vector256.LoadUnsafe(ref ar, (nuint)i) + vOffset : vOffset;
            var e = SimdMath.Exp(Vector256.LoadUnsafe(ref xr, (nuint)i) - vShift);
            Vector256.FusedMultiplyAdd(e, vScale, baseline).StoreUnsafe(ref dr, (nuint)i);
        }
        for (; i < x.Length; i++) dst[i] = MathF.FusedMultiplyAdd(SimdMath.Exp(x[i] - shift), -scale, (hasA ? a[i] : 0f) + offset);
    }

    /// <summary>Σ e^(x − shift) and Σ x; e^(x − shift) is also written to expOut unless it is empty.</summary>
    private static (double SumExp, double SumX) ExpSum(ReadOnlySpan<float> x, float shift, Span<float> expOut)
    {
        double sumExp = 0, sumX = 0;
        for (int s = 0; s < x.Length; s += RowSumBlock)
        {
            int len = Math.Min(RowSumBlock, x.Length - s);
            var (e, v) = ExpSumBlock(x.Slice(s, len), shift, expOut.IsEmpty ? expOut : expOut.Slice(s, len));
            sumExp += e; sumX += v;
        }
        return (sumExp, sumX);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float SumExp, float SumX) ExpSumBlock(ReadOnlySpan<float> x, float shift, Span<float> expOut)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float er = ref MemoryMarshal.GetReference(expOut);
        bool write = !expOut.IsEmpty;
        var vShift = Vector256.Create(shift);
        Vector256<float> accExp = Vector256<float>.Zero, accX = Vector256<float>.Zero;
        int i = 0;
        for (; i <= x.Length - 8; i += 8)
        {
            var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
            var e = SimdMath.Exp(v - vShift);
            if (write) e.StoreUnsafe(ref er, (nuint)i);
            accExp += e; accX += v;
        }
        float sumExp = Vector256.Sum(accExp), sumX = Vector256.Sum(accX);
        for (; i < x.Length; i++)
        {
            float e = SimdMath.Exp(x[i] - shift);
            if (write) expOut[i] = e;
            sumExp += e; sumX += x[i];
        }
        return (sumExp, sumX);
    }

    private static double BlockedSum(ReadOnlySpan<float> x)
    {
        double total = 0;
        for (int s = 0; s < x.Length; s += RowSumBlock) total += TensorPrimitives.Sum(x.Slice(s, Math.Min(RowSumBlock, x.Length - s)));
        return total;
    }

    private static double BlockedDot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double total = 0;
        for (int s = 0; s < a.Length; s += RowSumBlock)
        {
            int len = Math.Min(RowSumBlock, a.Length - s);
            total += TensorPrimitives.Dot(a.Slice(s, len), b.Slice(s, len));
        }
        return total;
    }
}
