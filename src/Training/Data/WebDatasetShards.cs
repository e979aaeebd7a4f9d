using System.Formats.Tar;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;

namespace MaskBit.Models.Data;

/// <summary>
/// Samples stored in webdataset tar shards, as the reference's create_sharded_dataset.py writes them: consecutive
/// tar entries that share a key (the entry path up to the first dot of its file name) form one sample; its
/// image is the .jpg, .jpeg or .png entry and its label the .cls entry (an ASCII integer). Patterns expand
/// brace ranges and lists (<c>train-{0000..0252}.tar</c>, <c>{a,b}.tar</c>).
/// <para>
/// Opening the dataset streams through every shard once with <see cref="TarReader"/>, reading headers and the
/// small .cls payloads and skipping over image data; it records where each image's bytes lie, so later reads
/// fetch exactly those bytes. Nothing is extracted to disk. A sample without an image or label, or with an
/// undecodable image, raises <see cref="InvalidDataException"/> from <see cref="Load"/> (the loader skips it);
/// a missing or malformed shard fails at construction.
/// </para>
/// </summary>
public sealed class WebDatasetShards : IImageDataset, IDisposable
{
    private static readonly string[] ImageExtensions = { "jpg", "jpeg", "png" };

    private readonly record struct Entry(int Shard, string Key, string? ImageExtension, long ImageOffset, long ImageLength, string? ClassText);

    private readonly Entry[] _entries;
    private readonly SafeFileHandle?[] _handles;
    private readonly object _openLock = new();
    private bool _disposed;

    public IReadOnlyList<string> Shards { get; }
    public int Channels { get; }
    public int Count => _entries.Length;

    public WebDatasetShards(string pattern, int channels = 3) : this(ExpandBraces(pattern), channels, pattern) { }

    public WebDatasetShards(IEnumerable<string> shards, int channels = 3) : this(shards.ToList(), channels, null) { }

    private WebDatasetShards(IReadOnlyList<string> shards, int channels, string? pattern)
    {
        if (channels is not (1 or 3)) throw new ArgumentException($"channels must be 1 or 3, not {channels}");
        if (shards.Count == 0) throw new ArgumentException("webdataset: no shards given");
        foreach (var shard in shards)
            if (!File.Exists(shard))
                throw new FileNotFoundException($"webdataset shard not found: {shard}" + (pattern != null ? $" (from pattern {pattern})" : ""), shard);
        Shards = shards;
        Channels = channels;
        var entries = new List<Entry>();
        for (int s = 0; s < shards.Count; s++) IndexShard(s, entries);
        _entries = entries.ToArray();
        _handles = new SafeFileHandle?[shards.Count];
    }

    // ---- shard patterns ----------------------------------------------------------------------------------

    private static readonly Regex BraceGroup = new(@"\{([^{}]*)\}", RegexOptions.CultureInvariant);
    private static readonly Regex NumericRange = new(@"^(\d+)\.\.(\d+)$", RegexOptions.CultureInvariant);

    /// <summary>
    /// Expands brace groups left to right: <c>{0000..0002}</c> is a numeric range (zero-padded to the width of
    /// the bounds when they are written with leading zeros), <c>{a,b}</c> a list. Text without braces is one
    /// path.
    /// </summary>
    public static IReadOnlyList<string> ExpandBraces(string pattern)
    {
        var match = BraceGroup.Match(pattern);
        if (!match.Success)
        {
            if (pattern.Contains('{') || pattern.Contains('}')) throw new ArgumentException($"unbalanced braces in shard pattern '{pattern}'");
            return new[] { pattern };
        }
        string prefix = pattern[..match.Index], suffix = pattern[(match.Index + match.Length)..];
        var body = match.Groups[1].Value;
        IEnumerable<string> choices;
        var range = NumericRange.Match(body);
        if (range.Success)
        {
            string first = range.Groups[1].Value, last = range.Groups[2].Value;
            long from = long.Parse(first, CultureInfo.InvariantCulture), to = long.Parse(last, CultureInfo.InvariantCulture);
            bool padded = (first.Length > 1 && first[0] == '0') || (last.Length > 1 && last[0] == '0');
            int width = padded ? Math.Max(first.Length, last.Length) : 0;
            long step = from <= to ? 1 : -1;
            var numbers = new List<string>();
            for (long n = from; ; n += step)
            {
                numbers.Add(n.ToString(CultureInfo.InvariantCulture).PadLeft(width, '0'));
                if (n == to) break;
            }
            choices = numbers;
        }
        else if (body.Contains(','))
            choices = body.Split(',');
        else
            throw new ArgumentException($"shard pattern '{pattern}': brace group '{{{body}}}' is neither a range a..b nor a list a,b");

        return choices.SelectMany(choice => ExpandBraces(prefix + choice + suffix)).ToArray();
    }

    // ---- indexing ----------------------------------------------------------------------------------------

    /// <summary>Splits an entry path into its sample key and extension the way webdataset does: the extension
    /// starts at the first dot of the file name (so "n01/x.seg.png" has key "n01/x" and extension "seg.png").</summary>
    internal static (string Key, string Extension) SplitEntryName(string name)
    {
        int slash = name.LastIndexOf('/');
        int dot = name.IndexOf('.', slash + 1);
        return dot < 0 ? (name, "") : (name[..dot], name[(dot + 1)..].ToLowerInvariant());
    }

    private void IndexShard(int shard, List<Entry> entries)
    {
        var path = Shards[shard];
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
            using var reader = new TarReader(stream);
            string? key = null, imageExtension = null, classText = null;
            long imageOffset = 0, imageLength = 0;

            void Flush()
            {
                if (key != null) entries.Add(new Entry(shard, key, imageExtension, imageOffset, imageLength, classText));
                key = imageExtension = classText = null;
            }

            while (reader.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)) continue;
                var (entryKey, extension) = SplitEntryName(entry.Name);
                if (entryKey != key) { Flush(); key = entryKey; }
                if (imageExtension == null && ImageExtensions.Contains(extension))
                {
                    imageExtension = extension;
                    imageOffset = entry.DataOffset;
                    imageLength = entry.Length;
                }
                else if (extension == "cls" && entry.DataStream != null)
                {
                    if (entry.Length > 64) throw new InvalidDataException($"entry {entry.Name} is {entry.Length} bytes, too long for a class label");
                    using var text = new StreamReader(entry.DataStream, Encoding.ASCII, detectEncodingFromByteOrderMarks: false, leaveOpen: true);
                    classText = text.ReadToEnd();
                }
            }
            Flush();
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException or IOException)
        {
            throw new InvalidDataException($"webdataset shard {path}: cannot read tar: {e.Message}", e);
        }
    }

    // ---- reading -----------------------------------------------------------------------------------------

    public string KeyOf(int index) => _entries[index].Key;

    public RawSample Load(int index)
    {
        var entry = _entries[index];
        var shard = Shards[entry.Shard];
        string name = $"{shard}: sample '{entry.Key}'";
        if (entry.ImageExtension == null) throw new InvalidDataException($"{name} has no .jpg/.jpeg/.png image");
        if (entry.ClassText == null) throw new InvalidDataException($"{name} has no .cls label");
        if (!int.TryParse(entry.ClassText.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int label))
            throw new InvalidDataException($"{name}: .cls '{entry.ClassText.Trim()}' is not an integer class label");

        var bytes = new byte[entry.ImageLength];
        var handle = Handle(entry.Shard);
        for (int done = 0; done < bytes.Length;)
        {
            int read = RandomAccess.Read(handle, bytes.AsSpan(done), entry.ImageOffset + done);
            if (read == 0) throw new InvalidDataException($"{name}: image data cut short ({done} of {bytes.Length} bytes)");
            done += read;
        }
        var image = ImageIO.Decode(bytes, $"{name} (.{entry.ImageExtension})", Channels);
        return new RawSample(image, label, entry.Key);
    }

    private SafeFileHandle Handle(int shard)
    {
        var handle = Volatile.Read(ref _handles[shard]);
        if (handle != null) return handle;
        lock (_openLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _handles[shard] ??= File.OpenHandle(Shards[shard], FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        }
    }

    public void Dispose()
    {
        lock (_openLock)
        {
            _disposed = true;
            foreach (var handle in _handles) handle?.Dispose();
            Array.Clear(_handles);
        }
    }
}
