using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Autograd;

/// <summary>
/// A dense row-major tensor: a contiguous view (offset, shape) on a device <see cref="Storage"/>. Reshape and
/// slicing along the first axis are views; everything else copies. Float32 is the compute type; Int32 tensors
/// carry indices; BFloat16 and Float16 tensors are 16-bit copies (<see cref="To(DType)"/>) that the autocast ops
/// (<see cref="Autocast"/>) read and checkpoints store. Ops that involve a tensor with <see cref="RequiresGrad"/> record a node on the tape (see
/// <see cref="Tape"/>).
/// </summary>
public sealed partial class Tensor : Nn.IStateValue
{
    public Storage Storage { get; }
    public long Offset { get; }
    public int[] Shape { get; }
    public long Numel { get; }

    /// <summary>True for leaves that want a gradient and for every result computed from one.</summary>
    public bool RequiresGrad { get; set; }
    /// <summary>Accumulated gradient of a leaf after <see cref="Backward"/>.</summary>
    public Tensor? Grad { get; set; }
    /// <summary>The op that produced this tensor (null for leaves and for results computed under no-grad).</summary>
    internal GradNode? Node { get; set; }
    /// <summary>Optional name (parameter name) used in error messages and profiles.</summary>
    public string? Name { get; set; }

    internal Tensor(Storage storage, long offset, int[] shape)
    {
        Storage = storage;
        Offset = offset;
        Shape = shape;
        Numel = ShapeUtil.Numel(shape);
        if (offset < 0 || offset + Numel > storage.Length)
            throw new ArgumentException($"view [{offset}, {offset + Numel}) lies outside a storage of {storage.Length} elements");
    }

    public IBackend Device => Storage.Backend;
    public DType DType => Storage.DType;
    public int Rank => Shape.Length;
    public bool IsLeaf => Node == null;
    public Buf Buf => new(Storage, Offset);
    public int Size(int dim) => Shape[ShapeUtil.Axis(dim, Rank)];
    public override string ToString() => $"Tensor{ShapeUtil.Format(Shape)} {DType} on {Device.Name}{(RequiresGrad ? " requires_grad" : "")}";

    // ---- creation -------------------------------------------------------------------------------------------
    public static Tensor Empty(int[] shape, IBackend? device = null, DType dtype = DType.Float32)
    {
        ShapeUtil.Validate(shape);
        var dev = device ?? MaskBit.Autograd.Device.Default;
        return Owned(dev.Allocate(ShapeUtil.Numel(shape), dtype, zero: false), shape);
    }

    public static Tensor Zeros(int[] shape, IBackend? device = null, DType dtype = DType.Float32)
    {
        ShapeUtil.Validate(shape);
        var dev = device ?? MaskBit.Autograd.Device.Default;
        return Owned(dev.Allocate(ShapeUtil.Numel(shape), dtype, zero: true), shape);
    }

    public static Tensor Zeros(params int[] shape) => Zeros(shape, null);

    /// <summary>A tensor over a fresh storage, registered with the open <see cref="TensorScope"/>.</summary>
    private static Tensor Owned(Storage storage, int[] shape)
    {
        TensorScope.Track(storage);
        return new Tensor(storage, 0, (int[])shape.Clone());
    }

    public static Tensor Full(int[] shape, float value, IBackend? device = null)
    {
        var t = Empty(shape, device);
        t.Device.Fill(t.Buf, t.Numel, value);
        return t;
    }

    public static Tensor Ones(params int[] shape) => Full(shape, 1f);
    public static Tensor Scalar(float value, IBackend? device = null) => Full(Array.Empty<int>(), value, device);

    public static Tensor FromArray(ReadOnlySpan<float> data, int[] shape, IBackend? device = null)
    {
        if (data.Length != ShapeUtil.Numel(shape))
            throw new ArgumentException($"{data.Length} values do not fill shape {ShapeUtil.Format(shape)}");
        var t = Empty(shape, device);
        t.Device.Upload(data, t.Buf);
        return t;
    }

    public static Tensor FromArray(float[] data, params int[] shape) => FromArray(data.AsSpan(), shape);

    /// <summary>A bfloat16 or float16 tensor from raw 16-bit patterns (as stored in checkpoints).</summary>
    public static Tensor FromHalfBits(ReadOnlySpan<ushort> bits, int[] shape, DType dtype, IBackend? device = null)
    {
        if (!dtype.Is16Bit()) throw new ArgumentException($"FromHalfBits needs bfloat16 or float16, got {dtype}");
        if (bits.Length != ShapeUtil.Numel(shape))
            throw new ArgumentException($"{bits.Length} values do not fill shape {ShapeUtil.Format(shape)}");
        var t = Empty(shape, device, dtype);
        t.Device.Upload(bits, t.Buf);
        return t;
    }

    public static Tensor FromInts(ReadOnlySpan<int> data, int[] shape, IBackend? device = null)
    {
        if (data.Length != ShapeUtil.Numel(shape))
            throw new ArgumentException($"{data.Length} values do not fill shape {ShapeUtil.Format(shape)}");
        var t = Empty(shape, device, DType.Int32);
        t.Device.Upload(data, t.Buf);
        return t;
    }

    public static Tensor FromInts(int[] data, params int[] shape) => FromInts(data.AsSpan(), shape);

    // ---- host access ----------------------------------------------------------------------------------------
    /// <summary>The values as float32 (16-bit tensors widen exactly).</summary>
    public float[] ToArray()
    {
        var a = new float[Numel];
        if (DType.Is16Bit()) { HalfConversion.Widen(ToHalfBits(), a, DType); return a; }
        RequireDType(DType.Float32);
        Device.Download(Buf, a);
        return a;
    }

    /// <summary>The raw bits of a bfloat16 or float16 tensor.</summary>
    public ushort[] ToHalfBits()
    {
        if (!DType.Is16Bit()) throw new InvalidOperationException($"expected a bfloat16 or float16 tensor, got {this}");
        var a = new ushort[Numel];
        Device.Download(Buf, a);
        return a;
    }

    public int[] ToIntArray()
    {
        RequireDType(DType.Int32);
        var a = new int[Numel];
        Device.Download(Buf, a);
        return a;
    }

    public float Item()
    {
        if (Numel != 1) throw new InvalidOperationException($"Item() needs one element, tensor has shape {ShapeUtil.Format(Shape)}");
        return ToArray()[0];
    }

    /// <summary>A copy of this tensor on another device (this tensor if it is already there).</summary>
    public Tensor To(IBackend device)
    {
        if (ReferenceEquals(device, Device)) return this;
        if (DType == DType.Int32) return FromInts(ToIntArray(), Shape, device);
        if (DType.Is16Bit()) return FromHalfBits(ToHalfBits(), Shape, DType, device);
        var t = FromArray(ToArray(), Shape, device);
        if (RequiresGrad) Tape.Record(t, "to_device", new[] { this }, [], g => new[] { g.To(Device) });
        return t;
    }

    /// <summary>A copy in another floating-point type (torch's <c>.to(dtype)</c>): to bfloat16/float16 rounds to nearest
    /// even (float16 overflows to ±∞), back to float32 is exact; this tensor itself when it already has that type.
    /// The gradient flows back converted to this tensor's type.</summary>
    public Tensor To(DType dtype)
    {
        if (dtype == DType) return this;
        if (dtype == DType.Int32 || DType == DType.Int32) throw new NotSupportedException($"to({dtype.TorchName()}) of {this}: only floating-point types convert");
        var t = Empty(Shape, Device, dtype);
        Device.Convert(Buf, t.Buf, Numel);
        var source = DType;
        if (RequiresGrad) Tape.Record(t, "to_dtype", new[] { this }, [], g => new[] { g.To(source) });
        return t;
    }

    internal void RequireDType(DType dtype)
    {
        if (DType != dtype) throw new InvalidOperationException($"expected a {dtype} tensor, got {this}");
    }

    // ---- autograd surface -----------------------------------------------------------------------------------
    /// <summary>Marks a leaf as wanting a gradient (returns this, like torch's requires_grad_()).</summary>
    public Tensor RequiresGrad_(bool requires = true)
    {
        if (!IsLeaf) throw new InvalidOperationException("requires_grad can only be changed on leaf tensors");
        RequiresGrad = requires;
        return this;
    }

    /// <summary>A view on the same storage that is cut off from the tape.</summary>
    public Tensor Detach() => new(Storage, Offset, Shape);

    /// <summary>Back-propagates from this tensor (a scalar unless <paramref name="gradient"/> is given) and
    /// accumulates into the <see cref="Grad"/> of every leaf that requires one.</summary>
    public void Backward(Tensor? gradient = null) => Tape.Backward(this, gradient);

    /// <summary>Sets <see cref="Grad"/> to null (as torch's zero_grad(set_to_none=True)) and hands its buffer back
    /// to the device's pool at once: a leaf owns its gradient, and left to the finaliser the buffer would be
    /// missing from the pool when the next step needs one of that size.</summary>
    public void ZeroGrad()
    {
        Grad?.Storage.Dispose();
        Grad = null;
    }

    /// <summary>The values of several scalar tensors of one device, read with a single download (each
    /// <see cref="Item"/> would wait for the device and copy on its own).</summary>
    public static float[] Items(IReadOnlyList<Tensor> scalars)
    {
        if (scalars.Count == 0) return [];
        foreach (var s in scalars)
            if (s.Numel != 1) throw new ArgumentException($"Items() needs one-element tensors, got {s}");
        using var _ = Tape.NoGrad();
        return Cat(scalars.Select(s => s.Reshape(1)).ToList(), 0).ToArray();
    }

    /// <summary>An independent contiguous copy that stays on the tape.</summary>
    public Tensor Clone()
    {
        var t = Empty(Shape, Device, DType);
        Device.Copy(Buf, t.Buf, Numel);
        if (RequiresGrad) Tape.Record(t, "clone", new[] { this }, [], g => new[] { g });
        return t;
    }

    // ---- in-place updates (optimizers, EMA, state-dict loading); never recorded ------------------------------
    /// <summary>Overwrites the values with those of <paramref name="src"/> (same shape), converted to this tensor's
    /// floating-point type as torch's copy_ does (a float32 checkpoint loads into 16-bit weights).</summary>
    public void CopyFrom_(Tensor src)
    {
        ShapeUtil.RequireSame(Shape, src.Shape, "copy_");
        if ((src.DType == DType.Int32) != (DType == DType.Int32)) throw new ArgumentException($"copy_: {src} into {this}");
        if (!ReferenceEquals(src.Device, Device)) src = src.To(Device);
        Device.Convert(src.Buf, Buf, Numel);
    }

    bool Nn.IStateValue.IsInteger => DType == DType.Int32;
    void Nn.IStateValue.CopyTo(Tensor target) => target.CopyFrom_(this);

    public void CopyFrom_(ReadOnlySpan<float> values)
    {
        if (values.Length != Numel) throw new ArgumentException($"{values.Length} values for a tensor of {Numel}");
        Device.Upload(values, Buf);
    }

    /// <summary>Overwrites the values of a bfloat16 or float16 tensor with raw 16-bit patterns of its type.</summary>
    public void CopyFromHalfBits_(ReadOnlySpan<ushort> bits)
    {
        if (!DType.Is16Bit()) throw new InvalidOperationException($"expected a bfloat16 or float16 tensor, got {this}");
        if (bits.Length != Numel) throw new ArgumentException($"{bits.Length} values for a tensor of {Numel}");
        Device.Upload(bits, Buf);
    }

    public void CopyFromInts_(ReadOnlySpan<int> values)
    {
        RequireDType(DType.Int32);
        if (values.Length != Numel) throw new ArgumentException($"{values.Length} values for a tensor of {Numel}");
        Device.Upload(values, Buf);
    }

    public void Fill_(float value) => Device.Fill(Buf, Numel, value);
    public void Mul_(float value) => Device.Unary(UnaryOp.Scale, Buf, Buf, Numel, value);
    /// <summary>this += alpha·other.</summary>
    public void Add_(Tensor other, float alpha = 1f)
    {
        ShapeUtil.RequireSame(Shape, other.Shape, "add_");
        var src = other;
        if (alpha != 1f) { src = Empty(Shape, Device); Device.Unary(UnaryOp.Scale, other.Buf, src.Buf, Numel, alpha); }
        Device.Binary(BinaryOp.Add, Buf, ShapeUtil.ContiguousStrides(Shape), src.Buf, ShapeUtil.ContiguousStrides(Shape), Buf, Shape);
    }
}
