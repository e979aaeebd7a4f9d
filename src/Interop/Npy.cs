using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace MaskBit.Models.Interop;

/// <summary>Element types of .npy arrays that MaskBit reads and writes.</summary>
public enum NpyType { Float32, Float64, Int64, Int32, Bool, UInt8 }

/// <summary>One numpy array: shape, element type and little-endian C-order bytes.</summary>
public sealed class NpyArray
{
    public NpyType Type { get; }
    public int[] Shape { get; }
    public byte[] Data { get; }
    public long Count { get; }

    public NpyArray(NpyType type, int[] shape, byte[] data)
    {
        Type = type; Shape = shape; Data = data;
        Count = shape.Aggregate(1L, (a, b) => a * b);
        if (data.Length != Count * ElementSize(type))
            throw new InvalidDataException($"npy: {data.Length} bytes do not hold {Count} {type} values");
    }

    public static int ElementSize(NpyType t) => t switch
    {
        NpyType.Float32 or NpyType.Int32 => 4,
        NpyType.Float64 or NpyType.Int64 => 8,
        _ => 1,
    };

    public static NpyArray FromFloats(float[] values, params int[] shape) => new(NpyType.Float32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
    public static NpyArray FromInt64(long[] values, params int[] shape) => new(NpyType.Int64, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    /// <summary>Values converted to float32 (from any numeric type).</summary>
    public float[] ToFloat32() => Type switch
    {
        NpyType.Float32 => MemoryMarshal.Cast<byte, float>(Data).ToArray(),
        _ => ToFloat64().Select(v => (float)v).ToArray(),
    };

    public double[] ToFloat64() => Type switch
    {
        NpyType.Float32 => MemoryMarshal.Cast<byte, float>(Data).ToArray().Select(v => (double)v).ToArray(),
        NpyType.Float64 => MemoryMarshal.Cast<byte, double>(Data).ToArray(),
        NpyType.Int64 => MemoryMarshal.Cast<byte, long>(Data).ToArray().Select(v => (double)v).ToArray(),
        NpyType.Int32 => MemoryMarshal.Cast<byte, int>(Data).ToArray().Select(v => (double)v).ToArray(),
        _ => Data.Select(v => (double)v).ToArray(),
    };

    public long[] ToInt64() => Type switch
    {
        NpyType.Int64 => MemoryMarshal.Cast<byte, long>(Data).ToArray(),
        NpyType.Int32 => MemoryMarshal.Cast<byte, int>(Data).ToArray().Select(v => (long)v).ToArray(),
        NpyType.Bool or NpyType.UInt8 => Data.Select(v => (long)v).ToArray(),
        _ => ToFloat64().Select(v => checked((long)v)).ToArray(),
    };

    public int[] ToInt32() => ToInt64().Select(v => checked((int)v)).ToArray();
}

/// <summary>Reader and writer of numpy's .npy and .npz formats (C order, little endian).</summary>
public static class Npy
{
    private static readonly byte[] Magic = { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y' };

    public static NpyArray Read(Stream stream, string where)
    {
        var (type, shape, bytes) = ReadHeader(stream, where);
        if (bytes > Array.MaxLength) throw new InvalidDataException($"{where}: array of {bytes} bytes is too large");
        // Check the claimed size against what is there before allocating it.
        if (stream.CanSeek && bytes > stream.Length - stream.Position)
            throw new InvalidDataException($"{where}: truncated (expected {bytes} bytes of data, {stream.Length - stream.Position} left)");
        var data = new byte[bytes];
        int read = stream.ReadAtLeast(data, data.Length, throwOnEndOfStream: false);
        if (read != bytes) throw new InvalidDataException($"{where}: truncated (expected {bytes} bytes of data, got {read})");
        return new NpyArray(type, shape, data);
    }

    /// <summary>Reads a .npy header and leaves <paramref name="stream"/> at the data: the element type, the shape
    /// and the data's size in bytes (which may exceed what one array holds; read it in parts).</summary>
    public static (NpyType Type, int[] Shape, long DataBytes) ReadHeader(Stream stream, string where)
    {
        using var br = new BinaryReader(stream, Encoding.ASCII, leaveOpen: true);
        var magic = br.ReadBytes(6);
        if (!magic.AsSpan().SequenceEqual(Magic)) throw new InvalidDataException($"{where}: not a .npy array (bad magic)");
        byte major = br.ReadByte(); br.ReadByte();
        int headerLen = major == 1 ? br.ReadUInt16() : major is 2 or 3 ? checked((int)br.ReadUInt32()) : throw new InvalidDataException($"{where}: unsupported .npy version {major}");
        if (headerLen > 1 << 20) throw new InvalidDataException($"{where}: .npy header of {headerLen} bytes is implausible");
        string header = Encoding.Latin1.GetString(br.ReadBytes(headerLen));
        var descr = Regex.Match(header, @"'descr'\s*:\s*'([^']*)'");
        var fortran = Regex.Match(header, @"'fortran_order'\s*:\s*(True|False)");
        var shapeM = Regex.Match(header, @"'shape'\s*:\s*\(([^)]*)\)");
        if (!descr.Success || !fortran.Success || !shapeM.Success) throw new InvalidDataException($"{where}: malformed .npy header {header.Trim()}");
        if (fortran.Groups[1].Value == "True") throw new InvalidDataException($"{where}: Fortran-order arrays are not supported; save with np.ascontiguousarray");
        var type = descr.Groups[1].Value switch
        {
            "<f4" => NpyType.Float32,
            "<f8" => NpyType.Float64,
            "<i8" => NpyType.Int64,
            "<i4" => NpyType.Int32,
            "|b1" => NpyType.Bool,
            "|u1" => NpyType.UInt8,
            var d when d.StartsWith("|O") => throw new InvalidDataException($"{where}: object arrays are not supported"),
            var d => throw new InvalidDataException($"{where}: unsupported dtype '{d}' (float32, float64, int64, int32, bool, uint8 are)"),
        };
        var shape = shapeM.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        if (shape.Any(d => d < 0)) throw new InvalidDataException($"{where}: negative dimension in shape ({shapeM.Groups[1].Value})");
        long count = shape.Aggregate(1L, (a, b) => a * b);
        return (type, shape, count * NpyArray.ElementSize(type));
    }

    public static void Write(Stream stream, NpyArray array)
    {
        string descr = array.Type switch
        {
            NpyType.Float32 => "<f4",
            NpyType.Float64 => "<f8",
            NpyType.Int64 => "<i8",
            NpyType.Int32 => "<i4",
            NpyType.Bool => "|b1",
            _ => "|u1",
        };
        string shape = array.Shape.Length == 1 ? $"({array.Shape[0]},)" : "(" + string.Join(", ", array.Shape) + ")";
        string header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        int total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
        stream.Write(Magic);
        stream.WriteByte(1); stream.WriteByte(0);
        Span<byte> len = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
        stream.Write(len);
        stream.Write(Encoding.ASCII.GetBytes(header));
        stream.Write(array.Data);
    }

    /// <summary>All arrays of an .npz archive, keyed by name (without ".npy").</summary>
    public static Dictionary<string, NpyArray> ReadNpz(string path)
    {
        try
        {
            using var zip = ZipFile.OpenRead(path);
            var result = new Dictionary<string, NpyArray>();
            foreach (var entry in zip.Entries)
            {
                if (!entry.FullName.EndsWith(".npy")) continue;
                using var s = entry.Open();
                using var ms = new MemoryStream();
                s.CopyTo(ms);
                ms.Position = 0;
                result[entry.FullName[..^4]] = Read(ms, $"{path}:{entry.FullName}");
            }
            return result;
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path)) { throw new InvalidDataException($"{path}: {e.Message}", e); }
    }

    public static void WriteNpz(string path, IEnumerable<KeyValuePair<string, NpyArray>> arrays)
    {
        string tmp = path + ".tmp";
        using (var fs = File.Create(tmp))
        using (var zip = new ZipArchive(fs, ZipArchiveMode.Create))
            foreach (var (name, arr) in arrays)
            {
                using var s = zip.CreateEntry(name + ".npy", CompressionLevel.NoCompression).Open();
                Write(s, arr);
            }
        File.Move(tmp, path, overwrite: true);
    }
}
