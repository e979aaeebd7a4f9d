using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Interop;

/// <summary>Loads checkpoint files (any supported format) into modules.</summary>
public static class ModuleCheckpoint
{
    /// <summary>Copies a state dict into the module, tensor by tensor, each converted straight into its parameter's type
    /// (<see cref="TensorRecord.CopyTo"/>; with <see cref="CheckpointFile.Open"/> one tensor's bytes are held at a
    /// time). Strict by default: every missing key, unexpected key and
    /// shape mismatch is listed in one error naming the file; non-strict returns them as warnings.
    /// <paramref name="renames"/> maps checkpoint key prefixes to model prefixes (e.g. official generator
    /// checkpoints' "token_emb." → "input_proj.").</summary>
    public static IReadOnlyList<string> LoadInto(Module module, StateDict stateDict, bool strict = true,
        IReadOnlyDictionary<string, string>? renames = null)
    {
        var tensors = new Dictionary<string, TensorRecord>();
        foreach (var record in stateDict)
        {
            string name = record.Name;
            if (renames != null)
                foreach (var (from, to) in renames)
                    if (name.StartsWith(from, StringComparison.Ordinal)) { name = to + name[from.Length..]; break; }
            tensors[name] = record;
        }
        try { return module.LoadStateDict(tensors, strict); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{stateDict.Source}: {e.Message}", e); }
    }

    /// <summary>The state dict without the entries under <paramref name="prefixes"/> (parts of a file that belong to
    /// other modules, such as the training loss in Taming's official checkpoint).</summary>
    public static StateDict WithoutPrefixes(StateDict stateDict, IReadOnlyList<string> prefixes)
    {
        bool Foreign(string name) => prefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal));
        return stateDict.Names.Any(Foreign)
            ? new StateDict(stateDict.Source, stateDict.Format, stateDict.Where(r => !Foreign(r.Name)), stateDict.Metadata)
            : stateDict;
    }

    public static IReadOnlyList<string> LoadInto(Module module, string path, bool strict = true,
        IReadOnlyDictionary<string, string>? renames = null) =>
        LoadInto(module, CheckpointFile.Open(path), strict, renames);
}
