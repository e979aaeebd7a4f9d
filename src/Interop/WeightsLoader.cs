using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Interop;

/// <summary>Which weights <see cref="WeightsLoader.Load"/> used.</summary>
public enum WeightsSource { TrainingEma, TrainingRaw, PlainFile }

/// <summary>How a model's weights are found in a file: the training-checkpoint parts that may hold it (the first
/// present wins; a checkpoint with a single part gives that one), the official key renames (checkpoint prefix →
/// model prefix, applied when the file has keys under a renamed prefix that the model lacks) and the prefixes of
/// entries that belong to other modules (dropped).</summary>
public sealed record WeightsLayout(IReadOnlyList<string> Parts, IReadOnlyDictionary<string, string>? Renames = null,
    IReadOnlyList<string>? ForeignPrefixes = null);

/// <summary>What was loaded: the file, which weights, and the part of a training checkpoint.</summary>
public sealed record LoadedWeights(string Path, WeightsSource Source, string Format, string? Part)
{
    public override string ToString() => Source switch
    {
        WeightsSource.TrainingEma => $"{Path} ({Part}, EMA weights of a training checkpoint)",
        WeightsSource.TrainingRaw => $"{Path} ({Part}, raw weights of a training checkpoint)",
        _ => $"{Path} ({Format})",
    };
}

/// <summary>
/// The one weights loader of every command and both stages: official `.bin`/`.pth`/`.ckpt` (zip or legacy pickle),
/// safetensors and npz state dicts, and MaskBit training checkpoints (the EMA weights when kept, unless
/// <c>preferEma</c> is off; the key layout is <see cref="TrainingCheckpoint"/>'s). Tensors are read one at a time
/// (<see cref="CheckpointFile.Open"/>) and converted straight into each parameter's type: a bf16/fp16 file loads into
/// a 16-bit model (<see cref="Module.StoreWeightsIn"/>) as its bits, a float32 file rounds once, and no float32 copy
/// of the model or the file is held. Strict unless <c>warn</c> is
/// given: then missing/unexpected keys and shape mismatches are reported through it and skipped (and EMA weights
/// that do not fit leave the raw ones).
/// </summary>
public static class WeightsLoader
{
    public static LoadedWeights Load(Module module, string path, WeightsLayout layout, bool preferEma = true, Action<string>? warn = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {path}", path);
        var stateDict = CheckpointFile.Open(path);
        bool strict = warn == null;
        if (!TrainingCheckpoint.IsTrainingCheckpoint(stateDict))
        {
            stateDict = ModuleCheckpoint.WithoutPrefixes(stateDict, layout.ForeignPrefixes ?? []);
            static bool Under(IEnumerable<string> names, IEnumerable<string> prefixes) =>
                names.Any(n => prefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal)));
            var renames = layout.Renames;
            bool renamed = renames != null && Under(stateDict.Names, renames.Keys) && !Under(module.StateDict().Select(o => o.Name), renames.Keys);
            foreach (var problem in ModuleCheckpoint.LoadInto(module, stateDict, strict, renamed ? renames : null)) warn!(problem);
            return new LoadedWeights(path, WeightsSource.PlainFile, stateDict.Format, null);
        }

        var parts = TrainingCheckpoint.Parts(stateDict);
        string part = layout.Parts.FirstOrDefault(parts.Contains)
            ?? (parts.Count == 1 ? parts[0] : throw new InvalidDataException(
                $"{path}: training checkpoint parts [{string.Join(", ", parts)}] include none of [{string.Join(", ", layout.Parts)}]"));
        try { foreach (var problem in module.LoadStateDict(TrainingCheckpoint.ModuleTensors(stateDict, part), strict)) warn!($"{part}: {problem}"); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path} ({part}): {e.Message}", e); }

        var named = module.NamedParameters().ToList();
        var shadow = preferEma ? TrainingCheckpoint.EmaTensors(stateDict, part, named.Select(p => p.Name).ToList()) : null;
        if (shadow == null) return new LoadedWeights(path, WeightsSource.TrainingRaw, stateDict.Format, part);
        for (int i = 0; i < named.Count; i++)
        {
            if (shadow[i] is { } r && r.Shape.AsSpan().SequenceEqual(named[i].Tensor.Shape) && r.DType.IsFloatingPoint()) continue;
            string problem = $"the EMA weights of '{part}' do not match the model's parameter '{named[i].Name}' {ShapeUtil.Format(named[i].Tensor.Shape)}";
            if (strict) throw new InvalidDataException($"{path}: {problem}");
            warn!($"{problem}; using the raw weights");
            return new LoadedWeights(path, WeightsSource.TrainingRaw, stateDict.Format, part);
        }
        for (int i = 0; i < named.Count; i++) shadow[i]!.CopyTo(named[i].Tensor);
        return new LoadedWeights(path, WeightsSource.TrainingEma, stateDict.Format, part);
    }
}
