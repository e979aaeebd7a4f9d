using System.Globalization;
using System.Runtime.InteropServices;
using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Autograd.Optim;
using MaskBit.Kernels;

namespace MaskBit.Models.Interop;

/// <summary>Everything a training run needs to continue exactly: modules, their optimizers and EMAs, the step,
/// the random generator and the resolved config. Names ("model", "discriminator", ...) key the parts.</summary>
public sealed class TrainingState
{
    public required IReadOnlyDictionary<string, Module> Modules { get; init; }
    public IReadOnlyDictionary<string, AdamW> Optimizers { get; init; } = new Dictionary<string, AdamW>();
    public IReadOnlyDictionary<string, Ema> Emas { get; init; } = new Dictionary<string, Ema>();
    public long Step { get; set; }
    public Rng? Rng { get; init; }
    public string? ConfigYaml { get; set; }
    /// <summary>Free-form values (data position, LeCAM EMA, ...).</summary>
    public Dictionary<string, string> Extra { get; } = new();
}

/// <summary>
/// Training checkpoints as one safetensors file (the ecosystem's safe format): tensors `module.&lt;part&gt;.&lt;key&gt;`,
/// `ema.&lt;part&gt;.&lt;i&gt;`, `optim.&lt;part&gt;.&lt;i&gt;.exp_avg|exp_avg_sq`; step, RNG state, optimizer counters and the config in
/// the header metadata. Written to a temporary file and renamed, so a crash never destroys the previous one.
/// </summary>
public static class TrainingCheckpoint
{
    public const string Format = "maskbit-training-checkpoint/1";

    public static void Save(string path, TrainingState s)
    {
        var tensors = new List<TensorRecord>();
        var meta = new Dictionary<string, string> { ["format"] = Format, ["step"] = s.Step.ToString(CultureInfo.InvariantCulture) };
        foreach (var (part, module) in s.Modules)
            foreach (var (key, t) in module.StateDict()) tensors.Add(Record($"module.{part}.{key}", t));
        foreach (var (part, ema) in s.Emas)
        {
            for (int i = 0; i < ema.Shadow.Count; i++) tensors.Add(Record($"ema.{part}.{i}", ema.Shadow[i]));
            meta[$"ema.{part}.optimization_step"] = ema.OptimizationStep.ToString(CultureInfo.InvariantCulture);
        }
        foreach (var (part, opt) in s.Optimizers)
        {
            meta[$"optim.{part}.lr"] = opt.LearningRate.ToString("R", CultureInfo.InvariantCulture);
            for (int i = 0; i < opt.Parameters.Count; i++)
            {
                var p = opt.Parameters[i];
                if (opt.ExpAvgOf(p) is not { } m) continue;
                tensors.Add(Record($"optim.{part}.{i}.exp_avg", m));
                tensors.Add(Record($"optim.{part}.{i}.exp_avg_sq", opt.ExpAvgSqOf(p)!));
                meta[$"optim.{part}.{i}.step"] = opt.StepOf(p).ToString(CultureInfo.InvariantCulture);
            }
        }
        if (s.Rng != null) meta["rng"] = s.Rng.State;
        if (s.ConfigYaml != null) meta["config"] = s.ConfigYaml;
        foreach (var (k, v) in s.Extra) meta[$"extra.{k}"] = v;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        SafeTensors.Save(path, tensors, meta);
    }

    /// <summary>Restores a checkpoint into the given state (modules, EMAs and optimizers are updated in place).
    /// Any mismatch (missing tensor, other shape, other format) is an error naming the file and the tensor.</summary>
    public static void Restore(string path, TrainingState s)
    {
        var sd = SafeTensors.Load(path);
        var meta = sd.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value?.ToString() ?? "");
        string Meta(string key) => meta.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"{path}: checkpoint metadata has no '{key}'");
        if (Meta("format") != Format) throw new InvalidDataException($"{path}: not a MaskBit training checkpoint (format '{Meta("format")}')");
        Tensor Get(string name) => sd.TryGet(name, out var r) ? r.ToTensor() : throw new InvalidDataException($"{path}: missing tensor '{name}'");

        foreach (var (part, module) in s.Modules)
        {
            var prefix = $"module.{part}.";
            var values = sd.Where(r => r.Name.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(r => r.Name[prefix.Length..], r => r.ToTensor());
            try { module.LoadStateDict(values); }
            catch (InvalidDataException e) { throw new InvalidDataException($"{path} ({part}): {e.Message}", e); }
        }
        foreach (var (part, ema) in s.Emas)
        {
            for (int i = 0; i < ema.Shadow.Count; i++) Copy(ema.Shadow[i], Get($"ema.{part}.{i}"), path);
            ema.SetStep(long.Parse(Meta($"ema.{part}.optimization_step"), CultureInfo.InvariantCulture));
        }
        foreach (var (part, opt) in s.Optimizers)
        {
            opt.LearningRate = double.Parse(Meta($"optim.{part}.lr"), CultureInfo.InvariantCulture);
            for (int i = 0; i < opt.Parameters.Count; i++)
            {
                if (!meta.TryGetValue($"optim.{part}.{i}.step", out var step)) continue;
                opt.LoadState(opt.Parameters[i], Get($"optim.{part}.{i}.exp_avg"), Get($"optim.{part}.{i}.exp_avg_sq"), long.Parse(step, CultureInfo.InvariantCulture));
            }
        }
        s.Step = long.Parse(Meta("step"), CultureInfo.InvariantCulture);
        if (s.Rng != null) s.Rng.State = Meta("rng");
        if (meta.TryGetValue("config", out var cfg)) s.ConfigYaml = cfg;
        foreach (var (k, v) in meta) if (k.StartsWith("extra.", StringComparison.Ordinal)) s.Extra[k["extra.".Length..]] = v;
    }

    private static void Copy(Tensor target, Tensor value, string path)
    {
        if (!value.Shape.AsSpan().SequenceEqual(target.Shape))
            throw new InvalidDataException($"{path}: shape {ShapeUtil.Format(value.Shape)} does not match {ShapeUtil.Format(target.Shape)}");
        target.CopyFrom_(value);
    }

    private static TensorRecord Record(string name, Tensor t) => t.DType == DType.Int32
        ? new TensorRecord(name, TensorDType.Int32, t.Shape, MemoryMarshal.AsBytes(t.ToIntArray().AsSpan()).ToArray())
        : TensorRecord.FromFloats(name, t.ToArray(), t.Shape);
}
