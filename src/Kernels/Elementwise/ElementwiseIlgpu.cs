using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Element-wise ops and strided copies on an ILGPU accelerator: grid-stride loops, one launch per op.
public sealed partial class IlgpuBackend
{
    /// <summary>Scalar arguments of the unary kernels (ints, not bools: kernel parameters stay plain data).</summary>
    public struct UnaryArgs
    {
        public UnaryOp Op;
        public float Alpha;
        public int Accumulate;
    }

    public struct BinaryArgs
    {
        public BinaryOp Op;
        public StridedPair Layout;   // First = a, Second = b; y is contiguous
    }

    /// <summary>How <see cref="CopyStridedKernel{T, TStore}"/> writes an element.</summary>
    internal interface IStore<T> where T : unmanaged { void Store(ref T target, T value); }
    internal readonly struct Overwrite<T> : IStore<T> where T : unmanaged { public void Store(ref T target, T value) => target = value; }
    /// <summary>Atomic, because an expanded destination (stride 0) receives several sources.</summary>
    internal readonly struct AtomicAccumulate : IStore<float> { public void Store(ref float target, float value) => Atomic.Add(ref target, value); }

    private static readonly Action<ArrayView<float>, long, float> FillEntry = FillKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, long, UnaryArgs> UnaryEntry = UnaryKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, long, UnaryArgs> UnaryBackwardEntry = UnaryBackwardKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, BinaryArgs> BinaryEntry = BinaryKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, long> WhereEntry = WhereKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, long, DropoutMask> DropoutEntry = DropoutKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, StridedPair> CopyStridedEntry = CopyStridedKernel<float, Overwrite<float>>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, StridedPair> AccumulateStridedEntry = CopyStridedKernel<float, AtomicAccumulate>;
    private static readonly Action<ArrayView<int>, ArrayView<int>, StridedPair> CopyStridedIntEntry = CopyStridedKernel<int, Overwrite<int>>;

    // ---- host side ----------------------------------------------------------------------------------------
    public void Fill(Buf y, long n, float value)
    {
        if (n == 0) return;
        Kernel(FillEntry)(GridStride(n, Sizes.ElementGroup), F(y, n), n, value);
    }

    /// <summary>A device-to-device copy; x and y must not partially overlap.</summary>
    public void Copy(Buf x, Buf y, long n)
    {
        if (n == 0 || x == y) return;
        if (x.Storage.DType == DType.Int32) I(x, n).CopyTo(Stream, I(y, n));
        else if (x.Storage.DType.Is16Bit()) H(x, n).CopyTo(Stream, H(y, n));
        else F(x, n).CopyTo(Stream, F(y, n));
    }

    public void Unary(UnaryOp op, Buf x, Buf y, long n, float alpha = 0f)
    {
        RequireDefined(op);
        if (n == 0) return;
        Kernel(UnaryEntry)(
            GridStride(n, Sizes.ElementGroup), F(x, n), F(y, n), n, new UnaryArgs { Op = op, Alpha = alpha });
    }

    public void UnaryBackward(UnaryOp op, Buf x, Buf y, Buf dy, Buf dx, long n, float alpha = 0f, bool accumulate = false)
    {
        RequireDefined(op);
        if (n == 0) return;
        Kernel(UnaryBackwardEntry)(
            GridStride(n, Sizes.ElementGroup), F(x, n), F(y, n), F(dy, n), F(dx, n), n,
            new UnaryArgs { Op = op, Alpha = alpha, Accumulate = accumulate ? 1 : 0 });
    }

    public void Binary(BinaryOp op, Buf a, int[] aStrides, Buf b, int[] bStrides, Buf y, int[] shape)
    {
        if (!Enum.IsDefined(op)) throw new NotSupportedException($"binary op {op}");
        var layout = StridedPair.Create(shape, aStrides, bStrides, nameof(Binary));
        if (layout.Count == 0) return;
        Kernel(BinaryEntry)(
            GridStride(layout.Count, Sizes.ElementGroup), F(a, layout.FirstExtent), F(b, layout.SecondExtent), F(y, layout.Count),
            new BinaryArgs { Op = op, Layout = layout });
    }

    public void Dropout(Buf x, Buf y, long n, DropoutMask mask)
    {
        if (n == 0) return;
        Kernel(DropoutEntry)(GridStride(n, Sizes.ElementGroup), F(x, n), F(y, n), n, mask);
    }

    public void Where(Buf cond, Buf a, Buf b, Buf y, long n)
    {
        if (n == 0) return;
        Kernel(WhereEntry)(
            GridStride(n, Sizes.ElementGroup), F(cond, n), F(a, n), F(b, n), F(y, n), n);
    }

    public void CopyStrided(Buf x, int[] xStrides, Buf y, int[] yStrides, int[] shape, bool accumulate = false)
    {
        var layout = StridedPair.Create(shape, xStrides, yStrides, nameof(CopyStrided));
        if (layout.Count == 0) return;
        var launch = GridStride(layout.Count, Sizes.ElementGroup);
        if (x.Storage.DType == DType.Int32)
        {
            if (accumulate) throw new NotSupportedException("CopyStrided: accumulating Int32 tensors");
            Kernel(CopyStridedIntEntry)(
                launch, I(x, layout.FirstExtent), I(y, layout.SecondExtent), layout);
            return;
        }
        var kernel = accumulate
            ? Kernel(AccumulateStridedEntry)
            : Kernel(CopyStridedEntry);
        kernel(launch, F(x, layout.FirstExtent), F(y, layout.SecondExtent), layout);
    }

    private static void RequireDefined(UnaryOp op)
    {
        if (!Enum.IsDefined(op)) throw new NotSupportedException($"unary op {op}");
    }

    // ---- kernels ------------------------------------------------------------------------------------------
    internal static void FillKernel(ArrayView<float> y, long n, float value)
    {
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep) y[i] = value;
    }

    internal static void UnaryKernel(ArrayView<float> x, ArrayView<float> y, long n, UnaryArgs args)
    {
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep) y[i] = UnaryForward(args.Op, x[i], args.Alpha);
    }

    internal static void UnaryBackwardKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx,
        long n, UnaryArgs args)
    {
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep)
        {
            float d = dy[i] * UnaryDerivative(args.Op, x[i], y[i], args.Alpha);
            dx[i] = args.Accumulate != 0 ? dx[i] + d : d;
        }
    }

    internal static void BinaryKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, BinaryArgs args)
    {
        for (int i = Grid.GlobalIndex.X; i < args.Layout.Count; i = GridStrideNext(i, args.Layout.Count, GridStrideStep))
        {
            args.Layout.Offsets(i, out long ia, out long ib);
            y[i] = BinaryScalar(args.Op, a[ia], b[ib]);
        }
    }

    internal static void DropoutKernel(ArrayView<float> x, ArrayView<float> y, long n, DropoutMask mask)
    {
        uint key = mask.FlatKey;
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep) y[i] = x[i] * mask.Factor(key, (int)i);
    }

    internal static void WhereKernel(ArrayView<float> cond, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, long n)
    {
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep) y[i] = cond[i] != 0f ? a[i] : b[i];
    }

    internal static void CopyStridedKernel<T, TStore>(ArrayView<T> x, ArrayView<T> y, StridedPair layout)
        where T : unmanaged where TStore : struct, IStore<T>
    {
        for (int i = Grid.GlobalIndex.X; i < layout.Count; i = GridStrideNext(i, layout.Count, GridStrideStep))
        {
            layout.Offsets(i, out long ix, out long iy);
            default(TStore).Store(ref y[iy], x[ix]);
        }
    }

    // ---- scalar math shared by the kernels (float only: double math is software-emulated on GPUs) ----------
    /// <summary>Mirrors the CPU backend's UnaryScalar; values at kinks follow PyTorch.</summary>
    internal static float UnaryForward(UnaryOp op, float v, float a) => op switch
    {
        UnaryOp.Neg => -v,
        UnaryOp.Exp => XMath.Exp(v),
        UnaryOp.Log => XMath.Log(v),
        UnaryOp.Sqrt => XMath.Sqrt(v),
        UnaryOp.Rsqrt => XMath.Rsqrt(v),
        UnaryOp.Abs => XMath.Abs(v),
        UnaryOp.Sign => v > 0f ? 1f : v < 0f ? -1f : 0f,
        UnaryOp.Square => v * v,
        UnaryOp.Relu => v < 0f ? 0f : v,   // NaN stays NaN, as on the CPU
        UnaryOp.Sigmoid => Sigmoid(v),
        UnaryOp.Tanh => Tanh(v),
        UnaryOp.Silu => v / (1f + XMath.Exp(-v)),
        UnaryOp.Gelu => 0.5f * v * (1f + Erf(v * InvSqrt2)),
        UnaryOp.LeakyRelu => v > 0f ? v : v * a,
        UnaryOp.Softplus => MaxOrNaN(v, 0f) + XMath.Log(1f + XMath.Exp(-XMath.Abs(v))),
        UnaryOp.Scale => a * v,
        UnaryOp.AddScalar => v + a,
        UnaryOp.PowScalar => Pow(v, a),
        UnaryOp.ClampMin => MaxOrNaN(v, a),
        _ => MinOrNaN(v, a),   // ClampMax (the host rejects undefined ops)
    };

    /// <summary>f'(x), from y = f(x) where that is cheaper; mirrors the CPU backend's UnaryDerivative.</summary>
    internal static float UnaryDerivative(UnaryOp op, float x, float y, float a) => op switch
    {
        UnaryOp.Neg => -1f,
        UnaryOp.Exp => y,
        UnaryOp.Log => 1f / x,
        UnaryOp.Sqrt => 0.5f / y,
        UnaryOp.Rsqrt => -0.5f * y * y * y,
        UnaryOp.Abs => x > 0f ? 1f : x < 0f ? -1f : 0f,
        UnaryOp.Sign => 0f,
        UnaryOp.Square => 2f * x,
        UnaryOp.Relu => x > 0f ? 1f : 0f,
        UnaryOp.Sigmoid => y * (1f - y),
        UnaryOp.Tanh => 1f - y * y,
        UnaryOp.Silu => SiluGrad(x),
        UnaryOp.Gelu => 0.5f * (1f + Erf(x * InvSqrt2)) + x * InvSqrt2Pi * XMath.Exp(-0.5f * x * x),
        UnaryOp.LeakyRelu => x > 0f ? 1f : a,
        UnaryOp.Softplus => Sigmoid(x),
        UnaryOp.Scale => a,
        UnaryOp.AddScalar => 1f,
        UnaryOp.PowScalar => a * Pow(x, a - 1f),
        UnaryOp.ClampMin => x >= a ? 1f : 0f,
        _ => x <= a ? 1f : 0f,  // ClampMax
    };

    internal static float BinaryScalar(BinaryOp op, float a, float b) => op switch
    {
        BinaryOp.Add => a + b,
        BinaryOp.Sub => a - b,
        BinaryOp.Mul => a * b,
        BinaryOp.Div => a / b,
        BinaryOp.Max => MaxOrNaN(a, b),
        BinaryOp.Min => MinOrNaN(a, b),
        BinaryOp.Greater => a > b ? 1f : 0f,
        BinaryOp.GreaterEqual => a >= b ? 1f : 0f,
        _ => a == b ? 1f : 0f,  // Equal
    };

    /// <summary>max(a, b), NaN when either is NaN, as on the CPU (MathF.Max, TensorPrimitives.Max). Kernels use
    /// these instead of XMath.Max/Min, which become PTX <c>max.f32</c>/<c>min.f32</c>: those return the other
    /// operand for a NaN, so a NaN loss could turn finite on the GPU and slip past the NaN stop. Compare-and-select
    /// compiles to setp/selp, no max.f32 (PtxCompileTests checks that none is left). max(+0, −0) may give −0.</summary>
    internal static float MaxOrNaN(float a, float b) => a > b || XMath.IsNaN(a) ? a : b;

    /// <summary>min(a, b), NaN when either is NaN (see <see cref="MaxOrNaN"/>).</summary>
    internal static float MinOrNaN(float a, float b) => a < b || XMath.IsNaN(a) ? a : b;

    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;

    private static float Sigmoid(float v) => 1f / (1f + XMath.Exp(-v));

    /// <summary>tanh from exp: XMath.Tanh becomes PTX tanh.approx (relative error 2^-11, too far for parity);
    /// this form is accurate to a few ulp of 1 and cannot overflow.</summary>
    private static float Tanh(float v)
    {
        float e = XMath.Exp(-2f * XMath.Abs(v));
        float t = (1f - e) / (1f + e);
        return v < 0f ? -t : t;
    }

    private static float SiluGrad(float x)
    {
        float s = Sigmoid(x);
        return s * (1f + x * (1f - s));
    }

    /// <summary>x^a as MathF.Pow for the cases that matter: negative bases with integral exponents keep their
    /// sign (GPU pow is exp2(a·log2 x), undefined for x &lt; 0); other negative bases give NaN.</summary>
    private static float Pow(float x, float a)
    {
        if (a == 0f) return 1f;
        float magnitude = XMath.Pow(XMath.Abs(x), a);
        if (x >= 0f) return magnitude;
        float half = a * 0.5f;
        if (a != XMath.Floor(a)) return float.NaN;
        return half == XMath.Floor(half) ? magnitude : -magnitude;
    }

    /// <summary>erf for float (Eigen/XLA's rational approximation: x clamped to [−4, 4], an odd degree-13
    /// polynomial over an even degree-8 one in x²); |error| ≤ 3.5e-7, so exact-erf GELU stays within 1e-6.</summary>
    internal static float Erf(float x)
    {
        x = MinOrNaN(MaxOrNaN(x, -4f), 4f);
        float x2 = x * x;
        float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
        p = x2 * p + -2.10102402082508e-06f;
        p = x2 * p + -5.69250639462346e-05f;
        p = x2 * p + -7.34990630326855e-04f;
        p = x2 * p + -2.95459980854025e-03f;
        p = x2 * p + -1.60960333262415e-02f;
        p *= x;
        float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
        q = x2 * q + -1.68282697438203e-03f;
        q = x2 * q + -7.37332916720468e-03f;
        q = x2 * q + -1.42647390514189e-02f;
        return p / q;
    }
}
