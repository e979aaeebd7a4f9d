using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>What a stage's trainer gets for one run: the step count its schedule spans (<see cref="Target"/>, which the
/// stage moves while it trains), the warm-up, a stop token (Ctrl-C or the time budget) and a per-step callback.</summary>
internal sealed record StageRun(StepTarget Target, int WarmupSteps, CancellationToken Stop, Action<TrainingStepReport> OnStep)
{
    /// <summary>The length the run starts with (its config's training.max_train_steps).</summary>
    public long MaxSteps { get; } = Target.Steps;
}

/// <summary>Steps done when the trainer returned, and whether it stopped before its target.</summary>
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
/// Plans a stage's length from its steady-state step time, and re-plans after every step: the steps that fit before
/// the deadline at the rate of the last <see cref="WindowSeconds"/> (so slow first steps — JIT tiering, caches,
/// another process — or a machine that speeds up or slows down mid-run move the plan, and the stage ends at its
/// deadline whatever the machine). Times are in seconds on the stage's clock.
/// </summary>
internal sealed class StepPlanner(double deadline, long? maxSteps, double windowSeconds = StepPlanner.WindowSeconds)
{
    /// <summary>The rate is measured over the steps of about the last this many seconds (at least
    /// <see cref="MinimumWindowSteps"/> steps): long enough to average out logging and checkpoint steps, short enough
    /// to follow a changed rate within a fraction of a stage.</summary>
    public const double WindowSeconds = 20;
    public const int MinimumWindowSteps = 5;

    private readonly Queue<(long Step, double Time)> _window = new();

    public double Deadline { get; } = deadline;

    /// <summary>A step finished at <paramref name="now"/>.</summary>
    public void Record(long step, double now)
    {
        _window.Enqueue((step, now));
        while (_window.Count > MinimumWindowSteps && now - _window.Peek().Time > windowSeconds) _window.Dequeue();
    }

    /// <summary>Seconds per step over the window; null before two steps were recorded.</summary>
    public double? SecondsPerStep
    {
        get
        {
            if (_window.Count < 2) return null;
            var ((firstStep, firstTime), (lastStep, lastTime)) = (_window.Peek(), _window.Last());
            return lastStep > firstStep ? Math.Max(lastTime - firstTime, 1e-9) / (lastStep - firstStep) : null;
        }
    }

    /// <summary>The steps to train to, from <paramref name="step"/> done at <paramref name="now"/>: those that fit
    /// before the deadline at <paramref name="secondsPerStep"/> (default: the window's rate), within
    /// [<paramref name="step"/>, maxSteps].</summary>
    public long Plan(long step, double now, double? secondsPerStep = null)
    {
        double rate = secondsPerStep ?? SecondsPerStep ?? double.PositiveInfinity;
        double fits = Math.Max(0, Deadline - now) / Math.Max(rate, 1e-6);
        long plan = step + (long)Math.Min(fits, long.MaxValue / 2.0);
        return Math.Max(step, Math.Min(plan, maxSteps ?? long.MaxValue));
    }
}

/// <summary>
/// Runs one training stage within a wall-clock budget while keeping its learning-rate schedule whole: the first
/// <see cref="CalibrationSteps"/> steps (inside the config's warm-up, so the schedule's length does not matter yet)
/// give a first plan, with the warm-up shortened to a tenth of it; the stage then trains on from the checkpoint while
/// a <see cref="StepPlanner"/> re-plans its length after every step from the measured rate (the trainer's
/// <see cref="StepTarget"/>: the schedule stretches or shrinks with it), so it ends at its deadline on a slow or a fast
/// machine. The deadline still stops it should a step overrun; Ctrl-C stops it with a resumable checkpoint.
/// </summary>
internal sealed class TimedStage(string name, TextWriter output, Func<string, IStepProgress> progress, Func<double>? clock = null)
{
    /// <summary>Steps run to measure the step time; only the second half is timed, because the first steps also pay
    /// for JIT tiering (loops start in unoptimised code) and measured ~3× slower than the steady state.</summary>
    public const int CalibrationSteps = 10;
    private const double WarmupShare = 0.1;
    /// <summary>A resumed stage whose budget is used up still gets this long to reach a checkpoint.</summary>
    private const double MinimumSliceSeconds = 10;

    private readonly Func<double> _now = clock ?? WallClock();

    private static Func<double> WallClock()
    {
        var watch = Stopwatch.StartNew();
        return () => watch.Elapsed.TotalSeconds;
    }

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
        double start = _now();
        double available = Math.Max(budgetSeconds - state.WallSeconds, Math.Min(budgetSeconds, MinimumSliceSeconds));
        double end = start + available;
        var planner = new StepPlanner(end, maxSteps);
        using var deadline = new CancellationTokenSource();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(userStop, deadline.Token);
        void Tick(TrainingStepReport report)
        {
            planner.Record(report.Step, _now());
            if (_now() >= end) deadline.Cancel();
        }
        bool stopped = false;
        try
        {
            if (state.PlannedSteps == null)
            {
                long timingSteps = Math.Min(CalibrationSteps, maxSteps ?? long.MaxValue);
                output.WriteLine($"{name}: timing {timingSteps} steps to plan {Seconds(available)} of training");
                var timer = new StepTimer(state, untimedSteps: timingSteps / 2, _now);
                var result = train(new StageRun(new StepTarget(timingSteps), configWarmup, stop.Token, report =>
                {
                    timer.Record(report);
                    Tick(report);
                }));
                state.Steps = result.Step;
                stopped = result.Stopped;
                if (!stopped) Plan(state, planner, timer.SecondsPerStep, configWarmup);
            }
            if (!stopped && state.Steps < state.PlannedSteps)
            {
                var display = progress(name);
                var timer = new StepTimer(state, untimedSteps: 1, _now);
                var target = new StepTarget(state.PlannedSteps.Value);
                planner = new StepPlanner(end, maxSteps);   // the gap of the trainer's restart is no step time
                try
                {
                    var result = train(new StageRun(target, state.WarmupSteps, stop.Token, report =>
                    {
                        timer.Record(report);
                        Tick(report);
                        // The first step of a run pays for its start-up; the plan follows the steps after it.
                        if (planner.SecondsPerStep != null) target.Steps = planner.Plan(report.Step, _now());
                        state.PlannedSteps = target.Steps;
                        display.Update(report);
                    }));
                    state.Steps = result.Step;
                    stopped = result.Stopped;
                }
                finally { display.Finish(); }
            }
        }
        finally { state.WallSeconds += _now() - start; }

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

    private void Plan(StageState state, StepPlanner planner, double secondsPerStep, int configWarmup)
    {
        long plan = planner.Plan(state.Steps, _now(), secondsPerStep);
        state.PlannedSteps = plan;
        state.WarmupSteps = Math.Min(configWarmup, (int)Math.Min(int.MaxValue, Math.Ceiling(plan * WarmupShare)));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name}: {secondsPerStep:F2} s/step → {plan} steps (warm-up {state.WarmupSteps}) in the {Seconds(planner.Deadline - _now())} left; re-planned as the rate changes"));
    }

    /// <summary>"4 min 05 s", or "12.3 s" under a minute.</summary>
    public static string Seconds(double seconds)
    {
        if (seconds < 59.95) return $"{Math.Round(seconds, 1).ToString(CultureInfo.InvariantCulture)} s";
        long whole = (long)Math.Round(seconds);
        return $"{whole / 60} min {whole % 60:D2} s";
    }

    /// <summary>Times the steps after the first <paramref name="untimedSteps"/> reports (at least one: its time
    /// includes the start-up) into the stage's images/s figures.</summary>
    private sealed class StepTimer(StageState state, long untimedSteps, Func<double> clock)
    {
        private long _reports, _firstStep = -1, _lastStep = -1;
        private double _start, _lastSeconds;

        public void Record(TrainingStepReport report)
        {
            if (++_reports <= Math.Max(1, untimedSteps)) { _firstStep = _lastStep = report.Step; _start = clock(); return; }
            double now = clock() - _start;
            state.TimedSteps += report.Step - _lastStep;
            state.TimedSeconds += now - _lastSeconds;
            (_lastStep, _lastSeconds) = (report.Step, now);
        }

        /// <summary>Mean time of the timed steps; with none, an unknown (tiny) figure that lets the plan take the
        /// whole budget.</summary>
        public double SecondsPerStep => _lastStep > _firstStep ? _lastSeconds / (_lastStep - _firstStep) : 1e-3;
    }
}
