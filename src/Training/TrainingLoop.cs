using System.Diagnostics;
using System.Globalization;
using System.Text;
using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;

namespace MaskBit.Models.Training;

/// <summary>One finished step: <see cref="Step"/> steps are done; <see cref="Values"/> holds the step's loss terms,
/// gradient norms and learning rates; <see cref="Loss"/> is the stage's main loss.</summary>
public sealed record TrainingStepReport(long Step, long MaxSteps, IReadOnlyDictionary<string, double> Values, double Loss, double ItPerSecond);

public enum TrainingOutcome { Completed, Cancelled }

public sealed record TrainingResult(TrainingOutcome Outcome, long Step, string? LastCheckpoint);

/// <summary>A loss term (or gradient norm) became NaN or ±Inf; nothing of that step was applied or saved.</summary>
public sealed class TrainingDivergedException(string term, long step, double value, string? lastCheckpoint = null)
    : Exception($"training stopped: {term} is {value.ToString(CultureInfo.InvariantCulture)} at step {step}; " +
                (lastCheckpoint != null ? $"the last good checkpoint is {lastCheckpoint}" : "no checkpoint was written yet"))
{
    public string Term { get; } = term;
    public long Step { get; } = step;
    public double Value { get; } = value;
    public string? LastCheckpoint { get; } = lastCheckpoint;

    /// <summary>The same stop, naming the run's last checkpoint (the step does not know it).</summary>
    public TrainingDivergedException WithCheckpoint(string? checkpoint) => new(Term, Step, Value, checkpoint);
}

/// <summary>experiment.logger: where the loop's values go besides metrics.jsonl (always written).</summary>
public enum TrainingLogger { None, TensorBoard }

/// <summary>The cadence of a run, the same keys and defaults for both stages (experiment.* and
/// training.max_train_steps). 0 turns a periodic action off; a final checkpoint is always written.</summary>
public sealed record LoopSettings
{
    /// <summary>training.max_train_steps: required, as in both reference scripts.</summary>
    public required long MaxTrainSteps { get; init; }
    /// <summary>experiment.log_every: metrics.jsonl line and progress line.</summary>
    public long LogEvery { get; init; } = 50;
    /// <summary>experiment.save_every: resumable checkpoint.</summary>
    public long SaveEvery { get; init; }
    /// <summary>experiment.generate_every: reconstruction / sample grid (EMA weights when kept).</summary>
    public long GenerateEvery { get; init; }
    /// <summary>experiment.eval_every: evaluation on dataset.params.eval_shards_path_or_url (EMA weights when kept).</summary>
    public long EvalEvery { get; init; }
    /// <summary>experiment.log_grad_norm_every: per-parameter gradient norms (‖g‖₂ / numel, as the reference's
    /// log_grad_norm) as grad_norm/&lt;parameter&gt; metrics.</summary>
    public long LogGradNormEvery { get; init; }
    /// <summary>experiment.resume: continue from the run folder's newest checkpoint. On by default: every shipped
    /// config sets it, and running the same command again continues.</summary>
    public bool Resume { get; init; } = true;
    /// <summary>experiment.resume_lr_scheduler: off restarts the schedules at step 0 on resume (the reference's default: on).</summary>
    public bool ResumeLrScheduler { get; init; } = true;
    /// <summary>experiment.dont_resume_optimizer (inverted): off starts the optimizers' moments afresh on resume.</summary>
    public bool ResumeOptimizer { get; init; } = true;
    /// <summary>experiment.init_checkpoint: where a fresh run starts. A training checkpoint restores its whole state
    /// (weights, optimizers, EMAs, schedules, step), as the reference's accelerator.load_state; a weights file is
    /// loaded by the stage. Unlike the reference, which ignores a missing file, a missing file is a config error
    /// (a typo there would silently start from scratch).</summary>
    public string InitCheckpoint { get; init; } = "";
    /// <summary>Optimisation steps per epoch when experiment.max_train_examples sets the epoch length (the
    /// reference's SimpleImagenet: ⌈examples / (batch · workers)⌉ · workers batches, ⌈batches / accumulation⌉
    /// steps); null: an epoch is one pass over the data. Only the logged epoch follows it; the data is not cut.</summary>
    public long? StepsPerEpoch { get; init; }
    public TrainingLogger Logger { get; init; }

    private static string ExistingFileOrEmpty(MaskBitConfig c, string key)
    {
        string path = c.GetString(key, "");
        if (path.Length > 0 && !File.Exists(path))
            throw new ConfigException($"{c.Find(key)!.Source}: '{key}' names {path}, which does not exist");
        return path;
    }

    public static LoopSettings From(MaskBitConfig c, RunSettings run)
    {
        var settings = new LoopSettings
        {
            MaxTrainSteps = c.GetInt("training.max_train_steps"),
            LogEvery = c.GetInt("experiment.log_every", 50),
            SaveEvery = c.GetInt("experiment.save_every", 0),
            GenerateEvery = c.GetInt("experiment.generate_every", 0),
            EvalEvery = c.GetInt("experiment.eval_every", 0),
            LogGradNormEvery = c.GetInt("experiment.log_grad_norm_every", 0),
            Resume = c.GetBool("experiment.resume", true),
            ResumeLrScheduler = c.GetBool("experiment.resume_lr_scheduler", true),
            ResumeOptimizer = !c.GetBool("experiment.dont_resume_optimizer", false),
            InitCheckpoint = ExistingFileOrEmpty(c, "experiment.init_checkpoint"),
            StepsPerEpoch = run.MaxTrainExamples is { } examples && run.BatchSize is { } batch
                ? EpochSteps(examples, batch, run.ConfiguredWorkers, run.AccumulationSteps) : null,
            Logger = c.GetString("experiment.logger", "none") switch
            {
                "none" => TrainingLogger.None,
                "tensorboard" => TrainingLogger.TensorBoard,
                "wandb" => throw new ConfigException($"{c.File}: experiment.logger 'wandb' is not supported; use 'tensorboard' (metrics.jsonl is always written)"),
                var other => throw new ConfigException($"{c.File}: experiment.logger must be 'tensorboard' or 'none', not '{other}'"),
            },
        };
        if (settings.MaxTrainSteps < 1) throw new ConfigException($"{c.File}: training.max_train_steps must be at least 1, got {settings.MaxTrainSteps}");
        if (settings.LogEvery < 1) throw new ConfigException($"{c.File}: experiment.log_every must be at least 1, got {settings.LogEvery}");
        foreach (var (key, value) in new[] { ("save_every", settings.SaveEvery), ("generate_every", settings.GenerateEvery), ("eval_every", settings.EvalEvery), ("log_grad_norm_every", settings.LogGradNormEvery) })
            if (value < 0) throw new ConfigException($"{c.File}: experiment.{key} must be 0 (off) or positive, got {value}");
        return settings;
    }

    /// <summary>The reference's epoch length in optimisation steps (train_*.py's num_update_steps_per_epoch).</summary>
    public static long EpochSteps(long examples, int batchSize, int workers, int accumulation)
    {
        long workerCount = Math.Max(1, workers);
        long batches = (examples + batchSize * workerCount - 1) / (batchSize * workerCount) * workerCount;
        return (batches + accumulation - 1) / accumulation;
    }

    /// <summary>Whether per-parameter gradient norms are logged at the step after <paramref name="stepsDone"/>.</summary>
    public bool LogsGradNormsAt(long stepsDone) => LogGradNormEvery > 0 && (stepsDone + 1) % LogGradNormEvery == 0;
}

/// <summary>The length of a run that may change while it trains (a time budget re-planned from the measured step
/// time): <see cref="TrainingLoop"/> reads it before every step, in place of training.max_train_steps, and stretches
/// the state's learning-rate schedules to it. One process only (ranks would each need the same value).</summary>
public sealed class StepTarget(long steps)
{
    public long Steps { get; set; } = steps;
}

/// <summary>What a stage plugs into <see cref="TrainingLoop"/>: its checkpointable state, its data and its step.</summary>
public interface ITrainingStage
{
    /// <summary>Modules, optimizers, EMAs, schedules and RNGs (the loop keeps the step and data position in it).</summary>
    TrainingState State { get; }
    /// <summary>Images per optimisation step (all accumulated micro-batches of all ranks).</summary>
    int SamplesPerStep { get; }
    /// <summary>(label, metric) pairs of the progress line; the first is the stage's main loss.</summary>
    IReadOnlyList<(string Label, string Key)> ProgressTerms { get; }
    /// <summary>The run's first log line (models, data, batch).</summary>
    string Describe();
    /// <summary>Opens the data at <paramref name="position"/>; a fresh run (<paramref name="resumed"/> off) may
    /// initialise weights first.</summary>
    void Start(DataPosition position, bool resumed);
    /// <summary>Where the data continues after the batches taken so far.</summary>
    DataPosition Position { get; }
    /// <summary>One optimisation step after <paramref name="stepsDone"/> steps; returns the logged values.</summary>
    /// <exception cref="TrainingDivergedException">A term became NaN or ±Inf (nothing was applied).</exception>
    Dictionary<string, double> TrainStep(long stepsDone);
    /// <summary>The TensorBoard tag of the grids <see cref="WriteSamples"/> writes.</summary>
    string SamplesTag { get; }
    /// <summary>Writes a grid of the model's output at <paramref name="path"/> (the EMA weights are in place).</summary>
    void WriteSamples(long step, string path);
    /// <summary>Scores on held-out data (EMA weights in place), or null when the stage has none configured.</summary>
    IReadOnlyDictionary<string, double>? Evaluate();
}

/// <summary>The EMA weights swapped into their modules around a body (the reference's store / copy_to / restore).</summary>
public static class EmaWeights
{
    public static T With<T>(TrainingState state, Func<T> body)
    {
        if (state.Emas.Count == 0) return body();
        var swaps = state.Emas.Select(kv => (Ema: kv.Value, Parameters: state.Modules[kv.Key].Parameters().ToList())).ToList();
        List<List<Tensor>> saved;
        using (TensorScope.Outside())
        using (Tape.NoGrad())
            saved = swaps.Select(s => s.Parameters.Select(p => p.Detach().Clone()).ToList()).ToList();
        foreach (var (ema, parameters) in swaps) ema.CopyTo(parameters);
        try { return body(); }
        finally
        {
            for (int m = 0; m < swaps.Count; m++)
                for (int i = 0; i < saved[m].Count; i++) swaps[m].Parameters[i].CopyFrom_(saved[m][i]);
        }
    }

    public static void With(TrainingState state, Action body) => With(state, () => { body(); return 0; });
}

/// <summary>
/// The training loop of both stages, top to bottom: write the resolved config, resume from the newest checkpoint
/// (metrics.jsonl loses the lines past it), then step until training.max_train_steps — logging, checkpointing,
/// writing grids and evaluating at the config's cadence — and write a final checkpoint. Cancellation (Ctrl-C,
/// SIGTERM, a time budget) stops after the current step with a checkpoint; a NaN/Inf term stops the run naming
/// the term, the step and the last good checkpoint. Every step runs in its own <see cref="TensorScope"/>.
/// <para>Launched by <c>mpirun</c>, every rank runs this loop over its share of each global batch (the stage's
/// steps average the gradients, <see cref="GradientAverager"/>): rank 0's weights go to every rank first, the logged
/// values are averaged over the ranks every step, a stop asked on any rank stops all after the same step, and only
/// rank 0 writes the config, metrics, checkpoints, grids and log lines and evaluates (<see cref="DataParallel"/>).</para>
/// </summary>
public static class TrainingLoop
{
    public static TrainingResult Run(RunFolder run, LoopSettings settings, ITrainingStage stage, TextWriter log,
        Action<TrainingStepReport>? onStep = null, CancellationToken cancel = default, StepTarget? target = null)
    {
        var state = stage.State;
        var group = ProcessGroup.World;
        bool main = group.IsMain();
        if (!main) (log, onStep) = (TextWriter.Null, null);
        if (main) run.Start(state.ConfigYaml ?? "");
        group.Barrier();
        string? lastCheckpoint = settings.Resume ? run.LatestCheckpoint() : null;
        if (lastCheckpoint != null)
        {
            TrainingCheckpoint.Restore(lastCheckpoint, state, optimizers: settings.ResumeOptimizer, schedules: settings.ResumeLrScheduler);
            log.WriteLine($"resumed from {lastCheckpoint} at step {state.Step}" +
                          (settings.ResumeOptimizer ? "" : "; optimizer state not resumed (experiment.dont_resume_optimizer)") +
                          (settings.ResumeLrScheduler ? "" : "; learning-rate schedule restarted (experiment.resume_lr_scheduler=false)"));
        }
        else if (settings.Resume) log.WriteLine("no checkpoint to resume from; training from scratch");
        bool initialized = lastCheckpoint == null && InitializeFrom(settings.InitCheckpoint, state, log);
        DataParallel.RequireSameStep(group, state.Step);
        stage.Start(state.Data, resumed: lastCheckpoint != null || initialized);
        DataParallel.BroadcastWeights(group, state);
        using var metrics = main ? run.OpenMetrics(state.Step) : null;
        using var tensorBoard = main && settings.Logger == TrainingLogger.TensorBoard ? new TensorBoardLog(run.TensorBoardDir, state.Step) : null;
        log.WriteLine($"{stage.Describe()}; steps {state.Step}/{settings.MaxTrainSteps}; output {run.Root}" +
                      (group.WorldSize > 1 ? $"; {group.WorldSize} ranks" : ""));

        // Every rank knows the path; rank 0 writes the file, and the others pass once it is there (they resume from it).
        string Save()
        {
            state.Data = stage.Position;
            string path = run.CheckpointPath(state.Step);
            if (main)
            {
                TrainingCheckpoint.Save(path, state);
                log.WriteLine($"saved checkpoint {path}");
            }
            group.Barrier();
            return lastCheckpoint = path;
        }
        bool SavedNow() => lastCheckpoint == run.CheckpointPath(state.Step);

        var window = Stopwatch.StartNew();
        long windowStart = state.Step;
        double itPerSecond = 0;
        bool stopAgreed = false;
        long maxSteps = settings.MaxTrainSteps;
        if (target != null && group.WorldSize > 1) throw new InvalidOperationException("a changing step target needs a single process");
        while (state.Step < (maxSteps = Retarget(state, maxSteps, target)))
        {
            if (group.WorldSize == 1 ? cancel.IsCancellationRequested : stopAgreed)
            {
                if (!SavedNow()) Save();
                log.WriteLine($"cancelled at step {state.Step}; run the same command again to resume from {lastCheckpoint}");
                return new TrainingResult(TrainingOutcome.Cancelled, state.Step, lastCheckpoint);
            }

            Dictionary<string, double> values;
            using (TensorScope.Begin())
            {
                try { values = stage.TrainStep(state.Step); }
                catch (TrainingDivergedException e) { throw e.WithCheckpoint(lastCheckpoint); }
                state.Step++;
                DataParallel.AverageBuffers(group, state);
                stopAgreed = DataParallel.AverageAndAgreeOnStop(group, values, cancel.IsCancellationRequested);
                // Inside the step's scope: the tokenizer's grid shows the step's last images.
                if (main && Every(settings.GenerateEvery, state.Step))
                {
                    string path = run.SamplesPath(state.Step);
                    Directory.CreateDirectory(run.SamplesDir);
                    EmaWeights.With(state, () => stage.WriteSamples(state.Step, path));
                    if (File.Exists(path)) tensorBoard?.Image(state.Step, stage.SamplesTag, path);
                    log.WriteLine($"saved {path}");
                }
            }

            if (Every(settings.LogEvery, state.Step) || state.Step == maxSteps)
            {
                itPerSecond = (state.Step - windowStart) / Math.Max(window.Elapsed.TotalSeconds, 1e-9);
                values["epoch"] = settings.StepsPerEpoch is { } epochSteps ? state.Step / epochSteps : stage.Position.Epoch;
                values["it_per_s"] = itPerSecond;
                values["samples_per_s"] = itPerSecond * stage.SamplesPerStep;
                metrics?.Write(state.Step, values);
                tensorBoard?.Scalars(state.Step, values);
                log.WriteLine(ProgressLine(stage, state.Step, maxSteps, values, itPerSecond));
                window.Restart();
                windowStart = state.Step;
            }
            onStep?.Invoke(new TrainingStepReport(state.Step, maxSteps, values,
                values.GetValueOrDefault(stage.ProgressTerms[0].Key, double.NaN), itPerSecond));
            if (Every(settings.SaveEvery, state.Step)) Save();
            if (main && Every(settings.EvalEvery, state.Step) && EmaWeights.With(state, stage.Evaluate) is { } scores)
            {
                var evalValues = scores.ToDictionary(kv => "eval/" + kv.Key, kv => kv.Value);
                metrics!.Write(state.Step, evalValues);
                tensorBoard?.Scalars(state.Step, evalValues);
                log.WriteLine($"eval at step {state.Step}: " + string.Join("  ", scores.Select(kv => $"{kv.Key} {kv.Value.ToString("F4", CultureInfo.InvariantCulture)}")));
            }
        }
        if (!SavedNow()) Save();
        log.WriteLine($"finished: {state.Step} steps; final checkpoint {lastCheckpoint}");
        return new TrainingResult(TrainingOutcome.Completed, state.Step, lastCheckpoint);
    }

    /// <summary>The steps to train to: the target's when it has moved (the schedules stretched to it), else as before.</summary>
    private static long Retarget(TrainingState state, long maxSteps, StepTarget? target)
    {
        if (target == null || target.Steps == maxSteps) return maxSteps;
        foreach (var (name, schedule) in state.Schedules) schedule.Retarget(target.Steps, state.Optimizers.GetValueOrDefault(name));
        return target.Steps;
    }

    /// <summary>experiment.init_checkpoint of a fresh run: a training checkpoint restores the whole state (true);
    /// a weights file is left to the stage's <see cref="ITrainingStage.Start"/>.</summary>
    private static bool InitializeFrom(string path, TrainingState state, TextWriter log)
    {
        if (path.Length == 0) return false;
        if (!TrainingCheckpoint.IsTrainingCheckpoint(path)) return false;
        TrainingCheckpoint.Restore(path, state);
        log.WriteLine($"initialised from the training checkpoint {path} (weights, optimizers, EMA, schedules) at step {state.Step}");
        return true;
    }

    private static bool Every(long period, long step) => period > 0 && step % period == 0;

    private static string ProgressLine(ITrainingStage stage, long step, long maxSteps, IReadOnlyDictionary<string, double> values, double itPerSecond)
    {
        var line = new StringBuilder();
        line.Append(CultureInfo.InvariantCulture, $"step {step}/{maxSteps}");
        foreach (var (label, key) in stage.ProgressTerms)
            if (values.TryGetValue(key, out var x)) line.Append(CultureInfo.InvariantCulture, $"  {label} {x:F4}");
        if (values.TryGetValue("lr", out var lr)) line.Append(CultureInfo.InvariantCulture, $"  lr {lr:0.00e+00}");
        line.Append(CultureInfo.InvariantCulture, $"  {itPerSecond:F2} it/s  {itPerSecond * stage.SamplesPerStep:F1} samples/s");
        double remaining = (maxSteps - step) / Math.Max(itPerSecond, 1e-9);
        if (step < maxSteps && double.IsFinite(remaining) && remaining < TimeSpan.MaxValue.TotalSeconds)
            line.Append(CultureInfo.InvariantCulture, $"  eta {TimeSpan.FromSeconds(Math.Round(remaining)):c}");
        return line.ToString();
    }
}
