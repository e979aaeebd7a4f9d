using System.Formats.Tar;
using System.Globalization;
using System.Text;

namespace MaskBit.Models.Data;

/// <summary>
/// Writes webdataset tar shards the way the reference's create_sharded_dataset.py does with webdataset's
/// ShardWriter, so that its loader (and <see cref="WebDatasetShards"/>) reads them: one sample is the members
/// <c>KEY.cls</c> (the class id as ASCII digits) and <c>KEY.jpg</c> (or <c>.png</c>: the image file's bytes as they
/// are), in webdataset's sorted member order; a new shard starts once the current one holds
/// <see cref="MaxCount"/> samples or <see cref="MaxSize"/> bytes. Shards are named <c>NAME-000000.tar</c>,
/// <c>NAME-000001.tar</c>, … (<see cref="Digits"/> wide) and each appears under its name only when complete (written as .tmp, then renamed).
/// </summary>
public sealed class WebDatasetWriter : IDisposable
{
    /// <summary>create_sharded_dataset.py's defaults (--maxcount 5079, --maxsize 1e9).</summary>
    public const int ReferenceMaxCount = 5079;
    public const long ReferenceMaxSize = 1_000_000_000;

    private readonly List<string> _shards = new();
    private FileStream? _stream;
    private TarWriter? _tar;
    private int _count;

    public string Folder { get; }
    public string Name { get; }
    public int MaxCount { get; }
    public long MaxSize { get; }
    public IReadOnlyList<string> Shards => _shards;
    public long Samples { get; private set; }

    /// <summary>Zero-padded width of the shard index (create_sharded_dataset.py's %04d is 4).</summary>
    public int Digits { get; }

    private string IndexFormat => "D" + Digits.ToString(CultureInfo.InvariantCulture);

    public WebDatasetWriter(string folder, string name, int maxCount = ReferenceMaxCount, long maxSize = ReferenceMaxSize, int digits = 6)
    {
        if (digits is < 1 or > 12) throw new ArgumentOutOfRangeException(nameof(digits), digits, "1 to 12 digits");
        Digits = digits;
        if (maxCount < 1) throw new ArgumentOutOfRangeException(nameof(maxCount), maxCount, "at least one sample per shard");
        if (maxSize < 1) throw new ArgumentOutOfRangeException(nameof(maxSize), maxSize, "at least one byte per shard");
        if (name.Length == 0 || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0) throw new ArgumentException($"'{name}' is not a file name prefix");
        Folder = folder;
        Name = name;
        MaxCount = maxCount;
        MaxSize = maxSize;
        Directory.CreateDirectory(folder);
    }

    /// <summary>The brace pattern of the shards written (e.g. <c>out/train-{000000..000012}.tar</c>), for
    /// dataset.params.train_shards_path_or_url.</summary>
    public string Pattern => _shards.Count switch
    {
        0 => throw new InvalidOperationException("no shards written"),
        1 => _shards[0],
        _ => Path.Combine(Folder, $"{Name}-{{{0.ToString(IndexFormat, CultureInfo.InvariantCulture)}..{(_shards.Count - 1).ToString(IndexFormat, CultureInfo.InvariantCulture)}}}.tar"),
    };

    /// <summary>Appends a sample: <paramref name="imageExtension"/> is the member's extension (jpg, jpeg or png).</summary>
    public void Write(string key, int label, string imageExtension, byte[] image)
    {
        if (key.Length == 0 || key.Contains('.')) throw new ArgumentException($"sample key '{key}' must be non-empty and without dots (webdataset splits names at the first dot)");
        if (imageExtension is not ("jpg" or "jpeg" or "png")) throw new ArgumentException($"image extension '{imageExtension}' is not jpg, jpeg or png");
        if (_tar == null || _count >= MaxCount || _stream!.Length >= MaxSize) NextShard();
        // webdataset writes a sample's members in sorted key order: "cls" before "jpg" / "png".
        AddMember($"{key}.cls", Encoding.ASCII.GetBytes(label.ToString(CultureInfo.InvariantCulture)));
        AddMember($"{key}.{imageExtension}", image);
        _count++;
        Samples++;
    }

    private void AddMember(string name, byte[] data)
    {
        var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data, writable: false), Mode = UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead };
        _tar!.WriteEntry(entry);
    }

    private string ShardPath(int index) => Path.Combine(Folder, $"{Name}-{index.ToString(IndexFormat, CultureInfo.InvariantCulture)}.tar");

    private void NextShard()
    {
        CloseShard();
        string path = ShardPath(_shards.Count);
        _stream = new FileStream(path + ".tmp", FileMode.Create, FileAccess.Write);
        _tar = new TarWriter(_stream, TarEntryFormat.Pax, leaveOpen: true);
        _shards.Add(path);
        _count = 0;
    }

    private void CloseShard()
    {
        if (_tar == null) return;
        _tar.Dispose();
        _stream!.Dispose();
        File.Move(_shards[^1] + ".tmp", _shards[^1], overwrite: true);
        _tar = null;
        _stream = null;
    }

    /// <summary>Finishes the last shard.</summary>
    public void Dispose() => CloseShard();
}
