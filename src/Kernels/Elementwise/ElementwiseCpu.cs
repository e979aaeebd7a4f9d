using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Kernels.Cpu;

// Element-wise ops, strided copies and axis reductions on the CPU.
public sealed partial class CpuBackend
{
    private const int ElementChunk = 1 << 15;

    /// <summary>Runs body over [0, n) in chunks of ElementChunk elements, on all cores when n is large.</summary>
    private static void Chunked(long n, Action<int, int> body)
    {
        int chunks = (int)((n + ElementChunk - 1) / ElementChunk);
        CpuParallel.For(chunks, (c0, c1) =>
        {
            for (int c = c0; c < c1; c++)
            {
                int start = c * ElementChunk;
                body(start, (int)Math.Min(ElementChunk, n - start));
            }
        }, costPerItem: ElementChunk);
    }

    public void Fill(Buf y, long n, float value) => Chunked(n, (s, len) => F(y.At(s), len).Fill(value));

    public void Copy(Buf x, Buf y, long n)
    {
        if (x.Storage.DType == DType.Int32) { I(x, n).CopyTo(I(y, n)); return; }
        Chunked(n, (s, len) => F(x.At(s), len).CopyTo(F(y.At(s), len)));
    }

    public void Unary(UnaryOp op, Buf x, Buf y, long n, float alpha = 0f) =>
        Chunked(n, (s, len) => UnarySpan(op, F(x.At(s), len), F(y.At(s), len), alpha));

    private static void UnarySpan(UnaryOp op, ReadOnlySpan<float> x, Span<float> y, float a)
    {
        switch (op)
        {
            case UnaryOp.Neg: TensorPrimitives.Negate(x, y); break;
            case UnaryOp.Exp: TensorPrimitives.Exp(x, y); break;
            case UnaryOp.Log: TensorPrimitives.Log(x, y); break;
            case UnaryOp.Sqrt: TensorPrimitives.Sqrt(x, y); break;
            case UnaryOp.Rsqrt: TensorPrimitives.ReciprocalSqrt(x, y); break;
            case UnaryOp.Abs: TensorPrimitives.Abs(x, y); break;
            case UnaryOp.Square: TensorPrimitives.Multiply(x, x, y); break;
            case UnaryOp.Sigmoid: TensorPrimitives.Sigmoid(x, y); break;
            case UnaryOp.Tanh: TensorPrimitives.Tanh(x, y); break;
            case UnaryOp.Scale: TensorPrimitives.Multiply(x, a, y); break;
            case UnaryOp.AddScalar: TensorPrimitives.Add(x, a, y); break;
            case UnaryOp.ClampMin: TensorPrimitives.Max(x, a, y); break;
            case UnaryOp.ClampMax: TensorPrimitives.Min(x, a, y); break;
            case UnaryOp.Relu: TensorPrimitives.Max(x, 0f, y); break;
            case UnaryOp.Gelu: SimdMath.Gelu(x, y); break;
            case UnaryOp.LeakyRelu: SimdMath.LeakyRelu(x, y, a); break;
            default:
                for (int i = 0; i < x.Length; i++) y[i] = UnaryScalar(op, x[i], a);
                break;
        }
    }

    private static float UnaryScalar(UnaryOp op, float v, float a) => op switch
    {
        UnaryOp.Sign => v > 0 ? 1f : v < 0 ? -1f : 0f,
        UnaryOp.Silu => v / (1f + MathF.Exp(-v)),
        UnaryOp.LeakyRelu => v > 0 ? v : v * a,
        UnaryOp.Softplus => MathF.Max(v, 0f) + MathF.Log(1f + MathF.Exp(-MathF.Abs(v))),
        UnaryOp.PowScalar => MathF.Pow(v, a),
        _ => throw new NotSupportedException($"unary op {op}"),
    };

    public void UnaryBackward(UnaryOp op, Buf x, Buf y, Buf dy, Buf dx, long n, float alpha = 0f, bool accumulate = false) =>
        Chunked(n, (s, len) =>
        {
            var xs = F(x.At(s), len); var ys = F(y.At(s), len); var g = F(dy.At(s), len); var o = F(dx.At(s), len);
            switch (op)
            {
                case UnaryOp.Gelu: SimdMath.GeluBackward(xs, g, o, accumulate); return;
                case UnaryOp.LeakyRelu: SimdMath.LeakyReluBackward(xs, g, o, alpha, accumulate); return;
                case UnaryOp.Relu: SimdMath.LeakyReluBackward(xs, g, o, 0f, accumulate); return;
                case UnaryOp.Scale or UnaryOp.Neg:
                    float factor = op == UnaryOp.Neg ? -1f : alpha;
                    if (accumulate) TensorPrimitives.MultiplyAdd(g, factor, o, o); else TensorPrimitives.Multiply(g, factor, o);
                    return;
                case UnaryOp.AddScalar:
                    if (accumulate) TensorPrimitives.Add(o, g, o); else g.CopyTo(o);
                    return;
            }
            for (int i = 0; i < len; i++)
            {
                float d = g[i] * UnaryDerivative(op, xs[i], ys[i], alpha);
                o[i] = accumulate ? o[i] + d : d;
            }
        });

    /// <summary>f'(x), using y = f(x) where that is cheaper. Values at kinks follow PyTorch.</summary>
    internal static float UnaryDerivative(UnaryOp op, float x, float y, float a) => op switch
    {
        UnaryOp.Neg => -1f,
        UnaryOp.Exp => y,
        UnaryOp.Log => 1f / x,
        UnaryOp.Sqrt => 0.5f / y,
        UnaryOp.Rsqrt => -0.5f * y * y * y,
        UnaryOp.Abs => x > 0 ? 1f : x < 0 ? -1f : 0f,
        UnaryOp.Sign => 0f,
        UnaryOp.Square => 2f * x,
        UnaryOp.Relu => x > 0 ? 1f : 0f,
        UnaryOp.Sigmoid => y * (1f - y),
        UnaryOp.Tanh => 1f - y * y,
        UnaryOp.Silu => SiluGrad(x),
        UnaryOp.LeakyRelu => x > 0 ? 1f : a,
        UnaryOp.Softplus => Special.Sigmoid(x),
        UnaryOp.Scale => a,
        UnaryOp.AddScalar => 1f,
        UnaryOp.PowScalar => a * MathF.Pow(x, a - 1f),
        UnaryOp.ClampMin => x >= a ? 1f : 0f,
        UnaryOp.ClampMax => x <= a ? 1f : 0f,
        _ => throw new NotSupportedException($"unary op {op}"),
    };

    internal static float SiluGrad(float x)
    {
        float s = 1f / (1f + MathF.Exp(-x));
        return s * (1f + x * (1f - s));
    }

    private static float BinaryScalar(BinaryOp op, float a, float b) => op switch
    {
        BinaryOp.Add => a + b,
        BinaryOp.Sub => a - b,
        BinaryOp.Mul => a * b,
        BinaryOp.Div => a / b,
        BinaryOp.Max => MathF.Max(a, b),
        BinaryOp.Min => MathF.Min(a, b),
        BinaryOp.Greater => a > b ? 1f : 0f,
        BinaryOp.GreaterEqual => a >= b ? 1f : 0f,
        BinaryOp.Equal => a == b ? 1f : 0f,
        _ => throw new NotSupportedException($"binary op {op}"),
    };

    private static bool BinarySpan(BinaryOp op, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        switch (op)
        {
            case BinaryOp.Add: TensorPrimitives.Add(a, b, y); return true;
            case BinaryOp.Sub: TensorPrimitives.Subtract(a, b, y); return true;
            case BinaryOp.Mul: TensorPrimitives.Multiply(a, b, y); return true;
            case BinaryOp.Div: TensorPrimitives.Divide(a, b, y); return true;
            default: return false;
        }
    }

    public void Binary(BinaryOp op, Buf a, int[] aStrides, Buf b, int[] bStrides, Buf y, int[] shape)
    {
        long n = Numel(shape);
        if (IsContiguous(aStrides, shape) && IsContiguous(bStrides, shape))
        {
            Chunked(n, (s, len) =>
            {
                var av = F(a.At(s), len); var bv = F(b.At(s), len); var yv = F(y.At(s), len);
                if (!BinarySpan(op, av, bv, yv)) for (int i = 0; i < len; i++) yv[i] = BinaryScalar(op, av[i], bv[i]);
            });
            return;
        }
        // General broadcast: iterate rows of the last axis; each row is a strided 1-D loop.
        int rank = shape.Length, inner = rank == 0 ? 1 : shape[^1];
        int rows = (int)(n / Math.Max(inner, 1));
        int sa = rank == 0 ? 0 : aStrides[^1], sb = rank == 0 ? 0 : bStrides[^1];
        float[] aArr = Arr(a), bArr = Arr(b), yArr = Arr(y);
        int aOff = Off(a), bOff = Off(b), yOff = Off(y);
        CpuParallel.For(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                long ia = aOff, ib = bOff; int rem = r;
                for (int d = rank - 2; d >= 0; d--) { int idx = rem % shape[d]; rem /= shape[d]; ia += (long)idx * aStrides[d]; ib += (long)idx * bStrides[d]; }
                int yo = yOff + r * inner;
                if (sa == 1 && sb == 1 && BinarySpan(op, aArr.AsSpan((int)ia, inner), bArr.AsSpan((int)ib, inner), yArr.AsSpan(yo, inner))) continue;
                if (sa == 1 && sb == 0 && op is BinaryOp.Add or BinaryOp.Mul or BinaryOp.Sub or BinaryOp.Div)
                {
                    var src = aArr.AsSpan((int)ia, inner); var dst = yArr.AsSpan(yo, inner); float s = bArr[ib];
                    switch (op)
                    {
                        case BinaryOp.Add: TensorPrimitives.Add(src, s, dst); break;
                        case BinaryOp.Sub: TensorPrimitives.Subtract(src, s, dst); break;
                        case BinaryOp.Mul: TensorPrimitives.Multiply(src, s, dst); break;
                        default: TensorPrimitives.Divide(src, s, dst); break;
                    }
                    continue;
                }
                for (int i = 0; i < inner; i++, ia += sa, ib += sb) yArr[yo + i] = BinaryScalar(op, aArr[ia], bArr[ib]);
            }
        }, costPerItem: inner);
    }

    public void Dropout(Buf x, Buf y, long n, DropoutMask mask)
    {
        uint key = mask.FlatKey;
        Chunked(n, (s, len) =>
        {
            var xv = F(x.At(s), len); var yv = F(y.At(s), len);
            int i = 0;
            for (; i <= len - 8; i += 8) (Vector256.Create<float>(xv.Slice(i, 8)) * mask.Factor8(key, s + i)).CopyTo(yv.Slice(i, 8));
            for (; i < len; i++) yv[i] = xv[i] * mask.Factor(key, s + i);
        });
    }

    public void Where(Buf cond, Buf a, Buf b, Buf y, long n) =>
        Chunked(n, (s, len) =>
        {
            var c = F(cond.At(s), len); var av = F(a.At(s), len); var bv = F(b.At(s), len); var yv = F(y.At(s), len);
            for (int i = 0; i < len; i++) yv[i] = c[i] != 0f ? av[i] : bv[i];
        });

    public void CopyStrided(Buf x, int[] xStrides, Buf y, int[] yStrides, int[] shape, bool accumulate = false)
    {
        if (Numel(shape) == 0) return;
        var (dims, xs, ys) = CoalesceStrided(shape, xStrides, yStrides);
        int rank = dims.Length, inner = dims[^1], sx = xs[^1], sy = ys[^1];
        int rows = (int)(Numel(dims) / inner);
        bool ints = x.Storage.DType == DType.Int32;
        CpuParallel.For(rows, (r0, r1) =>
        {
            // The outer index advances like an odometer: one division per chunk, not one per row.
            Span<int> index = stackalloc int[rank];
            long ix = x.Offset, iy = y.Offset; int rem = r0;
            for (int d = rank - 2; d >= 0; d--) { index[d] = rem % dims[d]; rem /= dims[d]; ix += (long)index[d] * xs[d]; iy += (long)index[d] * ys[d]; }
            for (int r = r0; r < r1; r++)
            {
                if (ints) CopyRow(IntArr(x), ix, sx, IntArr(y), iy, sy, inner);
                else if (sx == 1 && sy == 1)
                {
                    var src = Arr(x).AsSpan((int)ix, inner); var dst = Arr(y).AsSpan((int)iy, inner);
                    if (accumulate) TensorPrimitives.Add(dst, src, dst); else src.CopyTo(dst);
                }
                else if (accumulate) { float[] xa = Arr(x), ya = Arr(y); for (int i = 0; i < inner; i++) ya[iy + (long)i * sy] += xa[ix + (long)i * sx]; }
                else CopyRow(Arr(x), ix, sx, Arr(y), iy, sy, inner);
                for (int d = rank - 2; d >= 0; d--)
                {
                    ix += xs[d]; iy += ys[d];
                    if (++index[d] < dims[d]) break;
                    ix -= (long)xs[d] * dims[d]; iy -= (long)ys[d] * dims[d]; index[d] = 0;
                }
            }
        }, costPerItem: inner);
    }

    private static void CopyRow<T>(T[] xa, long ix, int sx, T[] ya, long iy, int sy, int n)
    {
        if (sx == 1 && sy == 1) { xa.AsSpan((int)ix, n).CopyTo(ya.AsSpan((int)iy, n)); return; }
        for (int i = 0; i < n; i++) ya[iy + (long)i * sy] = xa[ix + (long)i * sx];
    }

    /// <summary>The same strided copy over fewer, longer axes: size-1 axes dropped and each axis merged into the next
    /// where both sides step through it contiguously (a narrow on axis 1 of (B, S, E) becomes B rows of S·E).</summary>
    internal static (int[] Dims, int[] XStrides, int[] YStrides) CoalesceStrided(int[] shape, int[] xStrides, int[] yStrides)
    {
        var dims = new List<int>(); var xs = new List<int>(); var ys = new List<int>();
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            int last = dims.Count - 1;
            if (last >= 0 && xs[last] == xStrides[d] * shape[d] && ys[last] == yStrides[d] * shape[d])
            {
                dims[last] *= shape[d]; xs[last] = xStrides[d]; ys[last] = yStrides[d];
            }
            else { dims.Add(shape[d]); xs.Add(xStrides[d]); ys.Add(yStrides[d]); }
        }
        if (dims.Count == 0) return ([1], [1], [1]);
        return (dims.ToArray(), xs.ToArray(), ys.ToArray());
    }

    public void ReduceSum(Buf x, Buf y, int outer, int mid, int inner, float scale = 1f, bool accumulate = false)
    {
        float[] xa = Arr(x), ya = Arr(y); int xo = Off(x), yo = Off(y);
        if (inner == 1)
        {
            CpuParallel.For(outer, (o0, o1) =>
            {
                for (int o = o0; o < o1; o++)
                {
                    float s = TensorPrimitives.Sum(xa.AsSpan(xo + o * mid, mid)) * scale;
                    ya[yo + o] = accumulate ? ya[yo + o] + s : s;
                }
            }, costPerItem: mid);
            return;
        }
        // Rows of length `inner` are added up; parallel over (outer × inner blocks) so each thread owns its outputs.
        const int Block = 1024;
        int blocks = (inner + Block - 1) / Block;
        CpuParallel.For(outer * blocks, (t0, t1) =>
        {
            Span<float> acc = stackalloc float[Block];
            for (int t = t0; t < t1; t++)
            {
                int o = t / blocks, i0 = (t % blocks) * Block, len = Math.Min(Block, inner - i0);
                var a = acc[..len]; a.Clear();
                for (int m = 0; m < mid; m++) TensorPrimitives.Add(a, xa.AsSpan(xo + (o * mid + m) * inner + i0, len), a);
                var dst = ya.AsSpan(yo + o * inner + i0, len);
                if (accumulate) { TensorPrimitives.MultiplyAdd(a, scale, dst, dst); }
                else TensorPrimitives.Multiply(a, scale, dst);
            }
        }, costPerItem: (double)mid * Block);
    }

    public void ReduceMax(Buf x, Buf y, int outer, int mid, int inner)
    {
        float[] xa = Arr(x), ya = Arr(y); int xo = Off(x), yo = Off(y);
        CpuParallel.For(outer, (o0, o1) =>
        {
            for (int o = o0; o < o1; o++)
            {
                if (inner == 1) { ya[yo + o] = TensorPrimitives.Max(xa.AsSpan(xo + o * mid, mid)); continue; }
                var dst = ya.AsSpan(yo + o * inner, inner);
                xa.AsSpan(xo + o * mid * inner, inner).CopyTo(dst);
                for (int m = 1; m < mid; m++) TensorPrimitives.Max(dst, xa.AsSpan(xo + (o * mid + m) * inner, inner), dst);
            }
        }, costPerItem: (double)mid * inner);
    }

    internal static long Numel(int[] shape) { long n = 1; foreach (var s in shape) n *= s; return n; }

    internal static bool IsContiguous(int[] strides, int[] shape)
    {
        long expect = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            if (shape[d] != 1 && strides[d] != expect) return false;
            expect *= shape[d];
        }
        return true;
    }
}
