using System.Buffers.Binary;
using System.Collections;
using System.IO.Compression;
using System.Numerics;
using System.Text;
using System.Text.RegularExpressions;

namespace MaskBit.Models.Interop;

/// <summary>
/// Reads <c>torch.save</c> checkpoints without Python: the zip format (<c>&lt;top&gt;/data.pkl</c> plus whole
/// storages under <c>&lt;top&gt;/data/&lt;key&gt;</c>) and the legacy format (a row of pickles followed by raw
/// storages). The pickle goes through a restricted unpickler (<see cref="TorchPickle"/>); every size, offset and
/// stride is checked against the bytes actually in the file before anything is allocated. The state dict may be
/// the top-level object or sit under "state_dict" / "model"; the other top-level entries become metadata.
/// Any problem with the file → <see cref="CheckpointFormatException"/>.
/// </summary>
public static partial class TorchCheckpoint
{
    /// <summary>Keys under which training checkpoints nest the state dict, in order of preference.</summary>
    private static readonly string[] NestedStateDictKeys = { "state_dict", "model" };

    /// <summary>A state dict's pickle holds names and small tuples (the official 18-bit tokenizer's is 40 KB).</summary>
    private const long MaxPickleBytes = 64L << 20;

    private static readonly byte[] LegacyMagic = Convert.FromHexString("80028a0a6cfc9c46f9206aa850192e");
    private static readonly BigInteger LegacyMagicNumber = BigInteger.Parse("01950a86a20f9469cfc6c", System.Globalization.NumberStyles.HexNumber);

    public static bool IsZip(ReadOnlySpan<byte> head) => head.Length >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] is 3 or 5 && head[3] is 4 or 6;
    /// <summary>True when the file starts with the pickled legacy magic number.</summary>
    public static bool IsLegacy(ReadOnlySpan<byte> head) => head.StartsWith(LegacyMagic);

    public static StateDict Load(string path)
    {
        byte[] head = ReadHead(path, 16);
        if (IsZip(head)) return LoadZip(path);
        if (IsLegacy(head)) return LoadLegacy(path);
        throw new CheckpointFormatException(path, "not a PyTorch checkpoint (neither a zip archive nor the legacy pickle format)");
    }

    internal static byte[] ReadHead(string path, int count)
    {
        try
        {
            using var fs = File.OpenRead(path);
            var head = new byte[Math.Min(count, fs.Length)];
            fs.ReadExactly(head);
            return head;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointFormatException(path, e is FileNotFoundException or DirectoryNotFoundException ? "no such file" : e.Message, e);
        }
    }

    // ---- zip format --------------------------------------------------------------------------------------------

    public static StateDict LoadZip(string path) => ReadZip(path, checkpoint =>
    {
        var bytesByKey = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        byte[] StorageBytes(StorageRef s) => bytesByKey.TryGetValue(s.Key, out var b) ? b : bytesByKey[s.Key] = checkpoint.ReadStorage(s);
        return Build(path, checkpoint.Format, checkpoint.Root, StorageBytes, checkpoint.Budget);
    });

    /// <summary>A zip checkpoint's state dict with each tensor's bytes read from the archive when used
    /// (<see cref="TensorRecord.Data"/>): the pickle, the views and the storages' sizes are checked now, a tensor's
    /// storage is read (and the archive checked again) at each use, so a loader that copies tensor by tensor holds
    /// one storage at a time. Tensors that view one storage each read it.</summary>
    public static StateDict OpenZip(string path) => ReadZip(path, checkpoint =>
    {
        var (records, metadata) = Walk(checkpoint.Root, (name, view) => new TensorRecord(name, view.Storage.DType, ViewShape(name, view).Shape,
            () => ReadZip(path, again => Materialize(name, view, again.ReadStorage(view.Storage), again.Budget).Data), Origin(view)));
        return new StateDict(path, checkpoint.Format, records, metadata);
    });

    /// <summary>The tensors (names, dtypes, shapes) and metadata of a zip checkpoint, from its pickle alone: the
    /// storages' sizes are checked against the archive, their bytes are not read.</summary>
    public static CheckpointListing ListZip(string path) => ReadZip(path, checkpoint =>
    {
        var (tensors, metadata) = Walk(checkpoint.Root, (name, view) => new TensorListing(name, view.Storage.DType, ViewShape(name, view).Shape));
        return new CheckpointListing(path, checkpoint.Format, tensors, metadata);
    });

    /// <summary>A zip checkpoint's unpickled root, its storages' entries (sizes already checked) and the load's budget.</summary>
    private sealed record ZipCheckpoint(object? Root, string Format, Func<StorageRef, ZipArchiveEntry> StorageEntry, long FileLength, LoadBudget Budget)
    {
        public byte[] ReadStorage(StorageRef s) => ZipEntries.ReadAll(StorageEntry(s), FileLength, Budget, $"storage '{s.Key}'");
    }

    private static T ReadZip<T>(string path, Func<ZipCheckpoint, T> read)
    {
        try
        {
            long fileLength = new FileInfo(path).Length;
            var budget = LoadBudget.Start();
            using var zip = ZipFile.OpenRead(path);
            var entries = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
            foreach (var e in zip.Entries)
                if (!entries.TryAdd(e.FullName, e)) throw new FormatProblem($"zip entry '{e.FullName}' occurs twice");

            var pickles = entries.Keys.Where(n => n == "data.pkl" || n.EndsWith("/data.pkl", StringComparison.Ordinal)).ToList();
            if (pickles.Count == 0) throw new FormatProblem("zip archive has no data.pkl (not a torch.save file)");
            if (pickles.Count > 1) throw new FormatProblem($"zip archive has several data.pkl entries ({string.Join(", ", pickles)})");
            string prefix = pickles[0][..^"data.pkl".Length];

            if (entries.TryGetValue(prefix + "byteorder", out var byteOrder))
            {
                if (byteOrder.Length > 64) throw new FormatProblem($"zip entry '{byteOrder.FullName}' is too large ({byteOrder.Length:N0} bytes)");
                string order = Encoding.ASCII.GetString(ZipEntries.ReadAll(byteOrder, fileLength, budget, $"zip entry '{byteOrder.FullName}'")).Trim();
                if (order != "little") throw new FormatProblem($"storages are stored {order}-endian; only little-endian is supported");
            }

            var pkl = entries[pickles[0]];
            if (pkl.Length > MaxPickleBytes) throw new FormatProblem($"'{pkl.FullName}' is {pkl.Length:N0} bytes; a state dict's pickle is at most {MaxPickleBytes:N0}");
            var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
            var (root, _) = TorchPickle.Load(ZipEntries.ReadAll(pkl, fileLength, budget, $"zip entry '{pkl.FullName}'"), 0, storages);

            // Every storage the pickle names, checked against the archive before any is read.
            foreach (var s in storages.Values)
            {
                if (!StorageKey().IsMatch(s.Key)) throw new FormatProblem($"storage key '{s.Key}' is not a plain name");
                long bytes = StorageByteCount(s);
                if (!entries.TryGetValue(prefix + "data/" + s.Key, out var entry))
                    throw new FormatProblem($"storage '{s.Key}' is missing from the archive");
                if (entry.Length != bytes)
                    throw new FormatProblem($"storage '{s.Key}' holds {entry.Length:N0} bytes but is declared as {s.Numel:N0} {s.DType.Name()} values ({bytes:N0} bytes)");
                ZipEntries.CheckDeclaredSize(entry, fileLength, $"storage '{s.Key}'");
            }
            return read(new ZipCheckpoint(root, $"torch zip ({pickles[0]})", s => entries[prefix + "data/" + s.Key], fileLength, budget));
        }
        catch (FormatProblem p) { throw new CheckpointFormatException(path, p.Message, p); }
        catch (InvalidDataException e) { throw new CheckpointFormatException(path, "damaged or invalid zip archive", e); }
        catch (IOException e) { throw new CheckpointFormatException(path, e is FileNotFoundException ? "no such file" : "cannot read the zip archive (damaged or truncated)", e); }
        catch (UnauthorizedAccessException e) { throw new CheckpointFormatException(path, "permission denied", e); }
    }

    [GeneratedRegex(@"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")]
    private static partial Regex StorageKey();

    // ---- legacy format -----------------------------------------------------------------------------------------

    public static StateDict LoadLegacy(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) throw new FormatProblem("no such file");
            if (info.Length > Array.MaxLength) throw new FormatProblem($"legacy checkpoints over {Array.MaxLength} bytes are not supported");
            var budget = LoadBudget.Start();
            budget.Take(info.Length, "the legacy checkpoint");
            byte[] data = File.ReadAllBytes(path);
            var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);

            var (magic, pos) = TorchPickle.Load(data, 0, storages);
            if (!(magic is BigInteger m && m == LegacyMagicNumber)) throw new FormatProblem("bad legacy magic number");
            (var protocol, pos) = TorchPickle.Load(data, pos, storages);
            if (!(protocol is int p && p == 1001)) throw new FormatProblem($"unsupported legacy protocol version {TorchPickle.Describe(protocol)}");
            (var sysInfo, pos) = TorchPickle.Load(data, pos, storages);
            if (sysInfo is Hashtable sys && sys["little_endian"] is false) throw new FormatProblem("big-endian legacy checkpoints are not supported");
            (var root, pos) = TorchPickle.Load(data, pos, storages);
            (var keyList, pos) = TorchPickle.Load(data, pos, storages);
            if (keyList is not ArrayList keys) throw new FormatProblem("legacy storage key list is missing");

            // Raw storages follow in the key list's order, each as int64 element count + bytes.
            var bytesByKey = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            foreach (var k in keys)
            {
                if (k is not string key || !storages.TryGetValue(key, out var storage))
                    throw new FormatProblem($"legacy key list names storage {TorchPickle.Describe(k)} that no tensor uses");
                if (bytesByKey.ContainsKey(key)) throw new FormatProblem($"legacy key list names storage '{key}' twice");
                if (data.Length - pos < 8) throw new FormatProblem($"file ends before storage '{key}'");
                long count = BinaryPrimitives.ReadInt64LittleEndian(data.AsSpan(pos, 8));
                pos += 8;
                if (count != storage.Numel) throw new FormatProblem($"storage '{key}' holds {count} elements but is declared with {storage.Numel}");
                long bytes = StorageByteCount(storage);
                if (bytes > data.Length - pos) throw new FormatProblem($"file ends inside storage '{key}' ({bytes} bytes wanted, {data.Length - pos} left)");
                budget.Take(bytes, $"storage '{key}'");
                bytesByKey[key] = data.AsSpan(pos, (int)bytes).ToArray();
                pos += (int)bytes;
            }
            if (pos != data.Length) throw new FormatProblem($"{data.Length - pos} unexpected bytes after the last storage");

            return Build(path, "torch legacy", root, s => bytesByKey.TryGetValue(s.Key, out var b) ? b
                : throw new FormatProblem($"storage '{s.Key}' is not in the legacy key list"), budget);
        }
        catch (FormatProblem p) { throw new CheckpointFormatException(path, p.Message, p); }
        catch (IOException e) { throw new CheckpointFormatException(path, "cannot read the file", e); }
        catch (UnauthorizedAccessException e) { throw new CheckpointFormatException(path, "permission denied", e); }
    }

    private static long StorageByteCount(StorageRef s)
    {
        if (s.Numel > Array.MaxLength / s.DType.Size()) throw new FormatProblem($"storage '{s.Key}' is too large ({s.Numel} {s.DType.Name()} values)");
        return s.Numel * s.DType.Size();
    }

    // ---- from the unpickled object to records -------------------------------------------------------------------

    private static StateDict Build(string path, string format, object? root, Func<StorageRef, byte[]> storageBytes, LoadBudget budget)
    {
        var (records, metadata) = Walk(root, (name, view) => Materialize(name, view, storageBytes(view.Storage), budget));
        return new StateDict(path, format, records, metadata);
    }

    /// <summary>The state dict in an unpickled root (the top level, or under "state_dict" / "model"): each tensor
    /// through <paramref name="tensor"/>, everything else as plain metadata.</summary>
    private static (List<T> Tensors, List<KeyValuePair<string, object?>> Metadata) Walk<T>(object? root, Func<string, TensorView, T> tensor)
    {
        if (root is not Hashtable top) throw new FormatProblem($"top-level object is {TorchPickle.Describe(root)}, not a state dict");
        var topEntries = Entries(top);
        Hashtable stateDict = top;
        var metadata = new List<KeyValuePair<string, object?>>();
        var plain = new PlainConverter();
        if (!topEntries.Any(kv => kv.Value is TensorView))
        {
            var nested = NestedStateDictKeys.FirstOrDefault(k => top[k] is Hashtable)
                ?? throw new FormatProblem($"no state dict found: no tensors at the top level and no {string.Join(" or ", NestedStateDictKeys.Select(k => $"'{k}'"))} entry (keys: {string.Join(", ", topEntries.Select(kv => kv.Key))})");
            stateDict = (Hashtable)top[nested]!;
            metadata.AddRange(topEntries.Where(kv => kv.Key != nested).Select(kv => KeyValuePair.Create(kv.Key, plain.Convert(kv.Value))));
        }

        var tensors = new List<T>();
        foreach (var (name, value) in Entries(stateDict))
        {
            if (value is TensorView view) tensors.Add(tensor(name, view));
            else metadata.Add(KeyValuePair.Create(name, plain.Convert(value)));   // e.g. a module's _extra_state
        }
        return (tensors, metadata);
    }

    /// <summary>Entries of a pickled dict: OrderedDicts in file order, plain dicts (whose order Razorvine loses)
    /// sorted by key.</summary>
    private static List<KeyValuePair<string, object?>> Entries(Hashtable dict)
    {
        var keys = new List<string>();
        foreach (var k in dict.Keys)
            keys.Add(k as string ?? throw new FormatProblem($"dict key {TorchPickle.Describe(k)} is not a string"));
        if (dict is PickledOrderedDict { FileOrder: { } order } && order.Count == keys.Count && order.All(dict.ContainsKey)) keys = order;
        else keys.Sort(StringComparer.Ordinal);
        return keys.Select(k => KeyValuePair.Create(k, dict[k])).ToList();
    }

    /// <summary>Turns pickled values into plain data (see <see cref="StateDict.Metadata"/>). Limited in depth (which
    /// also stops self-referencing lists) and in total size: the memo lets a few bytes of pickle reference one
    /// list many times, so a tree of shared lists would otherwise expand exponentially.</summary>
    private sealed class PlainConverter
    {
        private const int MaxDepth = 32;
        private const int MaxValues = 1_000_000;
        private int _values;

        public object? Convert(object? value, int depth = 0)
        {
            if (depth > MaxDepth) throw new FormatProblem($"metadata nested deeper than {MaxDepth} levels");
            if (++_values > MaxValues) throw new FormatProblem($"metadata expands to more than {MaxValues} values");
            return value switch
            {
                null or bool or long or double or string or BigInteger or byte[] => value,
                int i => (long)i,
                TensorView v => new TensorSummary(v.Storage.DType, v.Size),
                StorageRef s => $"<{s.DType.Name()} storage '{s.Key}'>",
                PickledClassReference c => $"<class {c.Name}>",
                Hashtable h => h.Keys.Cast<object?>().All(k => k is string)
                    ? Entries(h).Select(kv => KeyValuePair.Create(kv.Key, Convert(kv.Value, depth + 1))).ToList()
                    : h.Keys.Cast<object?>().Select(k => KeyValuePair.Create(StateDict.FormatValue(Convert(k, depth + 1)), Convert(h[k!], depth + 1)))
                        .OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList(),
                object?[] tuple => tuple.Select(v => Convert(v, depth + 1)).ToList(),
                IEnumerable list => list.Cast<object?>().Select(v => Convert(v, depth + 1)).ToList(),
                _ => value.GetType().Name,
            };
        }
    }

    /// <summary>Copies a strided view out of its storage into contiguous bytes, after checking that every element
    /// it reaches lies inside the storage (<see cref="ViewShape"/>).</summary>
    internal static TensorRecord Materialize(string name, TensorView view, byte[] storage, LoadBudget budget)
    {
        var s = view.Storage;
        int elem = s.DType.Size();
        if (storage.LongLength != s.Numel * elem)
            throw new FormatProblem($"tensor '{name}': storage '{s.Key}' holds {storage.LongLength} bytes, not {s.Numel} {s.DType.Name()} values");
        var (shape, count) = ViewShape(name, view);
        var origin = Origin(view);
        // The usual case, a tensor that is its whole storage in C order, keeps the storage's bytes (no copy).
        if (view.Offset == 0 && count == s.Numel && IsContiguous(shape, view.Stride))
            return new TensorRecord(name, s.DType, shape, storage, origin);
        budget.Take(count * elem, $"tensor '{name}'");
        var data = new byte[count * elem];
        if (count > 0) CopyStrided(storage, elem, view.Offset, shape, view.Stride, data);
        return new TensorRecord(name, s.DType, shape, data, origin);
    }

    private static StorageOrigin Origin(TensorView view) =>
        new(view.Storage.Key, view.Offset, view.Stride, view.Storage.Numel, view.IsParameter);

    /// <summary>The shape and element count of a view, after checking that every element it reaches lies inside
    /// its storage.</summary>
    private static (int[] Shape, long Count) ViewShape(string name, TensorView view)
    {
        var s = view.Storage;
        if (view.Size.Length > 64) throw new FormatProblem($"tensor '{name}' has {view.Size.Length} dimensions");
        string where = $"tensor '{name}' (size [{string.Join(", ", view.Size)}], stride [{string.Join(", ", view.Stride)}], offset {view.Offset})";

        long count = 1, last = view.Offset;
        var shape = new int[view.Size.Length];
        for (int d = 0; d < shape.Length; d++)
        {
            if (view.Size[d] < 0 || view.Size[d] > int.MaxValue) throw new FormatProblem($"{where} has an invalid size");
            if (view.Stride[d] < 0) throw new FormatProblem($"{where} has a negative stride");
            shape[d] = (int)view.Size[d];
            count = count * view.Size[d] is var c && c <= Array.MaxLength ? c : throw new FormatProblem($"{where} is too large");
        }
        if (view.Offset < 0) throw new FormatProblem($"{where} has a negative storage offset");
        if (count > 0)
        {
            // Highest element the view reaches; sizes ≤ 2^31 and strides < 2^63 can overflow, so check as we go.
            for (int d = 0; d < shape.Length; d++)
            {
                if (shape[d] > 1 && view.Stride[d] > (long.MaxValue - last) / (shape[d] - 1)) throw new FormatProblem($"{where} reaches past any storage");
                last += (shape[d] - 1) * view.Stride[d];
            }
            if (last >= s.Numel)
                throw new FormatProblem($"{where} reaches element {last} of storage '{s.Key}', which has only {s.Numel} elements");
        }
        else if (view.Offset > s.Numel) throw new FormatProblem($"{where} starts past the end of storage '{s.Key}' ({s.Numel} elements)");

        return (shape, count);
    }

    private static bool IsContiguous(int[] shape, long[] stride)
    {
        long expected = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            if (shape[d] != 1 && stride[d] != expected) return false;
            expected *= shape[d];
        }
        return true;
    }

    /// <summary>Walks the view's index space in C order (odometer over all but the last dim), copying runs of the
    /// last dim in one block when it is contiguous.</summary>
    private static void CopyStrided(byte[] storage, int elem, long offset, int[] shape, long[] stride, byte[] dest)
    {
        if (shape.Length == 0) { Buffer.BlockCopy(storage, (int)(offset * elem), dest, 0, elem); return; }
        int rank = shape.Length, inner = shape[^1];
        long innerStride = stride[^1];
        var index = new int[rank - 1];
        long rowStart = offset;
        int written = 0;
        while (true)
        {
            if (innerStride == 1 || inner == 1)
                Buffer.BlockCopy(storage, (int)(rowStart * elem), dest, written, inner * elem);
            else
                for (int j = 0; j < inner; j++)
                    Buffer.BlockCopy(storage, (int)((rowStart + j * innerStride) * elem), dest, written + j * elem, elem);
            written += inner * elem;

            int d = rank - 2;
            for (; d >= 0; d--)
            {
                rowStart += stride[d];
                if (++index[d] < shape[d]) break;
                rowStart -= stride[d] * shape[d];
                index[d] = 0;
            }
            if (d < 0) return;
        }
    }
}
