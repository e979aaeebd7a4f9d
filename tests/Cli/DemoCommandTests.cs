using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Nodes;
using MaskBit.Cli.Commands;
using MaskBit.Cli.Report;
using MaskBit.Models.Data;
using MaskBit.Models.Training;

namespace MaskBit.Tests.Cli;

public class DemoCommandTests
{
    private static (int Code, string Out, string Err) Run(IEnumerable<string> args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = MaskBit.Cli.Program.Run(args.ToArray(), o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Test]
    public void TinyDemoWritesEveryFileOfTheReport()
    {
        var dir = Directory.CreateTempSubdirectory("maskbit-demo").FullName;
        string run = Path.Combine(dir, "run");
        var args = new List<string> { "demo", "--tiny", "--max-steps", "2", "--out", run, "--seed", "3" };
        // The embedded Fashion-MNIST when installed (CI installs it), else a small data set in its file format.
        if (!Directory.Exists(FashionMnist.DefaultRoot) && Environment.GetEnvironmentVariable(FashionMnist.RootVariable) == null)
            args.AddRange(new[] { "--data", WriteSyntheticFashionMnist(Path.Combine(dir, "data")) });

        var (code, output, err) = Run(args);
        Assert.That(code, Is.EqualTo(0), output + err);
        foreach (var file in new[] { "reconstructions.png", "samples.png", "losses.png", "metrics.json", "index.html", "tokenizer/metrics.jsonl",
                                     "generator/metrics.jsonl", "tokenizer/checkpoints/checkpoint-2.safetensors", "generator/checkpoints/checkpoint-2.safetensors" })
            Assert.That(File.Exists(Path.Combine(run, file)), Is.True, file);

        string html = File.ReadAllText(Path.Combine(run, "index.html"));
        foreach (var image in new[] { "reconstructions.png", "samples.png", "losses.png" })
            Assert.That(html, Does.Contain($"src=\"{image}\""));
        Assert.That(html, Does.Contain("maskbit demo --minutes").And.Contain("maskbit train tokenizer").And.Contain("Machine"));

        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json")));
        var m = metrics.RootElement;
        Assert.That(m.GetProperty("complete").GetBoolean(), Is.True);
        Assert.That(m.GetProperty("tokenizer").GetProperty("steps").GetInt64(), Is.EqualTo(2));
        Assert.That(m.GetProperty("generator").GetProperty("steps").GetInt64(), Is.EqualTo(2));
        foreach (var (section, key) in new[]
                 {
                     ("evaluation", "psnr"), ("evaluation", "ssim"), ("evaluation", "codebook_usage"), ("generator", "final_loss"),
                     ("tokenizer", "train_images_per_second"), ("generator", "train_images_per_second"), ("sampling", "images_per_second"),
                     ("tokenizer", "wall_seconds"), ("generator", "wall_seconds"),
                 })
            Assert.That(m.GetProperty(section).GetProperty(key).GetDouble(), Is.GreaterThan(0), $"{section}.{key}");
        Assert.That(m.GetProperty("total_wall_seconds").GetDouble(), Is.GreaterThan(0));
        // The shipped classifier scores the samples next to as many real test images, per class.
        var quality = m.GetProperty("quality");
        Assert.That(quality.GetProperty("images").GetInt32(), Is.EqualTo(10));
        Assert.That(quality.GetProperty("per_class").GetArrayLength(), Is.EqualTo(10));
        Assert.That(quality.GetProperty("real_class_agreement").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(quality.GetProperty("frechet_distance").GetDouble(), Is.GreaterThanOrEqualTo(0));
        Assert.That(html, Does.Contain("<h2>Sample quality</h2>"));

        var plot = ImageIO.Read(Path.Combine(run, "losses.png"));
        Assert.That((plot.Width, plot.Height), Is.EqualTo((960, 320)));
        Assert.That(plot.Pixels.Distinct().Count(), Is.GreaterThan(10), "the plot is blank");
        var samples = ImageIO.Read(Path.Combine(run, "samples.png"));
        Assert.That(samples.Height, Is.EqualTo(10 * 34 + 2), "one row of 32×32 samples per class");

        // A second run in the same folder with other settings refuses instead of mixing the two.
        var (again, _, againErr) = Run(args.Select(a => a == "3" ? "4" : a));
        Assert.That(again, Is.EqualTo(2));
        Assert.That(againErr, Does.Contain("--fresh"));
    }

    /// <summary>Fashion-MNIST's IDX files with 40 training and 20 test images: class c is a bar at rows 2c..2c+3.</summary>
    private static string WriteSyntheticFashionMnist(string root)
    {
        Directory.CreateDirectory(root);
        foreach (var (split, count) in new[] { ("train", 40), ("t10k", 20) })
        {
            var pixels = new byte[count * 28 * 28];
            var labels = new byte[count];
            for (int i = 0; i < count; i++)
            {
                labels[i] = (byte)(i % 10);
                for (int y = 2 * labels[i]; y < 2 * labels[i] + 4; y++)
                    for (int x = 4; x < 24; x++) pixels[i * 784 + y * 28 + x] = (byte)(128 + 12 * (i % 7));
            }
            WriteIdx(Path.Combine(root, $"{split}-images-idx3-ubyte.gz"), 0x803, new[] { count, 28, 28 }, pixels);
            WriteIdx(Path.Combine(root, $"{split}-labels-idx1-ubyte.gz"), 0x801, new[] { count }, labels);
        }
        return root;
    }

    private static void WriteIdx(string path, int magic, int[] dims, byte[] data)
    {
        using var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        var header = new byte[4 + 4 * dims.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header, magic);
        for (int d = 0; d < dims.Length; d++) System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + 4 * d), dims[d]);
        gz.Write(header);
        gz.Write(data);
    }
}

public class DemoReportQualityTests
{
    [Test]
    public void QualityShowsTheOverallFiguresAndOneRowPerClass()
    {
        var perClass = new JsonArray();
        for (int c = 0; c < 10; c++)
            perClass.Add(new JsonObject { ["class"] = c, ["name"] = FashionMnist.ClassNames[c], ["samples"] = c / 10.0, ["real"] = c == 3 ? null : 0.9 });
        var quality = new JsonObject
        {
            ["classifier"] = "models/fashion_mnist/classifier.safetensors", ["images"] = 500, ["reference_images"] = 9500,
            ["class_agreement"] = 0.716, ["frechet_distance"] = 122.0, ["real_class_agreement"] = 0.92, ["real_frechet_distance"] = 4.1,
            ["per_class"] = perClass,
        };
        string html = DemoReport.Quality(quality);
        Assert.That(html, Does.Contain("71.6% of 500 samples").And.Contain("(92.0% of as many real test images)"));
        Assert.That(html, Does.Contain("is 122 (real test images: 4.1, the floor)").And.Contain("9500 other test images"));
        var rows = html.Split('\n').Where(line => line.StartsWith("<tr><td>", StringComparison.Ordinal)).ToList();
        Assert.That(rows, Has.Count.EqualTo(10));
        Assert.That(rows[0], Is.EqualTo("<tr><td>0 T-shirt/top</td><td class=\"num\">0.0%</td><td class=\"num\">90.0%</td></tr>"));
        Assert.That(rows[3], Does.Contain("3 Dress").And.Contain("30.0%").And.EndWith("<td class=\"num\">–</td></tr>"), "a class without real images shows a dash");
        Assert.That(rows[9], Does.Contain("9 Ankle boot").And.Contain("90.0%"));
    }
}

public class TimedStageTests
{
    /// <summary>A clock the fake trainer advances: each step takes what <see cref="StepSeconds"/> says.</summary>
    private sealed class FakeClock
    {
        public double Now;
        public Func<long, double> StepSeconds = _ => 0.01;
    }

    /// <summary>A trainer stand-in on <paramref name="clock"/>: it trains to the run's target as the loop does (read
    /// before every step), each step advancing the clock, and records the runs it was given.</summary>
    private static Func<StageRun, StageRunResult> FakeTrainer(StageState state, FakeClock clock, List<StageRun> runs,
        Action<long>? afterStep = null, double startupSeconds = 0) => run =>
    {
        runs.Add(run);
        clock.Now += startupSeconds;
        long step = state.Steps;
        while (step < run.Target.Steps)
        {
            if (run.Stop.IsCancellationRequested) return new StageRunResult(step, Stopped: true);
            clock.Now += clock.StepSeconds(step);
            step++;
            state.Steps = step;   // the real trainers resume from their checkpoint; the fake from the state
            run.OnStep(new TrainingStepReport(step, run.Target.Steps, new Dictionary<string, double> { ["total_loss"] = 1.0 / step }, 1.0 / step, 0));
            afterStep?.Invoke(step);
        }
        return new StageRunResult(step, Stopped: false);
    };

    private static TimedStage Stage(TextWriter log, FakeClock clock) => new("stage", log, _ => new NoProgress(), () => clock.Now);

    private sealed class NoProgress : IStepProgress
    {
        public void Update(TrainingStepReport report) { }
        public void Finish() { }
    }

    [Test]
    public void PlansTheStepsThatFitTheBudgetWithAShortWarmup()
    {
        var state = new StageState();
        var runs = new List<StageRun>();
        var clock = new FakeClock();
        bool done = Stage(TextWriter.Null, clock).Run(state, budgetSeconds: 1.0, maxSteps: null, configWarmup: 500, CancellationToken.None, FakeTrainer(state, clock, runs));
        Assert.That(done, Is.True);
        Assert.That(runs[0].MaxSteps, Is.EqualTo(TimedStage.CalibrationSteps));
        Assert.That(runs[0].WarmupSteps, Is.EqualTo(500), "timing steps run inside the config's warm-up");
        Assert.That(runs, Has.Count.EqualTo(2));
        // 0.9 s left at 0.01 s a step: 90 more steps, with a tenth of the first plan as warm-up.
        Assert.That(runs[1].MaxSteps, Is.EqualTo(100));
        Assert.That(state.WarmupSteps, Is.EqualTo(10));
        Assert.That(state.Steps, Is.EqualTo(100).Within(1));
        Assert.That((state.PlannedSteps, state.StoppedBy), Is.EqualTo((state.Steps, "planned steps")));
        Assert.That(clock.Now, Is.EqualTo(1.0).Within(0.011));
        Assert.That((state.Done, state.TimedSteps), Is.EqualTo((true, state.Steps - TimedStage.CalibrationSteps / 2 - 1)),
            "the first half of the timing steps and the first step of the planned run are not timed");
    }

    /// <summary>The case: the first steps are slow (0.87 s), the steady state fast (0.69 s); and the opposite,
    /// a machine that slows down. Either way the stage ends within 1% of its budget, stopped by its plan.</summary>
    [TestCase(0.87, 0.69)]
    [TestCase(0.69, 0.87)]
    [TestCase(0.5, 0.5)]
    public void ReplansAsTheRateChangesAndEndsOnTheBudget(double early, double steady)
    {
        var state = new StageState();
        var clock = new FakeClock { StepSeconds = step => step < 40 ? early : steady };
        var runs = new List<StageRun>();
        const double budget = 264;   // the tokenizer share of 8 minutes
        var log = new StringWriter();
        Assert.That(Stage(log, clock).Run(state, budget, null, 200, CancellationToken.None, FakeTrainer(state, clock, runs, startupSeconds: 2)), Is.True);
        Assert.That(state.StoppedBy, Is.EqualTo("planned steps"));
        Assert.That(clock.Now, Is.EqualTo(budget).Within(budget * 0.01), log.ToString());
        Assert.That(state.PlannedSteps, Is.EqualTo(state.Steps));
        long firstPlan = runs[1].MaxSteps;
        // At one rate the plan only loses the steps the trainer's restart (2 s) took.
        Assert.That(state.Steps, early > steady ? Is.GreaterThan(firstPlan) : early < steady ? Is.LessThan(firstPlan) : Is.EqualTo(firstPlan).Within(5));
        Assert.That(log.ToString(), Does.Contain("re-planned as the rate changes"));
    }

    [Test]
    public void PlannerFollowsTheRateOfItsWindow()
    {
        var planner = new StepPlanner(deadline: 100, maxSteps: 500, windowSeconds: 10);
        Assert.That(planner.SecondsPerStep, Is.Null);
        for (int step = 1; step <= 20; step++) planner.Record(step, step * 1.0);         // 1 s a step until t = 20
        Assert.That(planner.SecondsPerStep, Is.EqualTo(1.0).Within(1e-9));
        Assert.That(planner.Plan(20, 20), Is.EqualTo(100));                               // 80 s left → 80 more steps
        for (int step = 21; step <= 60; step++) planner.Record(step, 20 + (step - 20) * 0.5);   // then 0.5 s a step
        Assert.That(planner.SecondsPerStep, Is.EqualTo(0.5).Within(1e-9), "the window forgets the slow steps");
        Assert.That(planner.Plan(60, 40), Is.EqualTo(180));
        Assert.That(planner.Plan(60, 40, secondsPerStep: 0.01), Is.EqualTo(500), "never past the step cap");
        Assert.That(planner.Plan(60, 120), Is.EqualTo(60), "past the deadline: no more steps");
    }

    [Test]
    public void TheDeadlineEndsAStageWhoseStepsOverrunAndCtrlCLeavesItResumable()
    {
        var clock = new FakeClock { StepSeconds = step => step == 5 ? 1.0 : 0.02 };   // a first step longer than the budget
        var state = new StageState { PlannedSteps = 1000, WarmupSteps = 10, Steps = 5 };
        var runs = new List<StageRun>();
        Assert.That(Stage(TextWriter.Null, clock).Run(state, 0.5, null, 500, CancellationToken.None, FakeTrainer(state, clock, runs)), Is.True);
        Assert.That((state.Done, state.StoppedBy), Is.EqualTo((true, "time budget")));
        Assert.That(state.Steps, Is.EqualTo(6));

        var interrupted = new StageState { PlannedSteps = 20, WarmupSteps = 2, Steps = 5 };
        using var ctrlC = new CancellationTokenSource();
        var log = new StringWriter();
        clock = new FakeClock { StepSeconds = _ => 0.001 };
        bool finished = Stage(log, clock).Run(interrupted, 60, 20, 500, ctrlC.Token, FakeTrainer(interrupted, clock, runs, step => { if (step == 8) ctrlC.Cancel(); }));
        Assert.That((finished, interrupted.Done, interrupted.Steps), Is.EqualTo((false, false, 8L)));
        Assert.That(log.ToString(), Does.Contain("run the same command again"));

        Assert.That(Stage(TextWriter.Null, clock).Run(interrupted, 60, 20, 500, CancellationToken.None, FakeTrainer(interrupted, clock, runs)), Is.True);
        Assert.That((interrupted.Done, interrupted.Steps, interrupted.StoppedBy), Is.EqualTo((true, 20L, "planned steps")));
        Assert.That(runs[^1].WarmupSteps, Is.EqualTo(2), "a resumed stage keeps its plan");
    }
}
