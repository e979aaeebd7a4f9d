using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>What a stage's trainer gets for one run: the step count its schedule spans, the warm-up, a stop
/// token (Ctrl-C or the time budget) and a per-step callback.</summary>
internal sealed record StageRun(long MaxSteps, int WarmupSteps, CancellationToken Stop, Action<TrainingStepReport> OnStep);

/// <summary>Steps done when the trainer returned, and whether it stopped before <see cref="StageRun.MaxSteps"/>.</summary>
internal readonly record struct StageRunResult(long Step, bool Stopped);

/// <summary>Where one training stage of the demo stands (kept in demo-state.json between runs).</summary>
internal sealed class StageState
{
    public long? PlannedSteps { get; set; }
    public int WarmupSteps { get; set; }
    public long Steps { get; set; }
    public bool Done { get; set; }
    /// <summary>"planned steps" or "time budget" once done.</summary>
    public string? StoppedBy { get; set; }
    /// <summary>Wall time of the stage over all runs (model set-up, data loading, checkpoints included).</summary>
    public double WallSeconds { get; set; }
    /// <summary>Steps and seconds between the first and the last step of each run: the training throughput
    /// without start-up costs.</summary>
    public long TimedSteps { get; set; }
    public double TimedSeconds { get; set; }
}

/// <summary>demo-state.json: the settings a demo folder was started with and where each stage stands, so running
/// the same command again resumes instead of starting over.</summary>
internal sealed class DemoState
{
    public const string FileName = "demo-state.json";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public int Seed { get; set; }
    public string Data { get; set; } = "";
    public bool Tiny { get; set; }
    public StageState Tokenizer { get; set; } = new();
    public StageState Generator { get; set; } = new();

    public static DemoState? Load(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<DemoState>(File.ReadAllText(path), Json) ?? throw new InvalidDataException($"{path}: empty"); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not a demo state file ({e.Message}); pass --fresh to start over"); }
    }

    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, FileName), temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(this, Json));
        File.Move(temporary, path, overwrite: true);
    }
}

/// <summary>Where a timed stage reports its steps: the console's progress display, or nothing in tests.</summary>
internal interface IStepProgress
{
    void Update(TrainingStepReport report);
    void Finish();
}

/// <summary>A stage's steps shown through a <see cref="ProgressDisplay"/> with the running loss.</summary>
internal sealed class StageProgress(ProgressDisplay display) : IStepProgress
{
    public void Update(TrainingStepReport report) => display.ReportStep(report);

    public void Finish() => display.Finish();
}

/// <summary>
/// Runs one training stage within a wall-clock budget while keeping its learning-rate schedule whole: the first
/// <see cref="CalibrationSteps"/> steps (inside the config's warm-up, so the schedule's length does not matter yet)
/// measure the step time; the stage is then planned as the steps that fit in the rest of the budget, with the
/// warm-up shortened to a tenth of them, and trained on from the checkpoint to that plan. A deadline still stops it
/// if the machine slows down; Ctrl-C stops it with a resumable checkpoint.
/// </summary>
internal sealed class TimedStage(string name, TextWriter output, Func<string, IStepProgress> progress)
{
    /// <summary>Steps run to measure the step time; only the second half is timed, because the first steps also pay
    /// for JIT tiering (loops start in unoptimised code) and measured ~3× slower than the steady state.</summary>
    public const int CalibrationSteps = 10;
    private const double WarmupShare = 0.1;
    /// <summary>A resumed stage whose budget is used up still gets this long to reach a checkpoint.</summary>
    private const double MinimumSliceSeconds = 10;

    /// <summary>Trains until the plan is done, the budget is spent or <paramref name="userStop"/> fires.
    /// Returns false when stopped by the user (the stage stays not done and resumes next time).</summary>
    public bool Run(StageState state, double budgetSeconds, long? maxSteps, int configWarmup, CancellationToken userStop,
        Func<StageRun, StageRunResult> train)
    {
        if (state.Done)
        {
            output.WriteLine($"{name}: done in an earlier run ({state.Steps} steps); reusing it");
            return true;
        }
        var clock = Stopwatch.StartNew();
        double available = Math.Max(budgetSeconds - state.WallSeconds, Math.Min(budgetSeconds, MinimumSliceSeconds));
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(available));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(userStop, deadline.Token);
        bool stopped = false;
        try
        {
            if (state.PlannedSteps == null)
            {
                long timingSteps = Math.Min(CalibrationSteps, maxSteps ?? long.MaxValue);
                output.WriteLine($"{name}: timing {timingSteps} steps to plan {Seconds(available)} of training");
                var timer = new StepTimer(state, untimedSteps: timingSteps / 2);
                var result = train(new StageRun(timingSteps, configWarmup, stop.Token, timer.Record));
                state.Steps = result.Step;
                stopped = result.Stopped;
                if (!stopped) Plan(state, timer.SecondsPerStep, available - clock.Elapsed.TotalSeconds, maxSteps, configWarmup);
            }
            if (!stopped && state.Steps < state.PlannedSteps)
            {
                var display = progress(name);
                var timer = new StepTimer(state, untimedSteps: 1);
                try
                {
                    var result = train(new StageRun(state.PlannedSteps.Value, state.WarmupSteps, stop.Token, report =>
                    {
                        timer.Record(report);
                        display.Update(report);
                    }));
                    state.Steps = result.Step;
                    stopped = result.Stopped;
                }
                finally { display.Finish(); }
            }
        }
        finally { state.WallSeconds += clock.Elapsed.TotalSeconds; }

        if (stopped && userStop.IsCancellationRequested)
        {
            output.WriteLine($"{name}: stopped at step {state.Steps}; run the same command again to resume");
            return false;
        }
        state.PlannedSteps ??= state.Steps;   // the budget ran out while timing
        state.Done = true;
        state.StoppedBy = stopped ? "time budget" : "planned steps";
        output.WriteLine($"{name}: {state.Steps} steps in {Seconds(state.WallSeconds)}" +
                         (stopped ? $" (the time budget ended the planned {state.PlannedSteps})" : ""));
        return true;
    }

    private void Plan(StageState state, double secondsPerStep, double secondsLeft, long? maxSteps, int configWarmup)
    {
        long affordable = state.Steps + (long)Math.Max(0, secondsLeft / Math.Max(secondsPerStep, 1e-6));
        long plan = Math.Max(state.Steps, Math.Min(affordable, maxSteps ?? long.MaxValue));
        state.PlannedSteps = plan;
        state.WarmupSteps = Math.Min(configWarmup, (int)Math.Min(int.MaxValue, Math.Ceiling(plan * WarmupShare)));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name}: {secondsPerStep:F2} s/step → {plan} steps (warm-up {state.WarmupSteps}) in the {Seconds(secondsLeft)} left"));
    }

    /// <summary>"4 min 05 s", or "12.3 s" under a minute.</summary>
    public static string Seconds(double seconds)
    {
        if (seconds < 59.95) return $"{Math.Round(seconds, 1).ToString(CultureInfo.InvariantCulture)} s";
        long whole = (long)Math.Round(seconds);
        return $"{whole / 60} min {whole % 60:D2} s";
    }

    /// <summary>Times the steps of one trainer run from its first reported step on (which pays for JIT
    /// compilation and data start-up) and adds them to the stage's throughput totals.</summary>
    /// <summary>Times the steps after the first <paramref name="untimedSteps"/> reports (at least one: its time
    /// includes the start-up) into the stage's images/s figures.</summary>
    private sealed class StepTimer(StageState state, long untimedSteps)
    {
        private readonly Stopwatch _clock = new();
        private long _reports, _firstStep = -1, _lastStep = -1;
        private double _lastSeconds;

        public void Record(TrainingStepReport report)
        {
            if (++_reports <= Math.Max(1, untimedSteps)) { _firstStep = _lastStep = report.Step; _clock.Restart(); return; }
            double now = _clock.Elapsed.TotalSeconds;
            state.TimedSteps += report.Step - _lastStep;
            state.TimedSeconds += now - _lastSeconds;
            (_lastStep, _lastSeconds) = (report.Step, now);
        }

        /// <summary>Mean time of the timed steps; with none, an unknown (tiny) figure that lets the plan take the
        /// whole budget.</summary>
        public double SecondsPerStep => _lastStep > _firstStep ? _lastSeconds / (_lastStep - _firstStep) : 1e-3;
    }
}
