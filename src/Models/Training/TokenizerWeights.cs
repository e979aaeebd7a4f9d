using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>Which weights of a training checkpoint <see cref="TokenizerWeights.Load"/> used.</summary>
public enum WeightsSource { TrainingEma, TrainingRaw, PlainFile }

/// <summary>Loads tokenizer weights for evaluation: a training checkpoint of <see cref="TokenizerTrainer"/> (its
/// EMA weights when it has them, unless <c>preferEma</c> is off) or a plain weights file (official torch .bin,
/// safetensors, npz) with the reference's state-dict keys (entries the model declares foreign, such as the loss
/// weights in Taming's official checkpoint, are dropped). A plain file is loaded strictly unless
/// <c>warn</c> is given: then missing/unexpected keys and shape mismatches are reported through it and skipped.</summary>
public static class TokenizerWeights
{
    public static WeightsSource Load(ImageTokenizer model, string path, bool preferEma = true, Action<string>? warn = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {path}", path);
        var stateDict = CheckpointFile.Load(path);
        if (!IsTrainingCheckpoint(stateDict))
        {
            foreach (var problem in ModuleCheckpoint.LoadInto(model, ModuleCheckpoint.WithoutPrefixes(stateDict, model.ForeignCheckpointPrefixes), strict: warn == null)) warn!(problem);
            return WeightsSource.PlainFile;
        }

        string prefix = $"module.{TokenizerTrainer.ModelPart}.";
        var own = stateDict.Where(r => r.Name.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(r => r.Name[prefix.Length..], r => r.ToTensor());
        try { model.LoadStateDict(own); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }

        // The EMA shadow is stored by parameter position (the order of model.Parameters()).
        string emaPrefix = $"ema.{TokenizerTrainer.ModelPart}.";
        var parameters = model.Parameters().ToList();
        if (!preferEma || !stateDict.TryGet(emaPrefix + "0", out _)) return WeightsSource.TrainingRaw;
        for (int i = 0; i < parameters.Count; i++)
        {
            if (!stateDict.TryGet(emaPrefix + i, out var record)) throw new InvalidDataException($"{path}: missing EMA tensor '{emaPrefix}{i}'");
            if (!record.Shape.AsSpan().SequenceEqual(parameters[i].Shape))
                throw new InvalidDataException($"{path}: EMA tensor '{emaPrefix}{i}' has shape [{string.Join(", ", record.Shape)}], the model's parameter {i} [{string.Join(", ", parameters[i].Shape)}]");
            parameters[i].CopyFrom_(record.ToTensor());
        }
        return WeightsSource.TrainingEma;
    }

    private static bool IsTrainingCheckpoint(StateDict stateDict) =>
        stateDict.Metadata.Any(kv => kv.Key == "format" && kv.Value?.ToString() == TrainingCheckpoint.Format);
}
