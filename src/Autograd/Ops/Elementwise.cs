using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Broadcast arithmetic, unary functions and comparisons, forward and backward side by side.
public sealed partial class Tensor
{
    // ---- binary with NumPy broadcasting ----------------------------------------------------------------------
    private static Tensor BinaryForward(BinaryOp op, Tensor a, Tensor b)
    {
        a.RequireDType(DType.Float32); b.RequireDType(DType.Float32);
        if (!ReferenceEquals(a.Device, b.Device)) throw new ArgumentException($"{op}: tensors on {a.Device.Name} and {b.Device.Name}");
        var shape = ShapeUtil.Broadcast(a.Shape, b.Shape, op.ToString());
        var y = Empty(shape, a.Device);
        a.Device.Binary(op, a.Buf, ShapeUtil.BroadcastStrides(a.Shape, shape), b.Buf, ShapeUtil.BroadcastStrides(b.Shape, shape), y.Buf, shape);
        return y;
    }

    public Tensor Add(Tensor other)
    {
        var y = BinaryForward(BinaryOp.Add, this, other);
        Tape.Record(y, "add", new[] { this, other }, [], g => new[] { g.SumTo(Shape), g.SumTo(other.Shape) });
        return y;
    }

    public Tensor Sub(Tensor other)
    {
        var y = BinaryForward(BinaryOp.Sub, this, other);
        Tape.Record(y, "sub", new[] { this, other }, [], g => new[] { g.SumTo(Shape), other.RequiresGrad ? g.Neg().SumTo(other.Shape) : null });
        return y;
    }

    public Tensor Mul(Tensor other)
    {
        var y = BinaryForward(BinaryOp.Mul, this, other);
        var self = this;
        Tensor[] saved = [.. (RequiresGrad ? [other] : Array.Empty<Tensor>()), .. (other.RequiresGrad ? [this] : Array.Empty<Tensor>())];
        Tape.Record(y, "mul", new[] { this, other }, saved, g => new[]
        {
            self.RequiresGrad ? g.Mul(other).SumTo(self.Shape) : null,
            other.RequiresGrad ? g.Mul(self).SumTo(other.Shape) : null,
        });
        return y;
    }

    public Tensor Div(Tensor other)
    {
        var y = BinaryForward(BinaryOp.Div, this, other);
        var self = this;
        Tensor[] saved = other.RequiresGrad ? [other, y] : [other];
        Tape.Record(y, "div", new[] { this, other }, saved, g => new[]
        {
            self.RequiresGrad ? g.Div(other).SumTo(self.Shape) : null,
            other.RequiresGrad ? g.Mul(y).Div(other).Neg().SumTo(other.Shape) : null,
        });
        return y;
    }

    /// <summary>Element-wise maximum; where equal, the gradient is split evenly (as torch.maximum).</summary>
    public Tensor Maximum(Tensor other) => MinMax(other, BinaryOp.Max);
    public Tensor Minimum(Tensor other) => MinMax(other, BinaryOp.Min);

    private Tensor MinMax(Tensor other, BinaryOp op)
    {
        var y = BinaryForward(op, this, other);
        var self = this;
        Tape.Record(y, op.ToString().ToLowerInvariant(), new[] { this, other }, [this, other], g =>
        {
            var a = op == BinaryOp.Max ? BinaryForward(BinaryOp.Greater, self, other) : BinaryForward(BinaryOp.Greater, other, self);
            var eq = BinaryForward(BinaryOp.Equal, self, other).MulScalar(0.5f);
            var wSelf = a.Add(eq);                        // 1 where self wins, ½ on ties
            var wOther = wSelf.Neg().AddScalar(1f);
            return new[] { self.RequiresGrad ? g.Mul(wSelf).SumTo(self.Shape) : null, other.RequiresGrad ? g.Mul(wOther).SumTo(other.Shape) : null };
        });
        return y;
    }

    // Comparisons produce 1/0 masks and are not differentiable.
    public Tensor Gt(Tensor other) => BinaryForward(BinaryOp.Greater, this, other);
    public Tensor Ge(Tensor other) => BinaryForward(BinaryOp.GreaterEqual, this, other);
    public Tensor Eq(Tensor other) => BinaryForward(BinaryOp.Equal, this, other);
    public Tensor Gt(float v) => Gt(Scalar(v, Device));

    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    public static Tensor operator -(Tensor a) => a.Neg();
    public static Tensor operator +(Tensor a, float s) => a.AddScalar(s);
    public static Tensor operator +(float s, Tensor a) => a.AddScalar(s);
    public static Tensor operator -(Tensor a, float s) => a.AddScalar(-s);
    public static Tensor operator -(float s, Tensor a) => a.Neg().AddScalar(s);
    public static Tensor operator *(Tensor a, float s) => a.MulScalar(s);
    public static Tensor operator *(float s, Tensor a) => a.MulScalar(s);
    public static Tensor operator /(Tensor a, float s) => a.MulScalar(1f / s);

    /// <summary>cond ≠ 0 ? a : b, broadcasting all three (as torch.where).</summary>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        var shape = ShapeUtil.Broadcast(ShapeUtil.Broadcast(cond.Shape, a.Shape, "where"), b.Shape, "where");
        Tensor c = cond.BroadcastTo(shape), ae = a.Detach().BroadcastTo(shape), be = b.Detach().BroadcastTo(shape);
        var y = Empty(shape, a.Device);
        a.Device.Where(c.Buf, ae.Buf, be.Buf, y.Buf, y.Numel);
        Tape.Record(y, "where", new[] { a, b }, [c], g =>
        {
            var zero = Zeros(shape, g.Device);
            return new[] { a.RequiresGrad ? Where(c, g, zero).SumTo(a.Shape) : null, b.RequiresGrad ? Where(c, zero, g).SumTo(b.Shape) : null };
        });
        return y;
    }

    // ---- unary -----------------------------------------------------------------------------------------------
    private Tensor UnaryOpRecorded(UnaryOp op, float alpha, string name)
    {
        RequireDType(DType.Float32);
        var y = Empty(Shape, Device);
        Device.Unary(op, Buf, y.Buf, Numel, alpha);
        var x = this;
        // The backward keeps only the side its derivative reads (a SiLU its input, a sigmoid its output, a scale
        // neither); the kernel is handed the kept buffer in place of the other, which it does not read.
        var reads = DerivativeReads(op);
        Tensor[] saved = reads switch { UnaryOperand.Input => [x], UnaryOperand.Output => [y], _ => [] };
        Tape.Record(y, name, new[] { this }, saved, g =>
        {
            var dx = Empty(x.Shape, x.Device);
            var kept = reads switch { UnaryOperand.Input => x.Buf, UnaryOperand.Output => y.Buf, _ => g.Buf };
            x.Device.UnaryBackward(op, kept, kept, g.Buf, dx.Buf, x.Numel, alpha);
            return new[] { dx };
        });
        return y;
    }

    private enum UnaryOperand { None, Input, Output }

    /// <summary>Which of x and y = f(x) the derivative of <paramref name="op"/> is computed from (the kernels'
    /// UnaryDerivative).</summary>
    private static UnaryOperand DerivativeReads(UnaryOp op) => op switch
    {
        UnaryOp.Neg or UnaryOp.Scale or UnaryOp.AddScalar or UnaryOp.Sign => UnaryOperand.None,
        UnaryOp.Exp or UnaryOp.Sqrt or UnaryOp.Rsqrt or UnaryOp.Sigmoid or UnaryOp.Tanh => UnaryOperand.Output,
        _ => UnaryOperand.Input,
    };

    public Tensor Neg() => UnaryOpRecorded(UnaryOp.Neg, 0, "neg");
    public Tensor Exp() => UnaryOpRecorded(UnaryOp.Exp, 0, "exp");
    public Tensor Log() => UnaryOpRecorded(UnaryOp.Log, 0, "log");
    public Tensor Sqrt() => UnaryOpRecorded(UnaryOp.Sqrt, 0, "sqrt");
    public Tensor Rsqrt() => UnaryOpRecorded(UnaryOp.Rsqrt, 0, "rsqrt");
    public Tensor Abs() => UnaryOpRecorded(UnaryOp.Abs, 0, "abs");
    /// <summary>sign(x) ∈ {−1, 0, 1}; zero gradient.</summary>
    public Tensor Sign() => UnaryOpRecorded(UnaryOp.Sign, 0, "sign");
    public Tensor Square() => UnaryOpRecorded(UnaryOp.Square, 0, "square");
    public Tensor Relu() => UnaryOpRecorded(UnaryOp.Relu, 0, "relu");
    public Tensor Sigmoid() => UnaryOpRecorded(UnaryOp.Sigmoid, 0, "sigmoid");
    public Tensor Tanh() => UnaryOpRecorded(UnaryOp.Tanh, 0, "tanh");
    public Tensor Silu() => UnaryOpRecorded(UnaryOp.Silu, 0, "silu");
    /// <summary>Exact (erf) GELU, as torch.nn.GELU().</summary>
    public Tensor Gelu() => UnaryOpRecorded(UnaryOp.Gelu, 0, "gelu");
    public Tensor LeakyRelu(float negativeSlope = 0.01f) => UnaryOpRecorded(UnaryOp.LeakyRelu, negativeSlope, "leaky_relu");
    public Tensor Softplus() => UnaryOpRecorded(UnaryOp.Softplus, 0, "softplus");
    public Tensor MulScalar(float s) => UnaryOpRecorded(UnaryOp.Scale, s, "mul_scalar");
    public Tensor AddScalar(float s) => UnaryOpRecorded(UnaryOp.AddScalar, s, "add_scalar");
    public Tensor Pow(float exponent) => UnaryOpRecorded(UnaryOp.PowScalar, exponent, "pow");
    /// <summary>max(x, min); gradient where x ≥ min (torch.clamp(min=)).</summary>
    public Tensor ClampMin(float min) => UnaryOpRecorded(UnaryOp.ClampMin, min, "clamp_min");
    public Tensor ClampMax(float max) => UnaryOpRecorded(UnaryOp.ClampMax, max, "clamp_max");
    public Tensor Clamp(float min, float max) => ClampMin(min).ClampMax(max);

    /// <summary>Straight-through estimator: forward value of <paramref name="value"/>, gradient of this
    /// (this + (value − this).detach()).</summary>
    public Tensor StraightThrough(Tensor value) => Add(value.Detach().Sub(Detach()));

    // ---- helpers used by backward functions (never recorded) -------------------------------------------------
    internal Tensor CloneNoGrad()
    {
        var t = Empty(Shape, Device, DType);
        Device.Copy(Buf, t.Buf, Numel);
        return t;
    }

    internal Tensor AddNoGrad(Tensor other)
    {
        using var _ = Tape.NoGrad();
        return BinaryForward(BinaryOp.Add, this, other);
    }
}
