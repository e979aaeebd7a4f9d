using System.Buffers.Binary;
using System.Globalization;
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

    /// <summary>The most dimensions an array may have (numpy's own limit).</summary>
    public const int MaxDimensions = 64;

    /// <summary>Reads one .npy array of exactly <paramref name="length"/> bytes (header and data): the data size
    /// the header declares must fill the rest, and is counted against <paramref name="budget"/> before it is
    /// allocated. Problems → <see cref="FormatProblem"/> naming <paramref name="where"/>.</summary>
    internal static NpyArray Read(Stream stream, long length, string where, LoadBudget budget)
    {
        var (type, shape, bytes) = CheckedHeader(stream, length, where);
        budget.Take(bytes, where);
        var data = new byte[bytes];
        try { stream.ReadExactly(data); }
        catch (EndOfStreamException) { throw new FormatProblem($"{where} is truncated (the data ends before {bytes:N0} bytes)"); }
        if (stream.ReadByte() >= 0) throw new FormatProblem($"{where} is longer than its zip entry declares");
        return new NpyArray(type, shape, data);
    }

    /// <summary>Reads one .npy array of exactly <paramref name="length"/> bytes under a fresh <see cref="LoadBudget"/>.</summary>
    /// <exception cref="InvalidDataException">The array is malformed (the message names <paramref name="where"/>).</exception>
    public static NpyArray Read(Stream stream, long length, string where)
    {
        try { return Read(stream, length, where, LoadBudget.Start()); }
        catch (FormatProblem e) { throw new InvalidDataException(e.Message); }
    }

    /// <summary>The dtype, shape and data size of a .npy array of <paramref name="length"/> bytes, checked to fill
    /// it; leaves <paramref name="stream"/> at the data (which callers may read in parts).</summary>
    /// <exception cref="InvalidDataException">The header is malformed (the message names <paramref name="where"/>).</exception>
    public static (NpyType Type, int[] Shape, long Bytes) ReadHeader(Stream stream, long length, string where)
    {
        try { return CheckedHeader(stream, length, where); }
        catch (FormatProblem e) { throw new InvalidDataException(e.Message); }
    }

    private static (NpyType Type, int[] Shape, long Bytes) CheckedHeader(Stream stream, long length, string where)
    {
        using var br = new BinaryReader(stream, Encoding.ASCII, leaveOpen: true);
        if (length < 10) throw new FormatProblem($"{where} is not a .npy array ({length} bytes)");
        var magic = br.ReadBytes(6);
        if (!magic.AsSpan().SequenceEqual(Magic)) throw new FormatProblem($"{where} is not a .npy array (bad magic)");
        byte major = br.ReadByte(); br.ReadByte();
        long headerLen = major == 1 ? br.ReadUInt16() : major is 2 or 3 ? br.ReadUInt32() : throw new FormatProblem($"{where}: unsupported .npy version {major}");
        long prefix = major == 1 ? 10 : 12;
        if (headerLen > 1 << 20 || headerLen > length - prefix) throw new FormatProblem($"{where}: .npy header of {headerLen:N0} bytes is implausible");
        string header = Encoding.Latin1.GetString(br.ReadBytes((int)headerLen));
        var descr = Regex.Match(header, @"'descr'\s*:\s*'([^']*)'");
        var fortran = Regex.Match(header, @"'fortran_order'\s*:\s*(True|False)");
        var shapeM = Regex.Match(header, @"'shape'\s*:\s*\(([^)]*)\)");
        if (!descr.Success || !fortran.Success || !shapeM.Success) throw new FormatProblem($"{where}: malformed .npy header (needs 'descr', 'fortran_order' and 'shape')");
        if (fortran.Groups[1].Value == "True") throw new FormatProblem($"{where}: Fortran-order arrays are not supported; save with np.ascontiguousarray");
        var type = descr.Groups[1].Value switch
        {
            "<f4" => NpyType.Float32,
            "<f8" => NpyType.Float64,
            "<i8" => NpyType.Int64,
            "<i4" => NpyType.Int32,
            "|b1" => NpyType.Bool,
            "|u1" => NpyType.UInt8,
            var d when d.StartsWith("|O") => throw new FormatProblem($"{where}: object arrays are not supported"),
            var d => throw new FormatProblem($"{where}: unsupported dtype '{Printable(d)}' (float32, float64, int64, int32, bool, uint8 are)"),
        };
        var dims = shapeM.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (dims.Length > MaxDimensions) throw new FormatProblem($"{where} has {dims.Length} dimensions; at most {MaxDimensions} are supported");
        // Python 2's numpy wrote long dimensions as "2L".
        var shape = dims.Select(d => int.TryParse(d.TrimEnd('L'), NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v
            : throw new FormatProblem($"{where}: shape ({Printable(shapeM.Groups[1].Value)}) holds '{Printable(d)}', not a dimension (0 to {int.MaxValue})")).ToArray();
        long count = 1;
        foreach (int d in shape)
            count = d == 0 || count <= long.MaxValue / 8 / d ? count * d : throw new FormatProblem($"{where}: shape ({shapeM.Groups[1].Value}) is too large");
        long bytes = count * NpyArray.ElementSize(type);
        long available = length - prefix - headerLen;
        if (bytes != available)
            throw new FormatProblem(bytes > available
                ? $"{where} is truncated: shape ({shapeM.Groups[1].Value}) of {type.ToString().ToLowerInvariant()} needs {bytes:N0} bytes, the entry has {available:N0}"
                : $"{where} has {available - bytes:N0} bytes after its data");
        if (bytes > Array.MaxLength) throw new FormatProblem($"{where} of {bytes:N0} bytes is too large");
        return (type, shape, bytes);
    }

    private static string Printable(string s) => new(s.Take(40).Select(c => char.IsControl(c) ? '?' : c).ToArray());

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

    /// <summary>All arrays of an .npz archive, keyed by name (without ".npy"). Each entry's declared size is
    /// checked against the file and the load's <see cref="LoadBudget"/> before it is read, and decompression stops
    /// at that size. Problems → <see cref="InvalidDataException"/> "path: array 'name' …".</summary>
    public static Dictionary<string, NpyArray> ReadNpz(string path) => ReadEntries(path, Read);

    /// <summary>The arrays of an .npz as <see cref="ReadNpz"/> checks them, from their headers alone (no data read).</summary>
    public static List<TensorListing> ListNpz(string path) =>
        ReadEntries(path, (stream, length, where, _) => CheckedHeader(stream, length, where))
            .Select(kv => new TensorListing(kv.Key, TensorRecord.DTypeOf(kv.Value.Type), kv.Value.Shape)).ToList();

    private static Dictionary<string, T> ReadEntries<T>(string path, Func<Stream, long, string, LoadBudget, T> read)
    {
        try
        {
            long fileLength = new FileInfo(path).Length;
            var budget = LoadBudget.Start();
            using var zip = ZipFile.OpenRead(path);
            var result = new Dictionary<string, T>(StringComparer.Ordinal);
            foreach (var entry in zip.Entries)
            {
                if (!entry.FullName.EndsWith(".npy", StringComparison.Ordinal)) continue;
                string name = entry.FullName[..^4], where = $"array '{Printable(name)}'";
                if (result.ContainsKey(name)) throw new FormatProblem($"{where} occurs twice");
                ZipEntries.CheckDeclaredSize(entry, fileLength, where);
                using var s = entry.Open();
                result[name] = read(s, entry.Length, where, budget);
            }
            return result;
        }
        catch (FormatProblem p) { throw new InvalidDataException($"{path}: {p.Message}", p); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path}: damaged or invalid zip archive", e); }
        catch (FileNotFoundException e) { throw new FileNotFoundException($"{path}: no such file", path, e); }
        catch (IOException e) { throw new InvalidDataException($"{path}: cannot read the zip archive (damaged or truncated)", e); }
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
