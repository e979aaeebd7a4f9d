using System.Collections;
using System.Runtime.InteropServices;
using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Models.Interop;

/// <summary>Element types a checkpoint tensor can have on disk (torch names in <see cref="TensorDTypes.Name"/>).</summary>
public enum TensorDType { Float32, Float16, BFloat16, Float64, Int64, Int32, Int16, Int8, UInt8, Bool }

public static class TensorDTypes
{
    public static int Size(this TensorDType t) => t switch
    {
        TensorDType.Float64 or TensorDType.Int64 => 8,
        TensorDType.Float32 or TensorDType.Int32 => 4,
        TensorDType.Float16 or TensorDType.BFloat16 or TensorDType.Int16 => 2,
        _ => 1,
    };

    /// <summary>The torch spelling: float32, float16, bfloat16, int64, bool, ...</summary>
    public static string Name(this TensorDType t) => t.ToString().ToLowerInvariant();

    public static bool IsFloatingPoint(this TensorDType t) =>
        t is TensorDType.Float32 or TensorDType.Float16 or TensorDType.BFloat16 or TensorDType.Float64;
}

/// <summary>Where a torch tensor's values came from: the storage it views and how (for inspection and for
/// checking that shared storages stay shared).</summary>
public sealed record StorageOrigin(string StorageKey, long StorageOffset, long[] Stride, long StorageNumel, bool IsParameter);

/// <summary>One named tensor of a checkpoint: its on-disk dtype, shape and the contiguous (C order)
/// little-endian bytes of its values. As a state-dict value (<see cref="IStateValue"/>) it converts straight into
/// a module's tensor of any floating-point type.</summary>
public sealed class TensorRecord : IStateValue
{
    public string Name { get; }
    public TensorDType DType { get; }
    public int[] Shape { get; }
    public long Count { get; }
    private readonly byte[]? _data;
    private readonly Func<byte[]>? _read;
    /// <summary>Contiguous little-endian values, <see cref="Count"/> × element size bytes. Do not modify. A record of
    /// an opened file (<see cref="CheckpointFile.Open"/>) reads them from the file at each access and keeps nothing:
    /// read them once and let them go.</summary>
    public byte[] Data => _data ?? Checked(_read!());
    /// <summary>Storage provenance for torch checkpoints; null for safetensors and npz.</summary>
    public StorageOrigin? Origin { get; }

    public TensorRecord(string name, TensorDType dtype, int[] shape, byte[] data, StorageOrigin? origin = null)
        : this(name, dtype, shape, origin)
    {
        _data = Checked(data);
    }

    /// <summary>A record whose bytes <paramref name="read"/> gives when they are used (a tensor of an opened file).</summary>
    internal TensorRecord(string name, TensorDType dtype, int[] shape, Func<byte[]> read, StorageOrigin? origin = null)
        : this(name, dtype, shape, origin)
    {
        _read = read;
    }

    private TensorRecord(string name, TensorDType dtype, int[] shape, StorageOrigin? origin)
    {
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"tensor '{name}': negative dimension in shape [{string.Join(", ", shape)}]");
            count = checked(count * d);
        }
        Name = name; DType = dtype; Shape = shape; Count = count; Origin = origin;
    }

    private byte[] Checked(byte[] data) => data.LongLength == Count * DType.Size() ? data
        : throw new ArgumentException($"tensor '{Name}': {data.LongLength} bytes do not hold {Count} {DType.Name()} values");

    public long ByteCount => Count * DType.Size();

    public override string ToString() => $"{Name}: {DType.Name()} [{string.Join(", ", Shape)}]";

    public static TensorRecord FromFloats(string name, float[] values, params int[] shape) =>
        new(name, TensorDType.Float32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    /// <summary>A tensor's values in its own type (float32, bfloat16, float16, or int32 for integer buffers such as
    /// BatchNorm's counters).</summary>
    public static TensorRecord FromTensor(string name, Tensor tensor) => tensor.DType switch
    {
        Kernels.DType.Int32 => new TensorRecord(name, TensorDType.Int32, tensor.Shape, MemoryMarshal.AsBytes(tensor.ToIntArray().AsSpan()).ToArray()),
        Kernels.DType.BFloat16 or Kernels.DType.Float16 => new TensorRecord(name, tensor.DType == Kernels.DType.BFloat16 ? TensorDType.BFloat16 : TensorDType.Float16,
            tensor.Shape, MemoryMarshal.AsBytes(tensor.ToHalfBits().AsSpan()).ToArray()),
        _ => FromFloats(name, tensor.ToArray(), tensor.Shape),
    };

    /// <summary>This record stored as <paramref name="dtype"/> (float32, float16 or bfloat16; torch's <c>.to(dtype)</c>
    /// rounding, float16 overflowing to ±∞); integer and bool records, and records already of that type, stay as they are.</summary>
    public TensorRecord To(TensorDType dtype)
    {
        if (dtype is not (TensorDType.Float32 or TensorDType.Float16 or TensorDType.BFloat16))
            throw new ArgumentException($"tensor '{Name}': cannot store as {dtype.Name()} (float32, float16 or bfloat16)");
        if (!DType.IsFloatingPoint() || DType == dtype) return this;
        var data = Data;
        if (dtype == TensorDType.Float32) return new TensorRecord(Name, dtype, Shape, MemoryMarshal.AsBytes(Floats(data).AsSpan()).ToArray());
        var bits = new ushort[Count];
        NarrowInto(data, bits, dtype == TensorDType.BFloat16 ? Kernels.DType.BFloat16 : Kernels.DType.Float16);
        return new TensorRecord(Name, dtype, Shape, MemoryMarshal.AsBytes(bits.AsSpan()).ToArray());
    }

    /// <summary>Rounds floating-point <paramref name="data"/> of this record's type to 16 bits: float32 straight from
    /// the bytes, the other types through float32.</summary>
    private void NarrowInto(byte[] data, Span<ushort> bits, DType dtype)
    {
        if (DType == TensorDType.Float32) HalfConversion.Narrow(MemoryMarshal.Cast<byte, float>(data.AsSpan()), bits, dtype);
        else HalfConversion.Narrow(Floats(data), bits, dtype);
    }

    bool IStateValue.IsInteger => !DType.IsFloatingPoint();

    /// <summary>Writes the values into <paramref name="target"/> in its type, reading this record's bytes once and
    /// holding no float32 copy where none is needed: 16-bit values go into a tensor of their type as they are,
    /// float32 values into a 16-bit tensor round once, float32 into float32 is a plain copy.</summary>
    public void CopyTo(Tensor target)
    {
        if (!Shape.AsSpan().SequenceEqual(target.Shape))
            throw new ArgumentException($"tensor '{Name}' {ShapeUtil.Format(Shape)} does not fit {ShapeUtil.Format(target.Shape)}");
        if (!DType.IsFloatingPoint() || target.DType == Kernels.DType.Int32) { target.CopyFrom_(ToTensor(target.Device)); return; }
        var data = Data;
        if (target.DType.Is16Bit())
        {
            if (DType == (target.DType == Kernels.DType.BFloat16 ? TensorDType.BFloat16 : TensorDType.Float16))
            {
                target.CopyFromHalfBits_(MemoryMarshal.Cast<byte, ushort>(data.AsSpan()));
                return;
            }
            var bits = new ushort[Count];
            NarrowInto(data, bits, target.DType);
            target.CopyFromHalfBits_(bits);
            return;
        }
        if (DType == TensorDType.Float32) target.CopyFrom_(MemoryMarshal.Cast<byte, float>(data.AsSpan()));
        else target.CopyFrom_(Floats(data));
    }

    public static TensorRecord FromInt64(string name, long[] values, params int[] shape) =>
        new(name, TensorDType.Int64, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    /// <summary>Values as float32: float16 and bfloat16 widen exactly, float64 rounds to nearest, integers convert.</summary>
    public float[] ToFloat32() => Floats(Data);

    private float[] Floats(byte[] data)
    {
        var src = data.AsSpan();
        var result = new float[Count];
        switch (DType)
        {
            case TensorDType.Float32: MemoryMarshal.Cast<byte, float>(src).CopyTo(result); break;
            case TensorDType.Float16: HalfConversion.Widen(MemoryMarshal.Cast<byte, ushort>(src), result, Kernels.DType.Float16); break;
            case TensorDType.BFloat16: HalfConversion.Widen(MemoryMarshal.Cast<byte, ushort>(src), result, Kernels.DType.BFloat16); break;
            case TensorDType.Float64:
                var doubles = MemoryMarshal.Cast<byte, double>(src);
                for (int i = 0; i < result.Length; i++) result[i] = (float)doubles[i];
                break;
            default:
                var ints = Int64s(data);
                for (int i = 0; i < result.Length; i++) result[i] = ints[i];
                break;
        }
        return result;
    }

    /// <summary>Values of an integer or bool tensor as int64.</summary>
    public long[] ToInt64() => Int64s(Data);

    private long[] Int64s(byte[] data)
    {
        var src = data.AsSpan();
        var result = new long[Count];
        switch (DType)
        {
            case TensorDType.Int64: MemoryMarshal.Cast<byte, long>(src).CopyTo(result); break;
            case TensorDType.Int32: { var s = MemoryMarshal.Cast<byte, int>(src); for (int i = 0; i < result.Length; i++) result[i] = s[i]; break; }
            case TensorDType.Int16: { var s = MemoryMarshal.Cast<byte, short>(src); for (int i = 0; i < result.Length; i++) result[i] = s[i]; break; }
            case TensorDType.Int8: for (int i = 0; i < result.Length; i++) result[i] = (sbyte)src[i]; break;
            case TensorDType.UInt8: for (int i = 0; i < result.Length; i++) result[i] = src[i]; break;
            case TensorDType.Bool: for (int i = 0; i < result.Length; i++) result[i] = src[i] != 0 ? 1 : 0; break;
            default: throw new InvalidOperationException($"tensor '{Name}' is {DType.Name()}, not an integer tensor");
        }
        return result;
    }

    /// <summary>An engine tensor: floating types become Float32, integer and bool types Int32 (every value must fit).</summary>
    public Tensor ToTensor(IBackend? device = null)
    {
        if (DType.IsFloatingPoint()) return Tensor.FromArray(ToFloat32(), Shape, device);
        var wide = ToInt64();
        var narrow = new int[wide.Length];
        for (int i = 0; i < wide.Length; i++)
        {
            if (wide[i] is < int.MinValue or > int.MaxValue)
                throw new OverflowException($"tensor '{Name}' ({DType.Name()}) holds {wide[i]} at flat index {i}, which does not fit the engine's Int32 tensors");
            narrow[i] = (int)wide[i];
        }
        return Tensor.FromInts(narrow, Shape, device);
    }

    /// <summary>A numpy array of the same values; float16/bfloat16 widen to float32 and int16/int8 to int32 (numpy
    /// types MaskBit's .npy code does not carry).</summary>
    public NpyArray ToNpy() => DType switch
    {
        TensorDType.Float32 => new(NpyType.Float32, Shape, Data),
        TensorDType.Float64 => new(NpyType.Float64, Shape, Data),
        TensorDType.Int64 => new(NpyType.Int64, Shape, Data),
        TensorDType.Int32 => new(NpyType.Int32, Shape, Data),
        TensorDType.Bool => new(NpyType.Bool, Shape, Data),
        TensorDType.UInt8 => new(NpyType.UInt8, Shape, Data),
        TensorDType.Float16 or TensorDType.BFloat16 => NpyArray.FromFloats(ToFloat32(), Shape),
        _ => new(NpyType.Int32, Shape, MemoryMarshal.AsBytes(ToInt64().Select(v => (int)v).ToArray().AsSpan()).ToArray()),
    };

    public static TensorRecord FromNpy(string name, NpyArray array) => new(name, DTypeOf(array.Type), array.Shape, array.Data);

    public static TensorDType DTypeOf(NpyType type) => type switch
    {
        NpyType.Float32 => TensorDType.Float32,
        NpyType.Float64 => TensorDType.Float64,
        NpyType.Int64 => TensorDType.Int64,
        NpyType.Int32 => TensorDType.Int32,
        NpyType.Bool => TensorDType.Bool,
        _ => TensorDType.UInt8,
    };
}

/// <summary>The shape of a tensor met outside the state dict (e.g. optimizer state in a checkpoint's extras);
/// its values are not read.</summary>
public sealed record TensorSummary(TensorDType DType, long[] Shape)
{
    public override string ToString() => $"tensor({DType.Name()}, [{string.Join(", ", Shape)}])";
}

/// <summary>The tensors of a checkpoint in file order, plus the checkpoint's other top-level entries
/// (step, epoch, config, ...) as plain values: null, bool, long, double, string, BigInteger, byte[],
/// <see cref="TensorSummary"/>, lists (<c>IReadOnlyList&lt;object?&gt;</c>) and dicts
/// (<c>IReadOnlyList&lt;KeyValuePair&lt;string, object?&gt;&gt;</c>).</summary>
public sealed class StateDict : IReadOnlyList<TensorRecord>
{
    private readonly List<TensorRecord> _tensors;
    private readonly Dictionary<string, TensorRecord> _byName;

    public string Source { get; }
    /// <summary>Human-readable container format, e.g. "torch zip (model/data.pkl)", "safetensors".</summary>
    public string Format { get; }
    public IReadOnlyList<KeyValuePair<string, object?>> Metadata { get; }

    public StateDict(string source, string format, IEnumerable<TensorRecord> tensors, IReadOnlyList<KeyValuePair<string, object?>>? metadata = null)
    {
        Source = source; Format = format;
        _tensors = tensors.ToList();
        _byName = new Dictionary<string, TensorRecord>(StringComparer.Ordinal);
        foreach (var t in _tensors)
            if (!_byName.TryAdd(t.Name, t)) throw new CheckpointFormatException(source, $"tensor name '{t.Name}' occurs twice");
        Metadata = metadata ?? Array.Empty<KeyValuePair<string, object?>>();
    }

    public int Count => _tensors.Count;
    public TensorRecord this[int index] => _tensors[index];
    public TensorRecord this[string name] =>
        _byName.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"{Source} has no tensor '{name}'");
    public bool TryGet(string name, out TensorRecord tensor) => _byName.TryGetValue(name, out tensor!);
    public IEnumerable<string> Names => _tensors.Select(t => t.Name);

    /// <summary>Total number of elements over all tensors.</summary>
    public long ParameterCount => _tensors.Sum(t => t.Count);
    public long ByteCount => _tensors.Sum(t => t.ByteCount);

    /// <summary>Engine tensors by name, in file order (see <see cref="TensorRecord.ToTensor"/>).</summary>
    public List<KeyValuePair<string, Tensor>> ToTensors(IBackend? device = null) =>
        _tensors.Select(t => KeyValuePair.Create(t.Name, t.ToTensor(device))).ToList();

    public IEnumerator<TensorRecord> GetEnumerator() => _tensors.GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>A metadata value written the way Python prints it: <c>{'name': 'tiny', 'splits': [1, 2]}</c>.</summary>
    public static string FormatValue(object? value) => value switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        string s => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'") + "'",
        double d => double.IsFinite(d) && d == Math.Floor(d) && Math.Abs(d) < 1e16 ? d.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) : d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        byte[] bytes => $"<{bytes.Length} bytes>",
        IReadOnlyList<KeyValuePair<string, object?>> dict => "{" + string.Join(", ", dict.Select(kv => $"{FormatValue(kv.Key)}: {FormatValue(kv.Value)}")) + "}",
        IReadOnlyList<object?> list => "[" + string.Join(", ", list.Select(FormatValue)) + "]",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
