using System.IO.Compression;
using System.Text;
using System.Text.Json;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Interop;

/// <summary>Builds pickle bytes opcode by opcode (protocol 2 unless told otherwise), for hostile and malformed inputs.</summary>
internal sealed class PickleBytes
{
    private readonly List<byte> _bytes = new();

    public PickleBytes(byte protocol = 2) { _bytes.Add(0x80); _bytes.Add(protocol); }

    public PickleBytes Op(char opcode) { _bytes.Add((byte)opcode); return this; }
    public PickleBytes Op(byte opcode) { _bytes.Add(opcode); return this; }
    public PickleBytes Global(string module, string name) => Op('c').Raw(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));

    public PickleBytes Str(string s)
    {
        var utf8 = Encoding.UTF8.GetBytes(s);
        return Op('X').Raw(BitConverter.GetBytes(utf8.Length)).Raw(utf8);
    }

    public PickleBytes Int(long v) => v is >= 0 and < 256 ? Op('K').Raw(new[] { (byte)v })
        : v is >= int.MinValue and <= int.MaxValue ? Op('J').Raw(BitConverter.GetBytes((int)v))
        : Op(0x8a).Raw(new byte[] { 8 }).Raw(BitConverter.GetBytes(v));

    public PickleBytes Ints(params long[] values)
    {
        Op('(');
        foreach (var v in values) Int(v);
        return Op('t');
    }

    public PickleBytes Raw(byte[] bytes) { _bytes.AddRange(bytes); return this; }
    public byte[] Stop() { Op('.'); return _bytes.ToArray(); }

    /// <summary>A tensor as torch pickles it: _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict()).</summary>
    public PickleBytes Tensor(string storageType, string key, long numel, long offset, long[] size, long[] stride) =>
        Global("torch._utils", "_rebuild_tensor_v2").Op('(')
            .Op('(').Str("storage").Global("torch", storageType).Str(key).Str("cpu").Int(numel).Op('t').Op('Q')
            .Int(offset).Ints(size).Ints(stride).Op(0x89).Global("collections", "OrderedDict").Op(')').Op('R')
            .Op('t').Op('R');

    /// <summary>An OrderedDict state dict holding one float32 tensor.</summary>
    public static byte[] StateDict(string name, long numel, long offset, long[] size, long[] stride, string key = "0") =>
        new PickleBytes().Global("collections", "OrderedDict").Op(')').Op('R').Op('(')
            .Str(name).Tensor("FloatStorage", key, numel, offset, size, stride)
            .Op('u').Stop();
}

internal static class TorchFiles
{
    public static string FixtureDir => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "golden", "checkpoint_formats");

    /// <summary>Writes a torch-style zip: archive/data.pkl, archive/data/&lt;key&gt;, archive/version (stored, like torch).</summary>
    public static void WriteZip(string path, byte[] pickle, params (string Key, byte[] Data)[] storages)
    {
        using var fs = File.Create(path);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Create);
        void Add(string name, byte[] data)
        {
            using var s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
            s.Write(data);
        }
        Add("archive/data.pkl", pickle);
        foreach (var (key, data) in storages) Add($"archive/data/{key}", data);
        Add("archive/version", "3\n"u8.ToArray());
    }

    public static string TempFile(string name) => Path.Combine(TestContext.CurrentContext.WorkDirectory, "interop-tmp", name);

    public static string EnsureTempDir()
    {
        var dir = Path.Combine(TestContext.CurrentContext.WorkDirectory, "interop-tmp");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>The shared golden folder, when this machine has one: MASKBIT_GOLDEN_DIR, else
    /// <see cref="TestPaths.SharedGolden"/>.</summary>
    public static string? SharedGoldenDir() =>
        Environment.GetEnvironmentVariable("MASKBIT_GOLDEN_DIR") is { Length: > 0 } env && Directory.Exists(env)
            ? env
            : TestPaths.SharedGolden;

    /// <summary>A JSON value as the plain data <see cref="MaskBit.Models.Interop.StateDict.Metadata"/> uses
    /// (dicts compared by key, since Razorvine does not keep plain dict order).</summary>
    public static object? Plain(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out long l) ? (object)l : e.GetDouble(),
        JsonValueKind.Array => e.EnumerateArray().Select(Plain).ToList(),
        _ => e.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Name, Plain(p.Value))).ToList(),
    };

    public static object? Normalize(object? v) => v switch
    {
        IReadOnlyList<KeyValuePair<string, object?>> d => d.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => KeyValuePair.Create(kv.Key, Normalize(kv.Value))).ToList(),
        IReadOnlyList<object?> l => l.Select(Normalize).ToList(),
        _ => v,
    };
}
