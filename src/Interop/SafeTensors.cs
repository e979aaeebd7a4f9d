using System.Buffers.Binary;
using System.Text.Json;

namespace MaskBit.Models.Interop;

/// <summary>
/// Reader and writer of the safetensors format: an 8-byte little-endian header length, a JSON header mapping each
/// tensor name to <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> (plus an optional string map
/// <c>__metadata__</c>), then the tensors' bytes. The reader checks the header size, that every tensor's byte
/// range matches its dtype and shape, lies inside the file, and that the ranges tile the data without overlaps
/// or holes. Problems → <see cref="CheckpointFormatException"/>.
/// </summary>
public static class SafeTensors
{
    /// <summary>The reference implementation's limit on the JSON header.</summary>
    public const long MaxHeaderBytes = 100_000_000;
    private const string MetadataKey = "__metadata__";
    private const int MaxDimensions = 64;
    private static readonly System.Text.UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    private static readonly Dictionary<string, TensorDType> DTypes = new(StringComparer.Ordinal)
    {
        ["F32"] = TensorDType.Float32, ["F16"] = TensorDType.Float16, ["BF16"] = TensorDType.BFloat16,
        ["F64"] = TensorDType.Float64, ["I64"] = TensorDType.Int64, ["I32"] = TensorDType.Int32,
        ["I16"] = TensorDType.Int16, ["I8"] = TensorDType.Int8, ["U8"] = TensorDType.UInt8, ["BOOL"] = TensorDType.Bool,
    };

    private static string Code(TensorDType t) => DTypes.First(kv => kv.Value == t).Key;

    /// <summary>True when the first bytes look like a safetensors header (length that fits the file, then '{').</summary>
    public static bool LooksLikeSafeTensors(ReadOnlySpan<byte> head, long fileLength)
    {
        if (head.Length < 9 || head[8] != (byte)'{') return false;
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(head);
        return n >= 2 && n <= (ulong)(fileLength - 8);
    }

    public static StateDict Load(string path) => Read(path, (fs, entries, metadata, dataStart, dataLength) =>
    {
        var budget = LoadBudget.Start();
        budget.Take(dataLength, $"the data of {entries.Count} tensors");
        var records = new List<TensorRecord>(entries.Count);
        foreach (var e in entries)
        {
            var bytes = new byte[e.End - e.Begin];
            fs.Position = dataStart + e.Begin;
            fs.ReadExactly(bytes);
            records.Add(new TensorRecord(e.Name, e.DType, e.Shape, bytes));
        }
        return new StateDict(path, "safetensors", records, metadata);
    });

    /// <summary>The file's state dict with each tensor's bytes read from the file when used (<see cref="TensorRecord.Data"/>):
    /// a loader that copies tensor by tensor holds one tensor's bytes at a time, not the file's.</summary>
    public static StateDict Open(string path) => Read(path, (_, entries, metadata, _, _) =>
        new StateDict(path, "safetensors", entries.Select(e => new TensorRecord(e.Name, e.DType, e.Shape,
            () => Read(path, (fs, _, _, start, _) =>
            {
                LoadBudget.Start().Take(e.End - e.Begin, $"tensor '{e.Name}'");
                var bytes = new byte[e.End - e.Begin];
                fs.Position = start + e.Begin;
                fs.ReadExactly(bytes);
                return bytes;
            }))), metadata));

    /// <summary>The tensors (names, dtypes, shapes) and metadata from the header alone; no tensor bytes are read.</summary>
    public static CheckpointListing List(string path) => Read(path, (_, entries, metadata, _, _) =>
        new CheckpointListing(path, "safetensors", entries.Select(e => new TensorListing(e.Name, e.DType, e.Shape)).ToList(), metadata));

    private static T Read<T>(string path, Func<FileStream, List<Entry>, List<KeyValuePair<string, object?>>, long, long, T> read)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            long fileLength = fs.Length;
            if (fileLength < 8) throw new FormatProblem($"file of {fileLength} bytes is too short for a safetensors header");
            Span<byte> lengthBytes = stackalloc byte[8];
            fs.ReadExactly(lengthBytes);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (headerLength > MaxHeaderBytes) throw new FormatProblem($"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
            if ((long)headerLength > fileLength - 8) throw new FormatProblem($"header length {headerLength} exceeds the file ({fileLength} bytes)");
            var header = new byte[headerLength];
            fs.ReadExactly(header);
            long dataStart = 8 + (long)headerLength, dataLength = fileLength - dataStart;
            var (entries, metadata) = ParseHeader(header, dataLength);
            return read(fs, entries, metadata, dataStart, dataLength);
        }
        catch (FormatProblem p) { throw new CheckpointFormatException(path, p.Message, p); }
        catch (EndOfStreamException e) { throw new CheckpointFormatException(path, "file is truncated", e); }
        catch (IOException e) { throw new CheckpointFormatException(path, e is FileNotFoundException or DirectoryNotFoundException ? "no such file" : "cannot read the file", e); }
        catch (UnauthorizedAccessException e) { throw new CheckpointFormatException(path, "permission denied", e); }
    }

    private sealed record Entry(string Name, TensorDType DType, int[] Shape, long Begin, long End);

    private static (List<Entry>, List<KeyValuePair<string, object?>>) ParseHeader(byte[] header, long dataLength)
    {
        // System.Text.Json checks names and strings for valid UTF-8 only when they are read; the strict decoder
        // refuses a bad header up front, naming the byte.
        try { StrictUtf8.GetCharCount(header); }
        catch (System.Text.DecoderFallbackException e) { throw new FormatProblem($"header is not valid UTF-8 (at byte {8 + e.Index})"); }
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e) { throw new FormatProblem($"header is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1} of the line)"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new FormatProblem("header is not a JSON object");

        var entries = new List<Entry>();
        var metadata = new List<KeyValuePair<string, object?>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (!seen.Add(prop.Name)) throw new FormatProblem($"header names '{prop.Name}' twice");
            if (prop.Name == MetadataKey)
            {
                if (prop.Value.ValueKind != JsonValueKind.Object) throw new FormatProblem("__metadata__ is not an object");
                foreach (var m in prop.Value.EnumerateObject())
                    metadata.Add(KeyValuePair.Create(m.Name, (object?)(m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()
                        : throw new FormatProblem($"__metadata__ value '{m.Name}' is not a string"))));
                continue;
            }
            entries.Add(ParseEntry(prop.Name, prop.Value, dataLength));
        }

        // The byte ranges must tile the data section exactly, as the reference implementation requires.
        long expected = 0;
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin < expected) throw new FormatProblem($"tensor '{e.Name}' overlaps another tensor's bytes (offset {e.Begin} < {expected})");
            if (e.Begin > expected) throw new FormatProblem($"bytes {expected}..{e.Begin} of the data belong to no tensor");
            expected = e.End;
        }
        if (expected != dataLength) throw new FormatProblem($"data section has {dataLength} bytes but the tensors cover {expected}");
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        return (entries, metadata);
    }

    private static Entry ParseEntry(string name, JsonElement e, long dataLength)
    {
        string where = $"tensor '{(name.Length > 80 ? name[..80] + "…" : name)}'";
        if (e.ValueKind != JsonValueKind.Object) throw new FormatProblem($"{where}: header entry is not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String || !DTypes.TryGetValue(dt.GetString()!, out var dtype))
            throw new FormatProblem($"{where}: missing or unsupported dtype (supported: {string.Join(", ", DTypes.Keys)})");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new FormatProblem($"{where}: missing shape");
        if (sh.GetArrayLength() > MaxDimensions) throw new FormatProblem($"{where} has {sh.GetArrayLength()} dimensions; at most {MaxDimensions} are supported");
        var shape = sh.EnumerateArray().Select(d => d.ValueKind == JsonValueKind.Number && d.TryGetInt32(out int v) && v >= 0 ? v
            : throw new FormatProblem($"{where}: shape entries must be non-negative integers")).ToArray();
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2
            || off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end))
            throw new FormatProblem($"{where}: data_offsets must be [begin, end]");
        if (begin < 0 || end < begin || end > dataLength)
            throw new FormatProblem($"{where}: data_offsets [{begin}, {end}] lie outside the {dataLength}-byte data section");
        long count = 1;
        foreach (int d in shape) count = count > 0 && d > long.MaxValue / count ? throw new FormatProblem($"{where}: shape is too large") : count * d;
        if (count > (end - begin) / dtype.Size() + 1 || count * dtype.Size() != end - begin)
            throw new FormatProblem($"{where}: {end - begin} bytes do not hold shape [{string.Join(", ", shape)}] of {Code(dtype)}");
        return new Entry(name, dtype, shape, begin, end);
    }

    /// <summary>Writes the tensors (in the given order) and optional string metadata; the file is written to a
    /// temporary name beside the target and renamed, so a crash never leaves a half-written file.</summary>
    public static void Save(string path, IEnumerable<TensorRecord> tensors, IEnumerable<KeyValuePair<string, string>>? metadata = null)
    {
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal) { MetadataKey };
        foreach (var t in list)
            if (!names.Add(t.Name)) throw new ArgumentException(t.Name == MetadataKey ? $"'{MetadataKey}' is reserved" : $"tensor name '{t.Name}' occurs twice");

        var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            if (metadata != null)
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in list)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", Code(t.DType));
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset += t.ByteCount);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        int pad = (int)((8 - json.Length % 8) % 8);
        for (int i = 0; i < pad; i++) json.WriteByte((byte)' ');

        string full = Path.GetFullPath(path);
        string tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)json.Length);
                fs.Write(len);
                json.Position = 0;
                json.CopyTo(fs);
                foreach (var t in list) fs.Write(t.Data);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static void Save(string path, StateDict stateDict) =>
        Save(path, stateDict, stateDict.Metadata.Select(kv => KeyValuePair.Create(kv.Key, kv.Value as string ?? StateDict.FormatValue(kv.Value))));
}
