using System.Collections;
using System.Numerics;
using Razorvine.Pickle;

namespace MaskBit.Models.Interop;

/// <summary>A storage named by a persistent id: <c>('storage', torch.FloatStorage, key, location, numel[, None])</c>.</summary>
internal sealed record StorageRef(string Key, TensorDType DType, long Numel, string Location);

/// <summary>What <c>torch._utils._rebuild_tensor_v2</c> describes: a strided view of a storage. Nothing is read
/// until the view is materialised against the storage's actual bytes.</summary>
internal sealed record TensorView(StorageRef Storage, long Offset, long[] Size, long[] Stride, bool IsParameter);

/// <summary>A <c>collections.OrderedDict</c>. Razorvine fills dicts through the Hashtable indexer; the file order
/// of the keys comes from <see cref="PickleScanner"/>.</summary>
internal sealed class PickledOrderedDict : Hashtable
{
    public List<string>? FileOrder { get; set; }

    /// <summary>Target of BUILD: torch state dicts carry their <c>_metadata</c> (module versions) this way; it is dropped.</summary>
    public void __setstate__(Hashtable state) => _ = state;
}

/// <summary>A class a pickle names without calling it: PyTorch Lightning checkpoints (e.g. the official Taming VQGAN's)
/// key their "callbacks" entry by callback class. Calling it is refused.</summary>
internal sealed record PickledClassReference(string Name) : IObjectConstructor
{
    public object construct(object[] args) => throw new FormatProblem($"pickle calls the class '{Name}'");
}

/// <summary>
/// Unpickles torch checkpoint pickles with Razorvine.Pickle behind an allow-list: only
/// <c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor_v2</c>, <c>torch._utils._rebuild_parameter</c>,
/// the torch storage types and (as inert references) Lightning's callback classes may appear. Every pickle is first dry-run by <see cref="PickleScanner"/>, which refuses
/// anything else; the constructors registered here only build inert descriptions (no code runs, nothing is
/// allocated from sizes in the pickle).
/// </summary>
internal static class TorchPickle
{
    public const string OrderedDictGlobal = "collections.OrderedDict";
    private const string RebuildTensor = "torch._utils._rebuild_tensor_v2";
    private const string RebuildParameter = "torch._utils._rebuild_parameter";

    private static readonly Dictionary<string, TensorDType> StorageTypes = new()
    {
        ["torch.FloatStorage"] = TensorDType.Float32,
        ["torch.HalfStorage"] = TensorDType.Float16,
        ["torch.BFloat16Storage"] = TensorDType.BFloat16,
        ["torch.DoubleStorage"] = TensorDType.Float64,
        ["torch.LongStorage"] = TensorDType.Int64,
        ["torch.IntStorage"] = TensorDType.Int32,
        ["torch.ShortStorage"] = TensorDType.Int16,
        ["torch.CharStorage"] = TensorDType.Int8,
        ["torch.ByteStorage"] = TensorDType.UInt8,
        ["torch.BoolStorage"] = TensorDType.Bool,
    };

    /// <summary>Lightning's callbacks that save state, as keys of a checkpoint's "callbacks" entry.</summary>
    private static readonly string[] LightningCallbackClasses =
    {
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint", "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    };

    public static readonly IReadOnlySet<string> AllowedGlobals = new HashSet<string>(
        StorageTypes.Keys.Concat(LightningCallbackClasses).Append(OrderedDictGlobal).Append(RebuildTensor).Append(RebuildParameter), StringComparer.Ordinal);

    /// <summary>State of the load running on this thread. Razorvine's constructor registry is process-wide, so the
    /// constructors find the current load here.</summary>
    [ThreadStatic] private static LoadState? _current;

    private sealed class LoadState
    {
        public readonly Dictionary<string, StorageRef> Storages;
        public readonly List<PickledOrderedDict> OrderedDicts = new();
        public LoadState(Dictionary<string, StorageRef> storages) => Storages = storages;
    }

    static TorchPickle()
    {
        Register(OrderedDictGlobal, new Constructor(_ =>
        {
            var dict = new PickledOrderedDict();
            _current?.OrderedDicts.Add(dict);
            return dict;
        }));
        Register(RebuildTensor, new Constructor(BuildTensorView));
        Register(RebuildParameter, new Constructor(BuildParameter));
        foreach (var (name, dtype) in StorageTypes) Register(name, new StorageType(dtype));
        foreach (var name in LightningCallbackClasses) Register(name, new PickledClassReference(name));
    }

    private static void Register(string fullName, IObjectConstructor constructor)
    {
        int dot = fullName.LastIndexOf('.');
        Unpickler.registerConstructor(fullName[..dot], fullName[(dot + 1)..], constructor);
    }

    /// <summary>Unpickles the pickle at <paramref name="start"/>; returns the object and the offset past its end.
    /// <paramref name="storages"/> collects the storages its persistent ids name (shared across the pickles of
    /// one file). Throws <see cref="FormatProblem"/>.</summary>
    public static (object? Value, int End) Load(byte[] data, int start, Dictionary<string, StorageRef> storages)
    {
        var (end, orderedKeys) = PickleScanner.Scan(data, start, AllowedGlobals, OrderedDictGlobal);
        var state = new LoadState(storages);
        var previous = _current;
        _current = state;
        object? value;
        try
        {
            // Razorvine reads from index 0 of whatever array it gets, so hand it exactly this pickle.
            var pickle = start == 0 && end == data.Length ? data : data.AsSpan(start, end - start).ToArray();
            using var unpickler = new StorageUnpickler(state);
            value = unpickler.loads(pickle);
        }
        catch (FormatProblem) { throw; }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The dry run leaves little for the library to trip over (e.g. APPEND on a dict); report it plainly.
            throw new FormatProblem(e.GetBaseException() is PickleException p ? $"malformed pickle ({p.Message})" : "malformed pickle (its opcodes do not build a valid object)");
        }
        finally { _current = previous; }

        if (state.OrderedDicts.Count != orderedKeys.Count)
            throw new FormatProblem("pickle built a different number of OrderedDicts than it declares");
        for (int i = 0; i < orderedKeys.Count; i++) state.OrderedDicts[i].FileOrder = orderedKeys[i];
        return (value, end);
    }

    private sealed class StorageUnpickler(LoadState state) : Unpickler
    {
        protected override object persistentLoad(object pid)
        {
            if (pid is not object[] { Length: 5 or 6 } t || t[0] is not "storage")
                throw new FormatProblem($"unsupported persistent id {Describe(pid)} (expected ('storage', type, key, location, numel))");
            if (t[1] is not StorageType type) throw new FormatProblem($"persistent id names storage type {Describe(t[1])}");
            if (t[2] is not string key) throw new FormatProblem("persistent id has a non-string storage key");
            string location = t[3] as string ?? throw new FormatProblem($"storage '{key}' has a non-string location");
            long numel = ToLong(t[4], $"element count of storage '{key}'");
            if (numel < 0) throw new FormatProblem($"storage '{key}' has a negative element count {numel}");
            if (t.Length == 6 && t[5] != null) throw new FormatProblem($"storage '{key}' is a legacy storage view, which is not supported");

            var storage = new StorageRef(key, type.DType, numel, location);
            if (state.Storages.TryGetValue(key, out var seen))
            {
                if (seen.DType != storage.DType || seen.Numel != storage.Numel)
                    throw new FormatProblem($"storage '{key}' is declared twice with different types or sizes");
                return seen;
            }
            state.Storages[key] = storage;
            return storage;
        }
    }

    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    private static object BuildTensorView(object?[] args)
    {
        if (args.Length is not (6 or 7)) throw new FormatProblem($"{RebuildTensor} called with {args.Length} arguments");
        if (args[0] is not StorageRef storage) throw new FormatProblem($"{RebuildTensor} called on {Describe(args[0])} instead of a storage");
        long offset = ToLong(args[1], "storage offset");
        long[] size = ToLongs(args[2], "size");
        long[] stride = ToLongs(args[3], "stride");
        if (size.Length != stride.Length) throw new FormatProblem($"tensor has {size.Length} sizes but {stride.Length} strides");
        if (args[4] is not bool) throw new FormatProblem($"{RebuildTensor}: requires_grad is {Describe(args[4])}");
        return new TensorView(storage, offset, size, stride, IsParameter: false);
    }

    // _rebuild_parameter(data, requires_grad, backward_hooks)
    private static object BuildParameter(object?[] args)
    {
        if (args.Length != 3 || args[0] is not TensorView data || args[1] is not bool)
            throw new FormatProblem($"{RebuildParameter} called with unexpected arguments");
        return data with { IsParameter = true };
    }

    public static long ToLong(object? value, string what) => value switch
    {
        int i => i,
        long l => l,
        BigInteger b when b >= long.MinValue && b <= long.MaxValue => (long)b,
        _ => throw new FormatProblem($"{what} is {Describe(value)}, not a 64-bit integer"),
    };

    private static long[] ToLongs(object? value, string what) =>
        value is object?[] tuple ? tuple.Select(v => ToLong(v, what)).ToArray()
            : throw new FormatProblem($"tensor {what} is {Describe(value)}, not a tuple");

    public static string Describe(object? value) => value switch
    {
        null => "None",
        string s => $"'{(s.Length > 40 ? s[..40] + "..." : s)}'",
        StorageType t => $"a {t.DType.Name()} storage type",
        _ => value.GetType().Name,
    };

    private sealed class Constructor(Func<object?[], object> build) : IObjectConstructor
    {
        public object construct(object[] args) => build(args);
    }

    /// <summary>A storage type global (torch.FloatStorage, ...): only ever used as a value inside persistent ids.</summary>
    private sealed class StorageType(TensorDType dtype) : IObjectConstructor
    {
        public TensorDType DType { get; } = dtype;
        public object construct(object[] args) => throw new FormatProblem($"pickle calls the {DType.Name()} storage type");
    }
}
