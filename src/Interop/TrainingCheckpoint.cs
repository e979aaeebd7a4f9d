using System.Globalization;
using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Autograd.Optim;
using MaskBit.Kernels;

namespace MaskBit.Models.Interop;

/// <summary>Where a data order continues: the epoch and the next batch within it (either stage's data).</summary>
public readonly record struct DataPosition(int Epoch, int Batch);

/// <summary>fp16's dynamic loss scale as a checkpoint keeps it: torch GradScaler's state (the scale and its growth
/// tracker, the clean steps since the last overflow) and the count of skipped steps that the metrics log.</summary>
public interface ILossScaleState
{
    double Scale { get; set; }
    int GrowthTracker { get; set; }
    long SkippedSteps { get; set; }
}

/// <summary>Everything a training run needs to continue exactly: modules, their optimizers, EMAs and learning-rate
/// schedules, the random generators, the fp16 loss scale, the step, the data position and the resolved config. Names
/// ("model", "discriminator", ...) key the parts.</summary>
public sealed class TrainingState
{
    public required IReadOnlyDictionary<string, Module> Modules { get; init; }
    public IReadOnlyDictionary<string, AdamW> Optimizers { get; init; } = new Dictionary<string, AdamW>();
    /// <summary>EMAs of the parameters of the module with the same name.</summary>
    public IReadOnlyDictionary<string, Ema> Emas { get; init; } = new Dictionary<string, Ema>();
    /// <summary>Schedules of the optimizer with the same name; restoring one sets that optimizer's learning rate.</summary>
    public IReadOnlyDictionary<string, LrSchedule> Schedules { get; init; } = new Dictionary<string, LrSchedule>();
    public IReadOnlyDictionary<string, Rng> Rngs { get; init; } = new Dictionary<string, Rng>();
    /// <summary>fp16's dynamic loss scale; null when the run does not scale its loss.</summary>
    public ILossScaleState? LossScale { get; init; }
    /// <summary>Optimisation steps done.</summary>
    public long Step { get; set; }
    /// <summary>The next batch the data would give.</summary>
    public DataPosition Data { get; set; }
    public string? ConfigYaml { get; set; }
}

/// <summary>
/// Training checkpoints as one safetensors file (the ecosystem's safe format): tensors `module.&lt;part&gt;.&lt;key&gt;`,
/// `ema.&lt;part&gt;.&lt;parameter name&gt;`, `optim.&lt;part&gt;.&lt;i&gt;.exp_avg|exp_avg_sq`; the step, data position,
/// schedules' steps, RNG states, optimizer counters, the loss scale (`loss_scale.*`) and the config in the header
/// metadata. Written to a temporary
/// file and renamed, so a crash never destroys the previous one. Checkpoints of the first format revision (EMA
/// keyed by parameter index, data position and schedule steps as `extra.*` strings) still load.
/// </summary>
public static class TrainingCheckpoint
{
    public const string Format = "maskbit-training-checkpoint/1";

    public static void Save(string path, TrainingState s)
    {
        var tensors = new List<TensorRecord>();
        var meta = new Dictionary<string, string>
        {
            ["format"] = Format, ["step"] = Text(s.Step), ["data.epoch"] = Text(s.Data.Epoch), ["data.batch"] = Text(s.Data.Batch),
        };
        foreach (var (part, module) in s.Modules)
            foreach (var (key, t) in module.StateDict()) tensors.Add(Record($"module.{part}.{key}", t));
        foreach (var (part, ema) in s.Emas)
        {
            var names = ParameterNames(s, part);
            for (int i = 0; i < ema.Shadow.Count; i++) tensors.Add(Record($"ema.{part}.{names[i]}", ema.Shadow[i]));
            meta[$"ema.{part}.optimization_step"] = Text(ema.OptimizationStep);
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
                meta[$"optim.{part}.{i}.step"] = Text(opt.StepOf(p));
            }
        }
        foreach (var (part, schedule) in s.Schedules) meta[$"schedule.{part}.step"] = Text(schedule.Step);
        foreach (var (name, rng) in s.Rngs) meta[$"rng.{name}"] = rng.State;
        if (s.LossScale is { } scale)
        {
            meta["loss_scale.scale"] = scale.Scale.ToString("R", CultureInfo.InvariantCulture);
            meta["loss_scale.growth_tracker"] = Text(scale.GrowthTracker);
            meta["loss_scale.skipped_steps"] = Text(scale.SkippedSteps);
        }
        if (s.ConfigYaml != null) meta["config"] = s.ConfigYaml;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        SafeTensors.Save(path, tensors, meta);
    }

    /// <summary>Restores a checkpoint into the given state (modules, EMAs, optimizers, schedules and RNGs are updated
    /// in place). Any mismatch (missing tensor, other shape, other format) is an error naming the file and the tensor.
    /// <paramref name="optimizers"/> off keeps the optimizers' fresh moments; <paramref name="schedules"/> off puts
    /// the schedules at step 0 (the reference's dont_resume_optimizer and resume_lr_scheduler=False).</summary>
    public static void Restore(string path, TrainingState s, bool optimizers = true, bool schedules = true)
    {
        var sd = SafeTensors.Open(path);
        var meta = Metadata(sd);
        string Meta(string key) => meta.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"{path}: checkpoint metadata has no '{key}'");
        if (Meta("format") != Format) throw new InvalidDataException($"{path}: not a MaskBit training checkpoint (format '{Meta("format")}')");

        foreach (var (part, module) in s.Modules)
        {
            try { module.LoadStateDict(ModuleTensors(sd, part)); }
            catch (InvalidDataException e) { throw new InvalidDataException($"{path} ({part}): {e.Message}", e); }
        }
        foreach (var (part, ema) in s.Emas)
        {
            var shadow = EmaTensors(sd, part, ParameterNames(s, part)) ?? throw new InvalidDataException($"{path}: no EMA weights of '{part}'");
            for (int i = 0; i < ema.Shadow.Count; i++) Copy(ema.Shadow[i], shadow[i], path);
            ema.SetStep(Long(Meta($"ema.{part}.optimization_step")));
        }
        foreach (var (part, opt) in s.Optimizers.Where(_ => optimizers))
        {
            opt.LearningRate = double.Parse(Meta($"optim.{part}.lr"), CultureInfo.InvariantCulture);
            for (int i = 0; i < opt.Parameters.Count; i++)
            {
                if (!meta.TryGetValue($"optim.{part}.{i}.step", out var step)) continue;
                opt.LoadState(opt.Parameters[i], Get(sd, $"optim.{part}.{i}.exp_avg", path), Get(sd, $"optim.{part}.{i}.exp_avg_sq", path), Long(step));
            }
        }
        s.Step = Long(Meta("step"));
        s.Data = meta.ContainsKey("data.epoch")
            ? new DataPosition((int)Long(Meta("data.epoch")), (int)Long(Meta("data.batch")))
            : new DataPosition((int)Long(meta.GetValueOrDefault("extra.data_epoch", "0")), (int)Long(meta.GetValueOrDefault("extra.data_batch", "0")));
        foreach (var (part, schedule) in s.Schedules)
        {
            // First revision: the tokenizer's two schedules under extra.*, the generator's implied by the step.
            string? step = meta.GetValueOrDefault($"schedule.{part}.step")
                ?? meta.GetValueOrDefault(part == "discriminator" ? "extra.discriminator_scheduler_step" : "extra.scheduler_step");
            schedule.SetStep(!schedules ? 0 : step != null ? Long(step) : s.Step, s.Optimizers.GetValueOrDefault(part));
        }
        foreach (var (name, rng) in s.Rngs)
            rng.State = meta.GetValueOrDefault($"rng.{name}") ?? Meta("rng");   // first revision: one generator, "rng"
        // A checkpoint without a loss scale (older, or from a bf16/float32 run) leaves the scale at its start, as
        // accelerate does without a saved scaler.
        if (s.LossScale is { } lossScale && meta.TryGetValue("loss_scale.scale", out var scale))
        {
            lossScale.Scale = double.Parse(scale, CultureInfo.InvariantCulture);
            lossScale.GrowthTracker = (int)Long(Meta("loss_scale.growth_tracker"));
            lossScale.SkippedSteps = Long(Meta("loss_scale.skipped_steps"));
        }
        if (meta.TryGetValue("config", out var cfg)) s.ConfigYaml = cfg;
    }

    // ---- reading parts of a checkpoint (the weights loader) ----------------------------------------------------

    public static bool IsTrainingCheckpoint(StateDict stateDict) => Metadata(stateDict).GetValueOrDefault("format") == Format;

    /// <summary>Whether the file is a training checkpoint (a safetensors file of this format), not plain weights.</summary>
    public static bool IsTrainingCheckpoint(string path) =>
        path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) && SafeTensors.List(path).Metadata.Any(kv => kv.Key == "format" && kv.Value as string == Format);

    /// <summary>The parts (module names) a training checkpoint holds.</summary>
    public static IReadOnlyList<string> Parts(StateDict stateDict) =>
        stateDict.Names.Where(n => n.StartsWith("module.", StringComparison.Ordinal)).Select(n => n.Split('.')[1]).Distinct().ToList();

    /// <summary>The state dict of one part, keyed as the module's own state dict.</summary>
    public static Dictionary<string, TensorRecord> ModuleTensors(StateDict stateDict, string part)
    {
        string prefix = $"module.{part}.";
        return stateDict.Where(r => r.Name.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(r => r.Name[prefix.Length..]);
    }

    /// <summary>The EMA weights of a part in the order of <paramref name="parameterNames"/> (the module's parameters),
    /// or null when the checkpoint keeps none; a parameter it lacks is null. Index-keyed EMAs (first revision) are
    /// read by position.</summary>
    public static IReadOnlyList<TensorRecord?>? EmaTensors(StateDict stateDict, string part, IReadOnlyList<string> parameterNames)
    {
        string prefix = $"ema.{part}.";
        if (!stateDict.Names.Any(n => n.StartsWith(prefix, StringComparison.Ordinal))) return null;
        bool byIndex = stateDict.TryGet(prefix + "0", out _) && !parameterNames.Contains("0");
        return parameterNames.Select((name, i) =>
            stateDict.TryGet(prefix + (byIndex ? Text(i) : name), out var r) ? r : null).ToList();
    }

    private static IReadOnlyList<string> ParameterNames(TrainingState s, string part) =>
        s.Modules.TryGetValue(part, out var module) ? module.NamedParameters().Select(p => p.Name).ToList()
            : throw new ArgumentException($"the EMA '{part}' has no module of that name");

    private static Dictionary<string, string> Metadata(StateDict sd) => sd.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value?.ToString() ?? "");

    private static Tensor Get(StateDict sd, string name, string path) =>
        sd.TryGet(name, out var r) ? r.ToTensor() : throw new InvalidDataException($"{path}: missing tensor '{name}'");

    private static void Copy(Tensor target, TensorRecord? value, string path)
    {
        if (value == null) throw new InvalidDataException($"{path}: the EMA weights lack a parameter of shape {ShapeUtil.Format(target.Shape)}");
        if (!value.Shape.AsSpan().SequenceEqual(target.Shape))
            throw new InvalidDataException($"{path}: shape {ShapeUtil.Format(value.Shape)} does not match {ShapeUtil.Format(target.Shape)}");
        value.CopyTo(target);
    }

    private static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);
    private static long Long(string text) => long.Parse(text, CultureInfo.InvariantCulture);

    private static TensorRecord Record(string name, Tensor t) => TensorRecord.FromTensor(name, t);
}
