using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Kernels.Cpu;

// Element-wise ops, strided copies and axis reductions on the CPU.
public sealed partial class CpuBackend
{
    private const int ElementChunk = 1 << 15;

    // These are the engine's most frequent kernels, many calls on small tensors: every loop body is a struct
    // (IRangeBody over elements or rows), so a call allocates no closure.

    /// <summary>Runs body over [0, n) in chunks of ElementChunk elements, on all cores when n is large.</summary>
    private static void Chunked<TBody>(long n, TBody body) where TBody : struct, IRangeBody =>
        CpuParallel.For((int)((n + ElementChunk - 1) / ElementChunk), new ElementChunks<TBody>(n, body), costPerItem: ElementChunk);

    private readonly struct ElementChunks<TBody>(long n, TBody body) : IRangeBody where TBody : struct, IRangeBody
    {
        public void Run(int first, int end)
        {
            for (int c = first; c < end; c++)
            {
                int start = c * ElementChunk;
                body.Run(start, (int)Math.Min(start + ElementChunk, n));
            }
        }
    }

    public void Fill(Buf y, long n, float value) => Chunked(n, new FillBody(y, value));

    private readonly struct FillBody(Buf y, float value) : IRangeBody
    {
        public void Run(int start, int end) => F(y.At(start), end - start).Fill(value);
    }

    public void Copy(Buf x, Buf y, long n)
    {
        if (x.Storage.DType == DType.Int32) { I(x, n).CopyTo(I(y, n)); return; }
        if (x.Storage.DType.Is16Bit()) { H(x, n).CopyTo(H(y, n)); return; }
        Chunked(n, new CopyBody(x, y));
    }

    private readonly struct CopyBody(Buf x, Buf y) : IRangeBody
    {
        public void Run(int start, int end) => F(x.At(start), end - start).CopyTo(F(y.At(start), end - start));
    }

    public void Unary(UnaryOp op, Buf x, Buf y, long n, float alpha = 0f) => Chunked(n, new UnaryBody(op, x, y, alpha));

    private readonly struct UnaryBody(UnaryOp op, Buf x, Buf y, float alpha) : IRangeBody
    {
        public void Run(int start, int end) => UnarySpan(op, F(x.At(start), end - start), F(y.At(start), end - start), alpha);
    }

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
        Chunked(n, new UnaryBackwardBody(op, x, y, dy, dx, alpha, accumulate));

    private readonly struct UnaryBackwardBody(UnaryOp op, Buf x, Buf y, Buf dy, Buf dx, float alpha, bool accumulate)
        : IRangeBody
    {
        public void Run(int start, int end)
        {
            int len = end - start;
            var xs = F(x.At(start), len); var ys = F(y.At(start), len); var g = F(dy.At(start), len); var o = F(dx.At(start), len);
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
        }
    }

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
            Chunked(n, new ContiguousBinaryBody(op, a, b, y));
            return;
        }
        // General broadcast: iterate rows of the last axis; each row is a strided 1-D loop.
        int inner = shape.Length == 0 ? 1 : shape[^1];
        CpuParallel.For((int)(n / Math.Max(inner, 1)), new BroadcastBinaryBody(op, a, aStrides, b, bStrides, y, shape),
            costPerItem: inner);
    }

    private readonly struct BroadcastBinaryBody(BinaryOp op, Buf a, int[] aStrides, Buf b, int[] bStrides, Buf y, int[] shape)
        : IRangeBody
    {
        public void Run(int start, int end)
        {
            int rank = shape.Length, inner = rank == 0 ? 1 : shape[^1];
            int sa = rank == 0 ? 0 : aStrides[^1], sb = rank == 0 ? 0 : bStrides[^1];
            float[] aArr = Arr(a), bArr = Arr(b), yArr = Arr(y);
            int aOff = Off(a), bOff = Off(b), yOff = Off(y);
            for (int r = start; r < end; r++)
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
        }
    }

    private readonly struct ContiguousBinaryBody(BinaryOp op, Buf a, Buf b, Buf y) : IRangeBody
    {
        public void Run(int start, int end)
        {
            int len = end - start;
            var av = F(a.At(start), len); var bv = F(b.At(start), len); var yv = F(y.At(start), len);
            if (!BinarySpan(op, av, bv, yv)) for (int i = 0; i < len; i++) yv[i] = BinaryScalar(op, av[i], bv[i]);
        }
    }

    public void Dropout(Buf x, Buf y, long n, DropoutMask mask) => Chunked(n, new DropoutBody(x, y, mask, mask.FlatKey));

    private readonly struct DropoutBody(Buf x, Buf y, DropoutMask mask, uint key) : IRangeBody
    {
        public void Run(int start, int end)
        {
            int len = end - start;
            var xv = F(x.At(start), len); var yv = F(y.At(start), len);
            int i = 0;
            for (; i <= len - 8; i += 8) (Vector256.Create<float>(xv.Slice(i, 8)) * mask.Factor8(key, start + i)).CopyTo(yv.Slice(i, 8));
            for (; i < len; i++) yv[i] = xv[i] * mask.Factor(key, start + i);
        }
    }

    public void Where(Buf cond, Buf a, Buf b, Buf y, long n) => Chunked(n, new WhereBody(cond, a, b, y));

    private readonly struct WhereBody(Buf cond, Buf a, Buf b, Buf y) : IRangeBody
    {
        public void Run(int start, int end)
        {
            int len = end - start;
            var c = F(cond.At(start), len); var av = F(a.At(start), len); var bv = F(b.At(start), len); var yv = F(y.At(start), len);
            for (int i = 0; i < len; i++) yv[i] = c[i] != 0f ? av[i] : bv[i];
        }
    }

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
        if (inner == 1)
        {
            CpuParallel.For(outer, new RowSumBody(x, y, mid, scale, accumulate), costPerItem: mid);
            return;
        }
        // Rows of length `inner` are added up; parallel over (outer × inner blocks) so each thread owns its outputs.
        int blocks = (inner + ColumnSumBody.Block - 1) / ColumnSumBody.Block;
        CpuParallel.For(outer * blocks, new ColumnSumBody(x, y, mid, inner, blocks, scale, accumulate),
            costPerItem: (double)mid * ColumnSumBody.Block);
    }

    /// <summary>y[o] (+)= scale · Σ_m x[o, m] (inner = 1).</summary>
    private readonly struct RowSumBody(Buf x, Buf y, int mid, float scale, bool accumulate) : IRangeBody
    {
        public void Run(int start, int end)
        {
            float[] xa = Arr(x), ya = Arr(y); int xo = Off(x), yo = Off(y);
            for (int o = start; o < end; o++)
            {
                float s = TensorPrimitives.Sum(xa.AsSpan(xo + o * mid, mid)) * scale;
                ya[yo + o] = accumulate ? ya[yo + o] + s : s;
            }
        }
    }

    /// <summary>y[o, i] (+)= scale · Σ_m x[o, m, i] for one block of Block columns per task.</summary>
    private readonly struct ColumnSumBody(Buf x, Buf y, int mid, int inner, int blocks, float scale, bool accumulate)
        : IRangeBody
    {
        public const int Block = 1024;

        public void Run(int start, int end)
        {
            float[] xa = Arr(x), ya = Arr(y); int xo = Off(x), yo = Off(y);
            Span<float> acc = stackalloc float[Block];
            for (int t = start; t < end; t++)
            {
                int o = t / blocks, i0 = (t % blocks) * Block, len = Math.Min(Block, inner - i0);
                var a = acc[..len]; a.Clear();
                for (int m = 0; m < mid; m++) TensorPrimitives.Add(a, xa.AsSpan(xo + (o * mid + m) * inner + i0, len), a);
                var dst = ya.AsSpan(yo + o * inner + i0, len);
                if (accumulate) { TensorPrimitives.MultiplyAdd(a, scale, dst, dst); }
                else TensorPrimitives.Multiply(a, scale, dst);
            }
        }
    }

    public void ReduceMax(Buf x, Buf y, int outer, int mid, int inner) =>
        CpuParallel.For(outer, new ReduceMaxBody(x, y, mid, inner), costPerItem: (double)mid * inner);

    private readonly struct ReduceMaxBody(Buf x, Buf y, int mid, int inner) : IRangeBody
    {
        public void Run(int start, int end)
        {
            float[] xa = Arr(x), ya = Arr(y); int xo = Off(x), yo = Off(y);
            for (int o = start; o < end; o++)
            {
                if (inner == 1) { ya[yo + o] = TensorPrimitives.Max(xa.AsSpan(xo + o * mid, mid)); continue; }
                var dst = ya.AsSpan(yo + o * inner, inner);
                xa.AsSpan(xo + o * mid * inner, inner).CopyTo(dst);
                for (int m = 1; m < mid; m++) TensorPrimitives.Max(dst, xa.AsSpan(xo + (o * mid + m) * inner, inner), dst);
            }
        }
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
