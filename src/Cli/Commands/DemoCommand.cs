using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using MaskBit.Autograd;
using MaskBit.Cli.Report;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Metrics;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>The demo's settings from the command line (the hidden ones make a test-sized run).</summary>
internal sealed record DemoSettings(double Minutes, string OutDir, int Seed, string? DataPath, bool Fresh, long? MaxSteps, bool Tiny)
{
    /// <summary>With a one-minute build the whole demo takes about ten minutes on two cores.</summary>
    public const double DefaultMinutes = 8;
    public const int DefaultSeed = 42;
    public static readonly string DefaultOutDir = Path.Combine("runs", "demo");

    public int? BatchSize => Tiny ? 8 : null;
    public int EvalImages => Tiny ? 16 : 1000;
    public int SamplesPerClass => Tiny ? 2 : 8;
    /// <summary>Samples the classifier scores (the issue's 500), and as many real test images for the floor.</summary>
    public int QualitySamples => Tiny ? 10 : 500;
    public int LogEvery => Tiny ? 1 : 5;

    /// <summary>The command line that reproduces this run (what index.html shows).</summary>
    public string CommandLine()
    {
        var parts = new List<string> { "maskbit demo", $"--minutes {Minutes.ToString(CultureInfo.InvariantCulture)}", $"--out {DemoCommand.Quote(OutDir)}", $"--seed {Seed}" };
        if (DataPath != null) parts.Add($"--data {DemoCommand.Quote(DataPath)}");
        if (MaxSteps != null) parts.Add($"--max-steps {MaxSteps}");
        if (Tiny) parts.Add("--tiny");
        return string.Join(' ', parts);
    }
}

/// <summary>
/// `maskbit demo [--minutes M] [--out DIR] [--seed K] [--data PATH] [--fresh]`: trains a small tokenizer, then a
/// small generator on it, on the CPU within a time budget (see <see cref="TimedStage"/>), evaluates and samples,
/// and writes a run folder with reconstructions.png, samples.png, losses.png, metrics.json, the stages' metrics.jsonl
/// and checkpoints, and index.html. Ctrl-C stops the current stage with a checkpoint and still writes the report;
/// the same command resumes.
/// </summary>
public static class DemoCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var minutes = new Option<double>("--minutes") { Description = "Time budget of the whole demo: 58% tokenizer, 37% generator (planned from the measured step rate), the rest evaluation, sampling and scoring.", DefaultValueFactory = _ => DemoSettings.DefaultMinutes };
        var output = new Option<string>("--out") { Description = "Run folder; an earlier demo there is resumed.", DefaultValueFactory = _ => DemoSettings.DefaultOutDir };
        var seed = new Option<int>("--seed") { Description = "Seed of both trainings and of the samples.", DefaultValueFactory = _ => DemoSettings.DefaultSeed };
        var data = new Option<string?>("--data") { Description = "Training images instead of the embedded Fashion-MNIST: a folder with Fashion-MNIST's IDX files, an image folder (one sub-folder per class) or webdataset shards." };
        var fresh = new Option<bool>("--fresh") { Description = "Discard an earlier demo in the run folder instead of resuming it." };
        var maxSteps = new Option<long?>("--max-steps") { Description = "At most this many steps per stage.", Hidden = true };
        var tiny = new Option<bool>("--tiny") { Description = "Test-sized batches, evaluation and sampling.", Hidden = true };
        var command = new Command("demo", "Train a small tokenizer and generator on Fashion-MNIST on the CPU within a time budget, then write a report " +
                                          "(reconstructions, class-conditional samples, loss curves, metrics, index.html). Ctrl-C stops with a " +
                                          "resumable checkpoint; the same command resumes.")
        {
            minutes, output, seed, data, fresh, maxSteps, tiny,
        };
        command.SetAction(parse => CommandSupport.Guard(stderr, () =>
        {
            var settings = new DemoSettings(parse.GetValue(minutes), parse.GetValue(output)!, parse.GetValue(seed), parse.GetValue(data),
                parse.GetValue(fresh), parse.GetValue(maxSteps), parse.GetValue(tiny));
            if (!(settings.Minutes > 0) || !double.IsFinite(settings.Minutes))
                return GeneratorCommands.Usage(stderr, "--minutes", $"must be a positive number, got {settings.Minutes.ToString(CultureInfo.InvariantCulture)}");
            if (settings.MaxSteps is < 1) return GeneratorCommands.Usage(stderr, "--max-steps", $"must be at least 1, got {settings.MaxSteps}");
            return new DemoRun(settings, stdout, stderr).Execute();
        }));
        return command;
    }

    /// <summary>Shell-quotes an argument when it holds anything beyond plain path and override characters.</summary>
    internal static string Quote(string argument) =>
        argument.Length > 0 && argument.All(c => char.IsAsciiLetterOrDigit(c) || "._-/=:,+".Contains(c)) ? argument : "'" + argument.Replace("'", "'\\''") + "'";
}

/// <summary>One `maskbit demo` invocation: the two timed stages, evaluation, sampling and the report.</summary>
internal sealed class DemoRun(DemoSettings settings, TextWriter stdout, TextWriter stderr)
{
    /// <summary>The stages' shares; the rest of the budget is for the report, which takes ~20 s at the default sizes on
    /// 2 AVX2 cores (evaluation, sampling and the classifier's scores), so the demo ends within 5% of its budget.</summary>
    private const double TokenizerShare = 0.58, GeneratorShare = 0.37;
    private const string TokenizerConfigName = "configs/fashion_mnist_tokenizer.yaml", GeneratorConfigName = "configs/fashion_mnist_generator.yaml";
    public const string TokenizerFolder = "tokenizer", GeneratorFolder = "generator";

    private readonly string _out = Path.GetFullPath(settings.OutDir);
    private readonly MaskBitConfig _tokenizerBase = EmbeddedConfig(TokenizerConfigName), _generatorBase = EmbeddedConfig(GeneratorConfigName);
    private readonly JsonObject _metrics = new();
    private DemoData _data = null!;
    private DemoState _state = null!;

    private string TokenizerDir => Path.Combine(_out, TokenizerFolder);
    private string GeneratorDir => Path.Combine(_out, GeneratorFolder);
    private RunFolder TokenizerRun => new(TokenizerDir);
    private RunFolder GeneratorRun => new(GeneratorDir);

    public int Execute()
    {
        var total = Stopwatch.StartNew();
        if (settings.Fresh) DemoReport.Clean(_out, TokenizerFolder, GeneratorFolder);
        using var data = DemoData.Open(settings.DataPath);
        _data = data;
        if (DemoState.Load(_out) is { } earlier)
        {
            if (earlier.Seed != settings.Seed || earlier.Data != data.Description || earlier.Tiny != settings.Tiny)
            {
                stderr.WriteLine($"error: {settings.OutDir} holds a demo with seed {earlier.Seed} on {earlier.Data}{(earlier.Tiny ? " (tiny)" : "")}; " +
                                 "pass --fresh to start over there, or another --out");
                return Program.ExitUsage;
            }
            _state = earlier;
            stdout.WriteLine($"resuming the demo in {settings.OutDir} (tokenizer {Describe(earlier.Tokenizer)}, generator {Describe(earlier.Generator)})");
        }
        else _state = new DemoState { Seed = settings.Seed, Data = data.Description, Tiny = settings.Tiny };
        _state.Save(_out);

        double budget = settings.Minutes * 60;
        stdout.WriteLine($"demo: {data.Description}; budget {TimedStage.Seconds(budget)} (tokenizer {TimedStage.Seconds(budget * TokenizerShare)}, " +
                         $"generator {TimedStage.Seconds(budget * GeneratorShare)}, then evaluation and sampling); output {settings.OutDir}");
        bool complete;
        using (var stop = new StopSignal(stdout))
        {
            try
            {
                // The generator gets what the tokenizer left of both stages' shares: the demo ends on time either way.
                complete = Stage("tokenizer").Run(_state.Tokenizer, budget * TokenizerShare, settings.MaxSteps, ConfigWarmup(_tokenizerBase), stop.Token, TrainTokenizer)
                           && Stage("generator").Run(_state.Generator, budget * (TokenizerShare + GeneratorShare) - _state.Tokenizer.WallSeconds,
                               settings.MaxSteps, ConfigWarmup(_generatorBase), stop.Token, TrainGenerator);
            }
            finally { _state.Save(_out); }
        }
        if (_state.Tokenizer.Done) TokenizerRun.KeepLatestCheckpoint();
        if (_state.Generator.Done) GeneratorRun.KeepLatestCheckpoint();

        stdout.WriteLine(complete ? "writing the report" : "writing a report of what is done so far");
        WriteReport(complete, total.Elapsed.TotalSeconds);
        stdout.WriteLine($"report: {Path.Combine(settings.OutDir, DemoReport.IndexFile)}");
        return complete ? Program.ExitOk : Program.ExitInterrupted;
    }

    private static string Describe(StageState s) =>
        s.Done ? $"done, {s.Steps} steps" : s.PlannedSteps is { } plan ? $"at step {s.Steps}/{plan}" : s.Steps > 0 ? $"at step {s.Steps}" : "not started";

    private TimedStage Stage(string name) =>
        new(name, stdout, label => new StageProgress(new ProgressDisplay(stdout, label)));

    // ---- configs ---------------------------------------------------------------------------------------------

    private static MaskBitConfig EmbeddedConfig(string name)
    {
        using var stream = typeof(DemoRun).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"the demo config {name} is not embedded in the executable");
        return MaskBitConfig.Parse(new StreamReader(stream).ReadToEnd(), name + " (embedded)");
    }

    private static int ConfigWarmup(MaskBitConfig config) => ScheduleSettings.From(config).WarmupSteps;

    /// <summary>The demo's settings of both stages: seed, schedule length, no periodic checkpoints, grids or
    /// evaluations (the report does those once), frequent loss logging for the plot, resume.</summary>
    private List<ConfigSetting> StageSettings(long maxSteps, int warmup)
    {
        var list = new List<ConfigSetting>
        {
            new("training.seed", settings.Seed), new("training.max_train_steps", maxSteps), new("lr_scheduler.params.warmup_steps", warmup),
            new("experiment.log_every", settings.LogEvery), new("experiment.save_every", 0), new("experiment.generate_every", 0),
            new("experiment.eval_every", 0), new("experiment.resume", true),
        };
        if (settings.BatchSize is { } batch) list.Add(new("training.per_gpu_batch_size", batch));
        return list;
    }

    /// <summary>The demo tokenizer's architecture where the generator config's model.vq_model (another tokenizer)
    /// differs from it.</summary>
    private List<ConfigSetting> TokenizerArchitecture()
    {
        var tokenizer = (ConfigMap)_tokenizerBase.Find("model.vq_model")!;
        return tokenizer.Items
            .Select(kv => new ConfigSetting("model.vq_model." + kv.Key, kv.Value))
            .Where(s => _generatorBase.Find(s.Key) is not { } mine || new ConfigSetting(s.Key, mine).ToString() != s.ToString())
            .ToList();
    }

    // Validated as a config file would be: the embedded configs and the demo's settings obey the same rules.
    private MaskBitConfig TokenizerConfig(long maxSteps, int warmup) =>
        Validated(_tokenizerBase.With(StageSettings(maxSteps, warmup)));

    private MaskBitConfig GeneratorConfig(long maxSteps, int warmup) =>
        Validated(_generatorBase.With([.. TokenizerArchitecture(), .. StageSettings(maxSteps, warmup)]));

    private static MaskBitConfig Validated(MaskBitConfig config)
    {
        ConfigSections.Validate(config);
        return config;
    }

    // ---- the stages ------------------------------------------------------------------------------------------

    /// <summary>Trainer notices go to the stage's train.log; the console shows the demo's own progress.</summary>
    private static StreamWriter StageLog(string directory)
    {
        Directory.CreateDirectory(directory);
        return new StreamWriter(Path.Combine(directory, "train.log"), append: true) { AutoFlush = true };
    }

    private StageRunResult TrainTokenizer(StageRun run)
    {
        using var log = StageLog(TokenizerDir);
        using var trainer = new TokenizerTrainer(TokenizerConfig(run.MaxSteps, run.WarmupSteps), new TokenizerTrainerOptions
        {
            OutputDir = TokenizerDir, Log = log, OnStep = run.OnStep, Dataset = _data.Train,
        });
        var result = trainer.Run(run.Stop, run.Target);
        return new StageRunResult(result.Step, result.Outcome == TrainingOutcome.Cancelled);
    }

    private StageRunResult TrainGenerator(StageRun run)
    {
        using var log = StageLog(GeneratorDir);
        var trainer = new GeneratorTrainer(GeneratorConfig(run.MaxSteps, run.WarmupSteps), new GeneratorTrainerOptions
        {
            OutputDir = GeneratorDir, TokenizerPath = TokenizerCheckpoint(), Dataset = (_data.Train, _data.Key), Log = log, OnStep = run.OnStep,
        });
        // Weights of an earlier, shorter run (the timing steps) would outlive a run that stops early; the report samples
        // from checkpoints, and a run that reaches its last step writes the weights anew.
        File.Delete(trainer.WeightsPath);
        var result = trainer.Run(run.Stop, run.Target);
        return new StageRunResult(result.Step, result.Outcome == TrainingOutcome.Cancelled);
    }

    private string TokenizerCheckpoint() => TokenizerRun.LatestCheckpoint()
        ?? throw new InvalidOperationException($"no tokenizer checkpoint in {TokenizerDir}");

    // ---- evaluation, sampling, report --------------------------------------------------------------------------

    private void WriteReport(bool complete, double secondsSoFar)
    {
        var clock = Stopwatch.StartNew();
        string? tokenizerCheckpoint = TokenizerRun.LatestCheckpoint(), generatorCheckpoint = GeneratorRun.LatestCheckpoint();
        _metrics["complete"] = complete;
        _metrics["budget_minutes"] = settings.Minutes;
        _metrics["data"] = _data.Description;
        _metrics["seed"] = settings.Seed;
        _metrics["tokenizer"] = StageMetrics(_state.Tokenizer, TokenizerConfig(1, 0), tokenizerCheckpoint, TokenizerRun.MetricsPath,
            ("total_loss", "final_loss"), ("reconstruction_loss", "final_reconstruction_loss"), ("quantizer_loss", "final_quantizer_loss"));
        _metrics["generator"] = StageMetrics(_state.Generator, GeneratorConfig(1, 0), generatorCheckpoint, GeneratorRun.MetricsPath,
            ("train/mlm_loss", "final_loss"), ("train/masked_token_loss", "final_masked_token_loss"), ("train/masked_correct_tokens", "final_masked_accuracy"));
        if (tokenizerCheckpoint != null) Evaluate(tokenizerCheckpoint);
        if (tokenizerCheckpoint != null && generatorCheckpoint != null) Sample(tokenizerCheckpoint, generatorCheckpoint);
        ImageIO.Write(Path.Combine(_out, DemoReport.LossesFile), LossPlot());
        _metrics["report_wall_seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 2);
        _metrics["total_wall_seconds"] = Math.Round(secondsSoFar + clock.Elapsed.TotalSeconds, 2);
        DemoReport.Write(_out, new DemoReportContent(_metrics, Commands(tokenizerCheckpoint, generatorCheckpoint), DemoReport.MachineInfo(),
            _data.ClassNames, complete));
    }

    private JsonObject StageMetrics(StageState state, MaskBitConfig config, string? checkpoint, string metricsFile, params (string Key, string Name)[] finals)
    {
        int batch = RunSettings.From(config, TrainingStage.Tokenizer).TrainingBatchSize(config);
        var section = new JsonObject
        {
            ["done"] = state.Done, ["steps"] = state.Steps, ["planned_steps"] = state.PlannedSteps, ["warmup_steps"] = state.WarmupSteps,
            ["stopped_by"] = state.StoppedBy, ["batch_size"] = batch, ["wall_seconds"] = Math.Round(state.WallSeconds, 2),
            ["train_images_per_second"] = state.TimedSeconds > 0 ? Math.Round(state.TimedSteps * batch / state.TimedSeconds, 2) : null,
            ["checkpoint"] = checkpoint != null ? Path.GetRelativePath(_out, checkpoint) : null,
        };
        var last = MetricsFile.LastValues(metricsFile);
        foreach (var (key, name) in finals) section[name] = last.TryGetValue(key, out var v) ? Math.Round(v, 5) : null;
        return section;
    }

    private void Evaluate(string checkpoint)
    {
        stdout.WriteLine($"evaluating the tokenizer on {settings.EvalImages} images");
        var clock = Stopwatch.StartNew();
        var config = TokenizerConfig(1, 0);
        var tokenizer = PretrainedModels.Tokenizer(config, checkpoint);
        var transform = TrainingData.Transform(config);
        var loader = TokenizerEvaluation.EvalLoader(_data.Eval, transform, batchSize: 50, workers: 1);
        var scores = TokenizerEvaluation.Evaluate(tokenizer, loader.Epoch(0), settings.EvalImages);

        using (TensorScope.Begin())
        {
            var picks = _data.OnePerClass(10).Select(i => transform.Eval(_data.Eval.Load(i).Image)).ToList();
            var originals = Tensor.Stack(picks.Select(image => ImageIO.ToTensor(image)).ToList());
            var (reconstructions, _) = TokenizerEvaluation.Reconstruct(tokenizer, originals);
            ImageIO.Write(Path.Combine(_out, DemoReport.ReconstructionsFile), TokenizerEvaluation.ComparisonGrid(originals, reconstructions));
        }
        ((JsonObject)_metrics["tokenizer"]!)["parameters"] = tokenizer.ParameterCount();
        _metrics["evaluation"] = new JsonObject
        {
            ["images"] = Math.Min(settings.EvalImages, _data.Eval.Count), ["split"] = _data.EvalSplit,
            ["psnr"] = Round(scores, "PSNR"), ["ssim"] = Round(scores, "SSIM"), ["codebook_usage"] = Round(scores, "CodebookUsage"),
            ["codebook_entropy"] = Round(scores, "CodebookEntropy"), ["mae"] = Round(scores, "MAE"), ["mse"] = Round(scores, "MSE"),
            ["wall_seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 2),
        };
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"PSNR {scores["PSNR"]:F2} dB  SSIM {scores["SSIM"]:F4}  codebook usage {scores["CodebookUsage"]:P1}"));
    }

    private static double? Round(IReadOnlyDictionary<string, double> scores, string key) =>
        scores.TryGetValue(key, out var v) && double.IsFinite(v) ? Math.Round(v, 5) : null;

    private void Sample(string tokenizerCheckpoint, string generatorCheckpoint)
    {
        var config = GeneratorConfig(1, 0);
        var tokenizer = PretrainedModels.Tokenizer(config, tokenizerCheckpoint);
        var generator = PretrainedModels.Generator(config, generatorCheckpoint);
        int classes = Math.Min(generator.Config.NumClasses, 10), perClass = settings.SamplesPerClass;
        var labels = Enumerable.Range(0, classes).SelectMany(c => Enumerable.Repeat(c, perClass)).ToArray();
        var options = SamplerOptions.FromConfig(config);
        stdout.WriteLine($"sampling {labels.Length} images ({classes} classes × {perClass}, {options.NumSteps} steps)");
        var clock = Stopwatch.StartNew();
        using (TensorScope.Begin())
        {
            var result = new Sampler(generator, tokenizer).Sample(labels, options, new SeededRandomSource(settings.Seed));
            var grid = ImageIO.MakeGrid(result.Images.Clamp(0f, 1f), nrow: perClass);
            double seconds = clock.Elapsed.TotalSeconds;
            ImageIO.Write(Path.Combine(_out, DemoReport.SamplesFile), grid);
            ((JsonObject)_metrics["generator"]!)["parameters"] = generator.ParameterCount();
            _metrics["sampling"] = new JsonObject
            {
                ["images"] = labels.Length, ["classes"] = classes, ["per_class"] = perClass, ["sampling_steps"] = options.NumSteps,
                ["guidance_scale"] = options.GuidanceScale, ["wall_seconds"] = Math.Round(seconds, 2),
                ["images_per_second"] = Math.Round(labels.Length / seconds, 2),
            };
        }
        if (_data.Eval is FashionMnist && classes == FashionMnist.ClassNames.Count && _data.Eval.Count >= 2 * settings.QualitySamples
            && File.Exists(ShippedModel.ClassifierWeights))
            ScoreSamples(new Sampler(generator, tokenizer), options);
    }

    /// <summary>The shipped Fashion-MNIST classifier on <see cref="DemoSettings.QualitySamples"/> samples (classes
    /// cycling) and as many real test images: class agreement, overall and per class, and the Fréchet distance in its
    /// features against the rest of the test set (<see cref="SampleQuality"/>).</summary>
    private void ScoreSamples(Sampler sampler, SamplerOptions options)
    {
        int count = settings.QualitySamples;
        stdout.WriteLine($"scoring {count} samples and {count} test images with the Fashion-MNIST classifier");
        var clock = Stopwatch.StartNew();
        var classifier = PretrainedModels.Classifier(MaskBitConfig.Load(ShippedModel.ClassifierConfig), ShippedModel.ClassifierWeights);
        var result = SampleQuality.Measure(classifier, _data.Eval, count, (labels, start) =>
            sampler.Sample(labels, options, new SeededRandomSource(GeneratorEvaluation.BatchSeed(settings.Seed, start))).Images.Clamp(0f, 1f));
        foreach (var line in result.Lines()) stdout.WriteLine(line);
        var perClass = new JsonArray();
        for (int c = 0; c < result.AgreementPerClass.Count; c++)
            perClass.Add(new JsonObject
            {
                ["class"] = c, ["name"] = c < FashionMnist.ClassNames.Count ? FashionMnist.ClassNames[c] : null,
                ["samples"] = RoundOrNull(result.AgreementPerClass[c]), ["real"] = RoundOrNull(result.RealAgreementPerClass[c]),
            });
        _metrics["quality"] = new JsonObject
        {
            ["classifier"] = ShippedModel.DisplayFolder + "/classifier.safetensors", ["images"] = count, ["reference_images"] = result.ReferenceCount,
            ["class_agreement"] = RoundOrNull(result.Agreement), ["frechet_distance"] = RoundOrNull(result.Frechet),
            ["real_class_agreement"] = RoundOrNull(result.RealAgreement), ["real_frechet_distance"] = RoundOrNull(result.RealFrechet),
            ["wall_seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 2), ["per_class"] = perClass,
        };
    }

    private static double? RoundOrNull(double value) => double.IsFinite(value) ? Math.Round(value, 4) : null;

    private HostImage LossPlot()
    {
        var tokenizer = TokenizerRun.MetricsPath;
        var generator = GeneratorRun.MetricsPath;
        return LinePlot.Render(new[]
        {
            new PlotPanel("Stage I: tokenizer", "step", new[]
            {
                new PlotSeries("total", MetricsFile.Series(tokenizer, "total_loss")),
                new PlotSeries("reconstruction", MetricsFile.Series(tokenizer, "reconstruction_loss")),
                new PlotSeries("quantizer", MetricsFile.Series(tokenizer, "quantizer_loss")),
            }),
            new PlotPanel("Stage II: generator", "step", new[]
            {
                new PlotSeries("mlm loss", MetricsFile.Series(generator, "train/mlm_loss")),
                new PlotSeries("masked tokens", MetricsFile.Series(generator, "train/masked_token_loss")),
            }),
        });
    }

    /// <summary>The demo's command and the single-stage commands that do the same steps.</summary>
    private List<(string Label, string Command)> Commands(string? tokenizerCheckpoint, string? generatorCheckpoint)
    {
        string Rel(string path) => DemoCommand.Quote(Path.Combine(settings.OutDir, Path.GetRelativePath(_out, path)));
        string Overrides(IEnumerable<ConfigSetting> list) => string.Join(' ', list.Select(s => DemoCommand.Quote(s.ToString())));
        var commands = new List<(string, string)> { ("this demo", settings.CommandLine()) };
        var tok = _state.Tokenizer;
        string data = _data.ConfigOverride is { } source ? $" dataset.params.train_shards_path_or_url={DemoCommand.Quote(source)}" : "";
        string env = _data.Environment is { } e ? e + " " : "";
        if (tok.PlannedSteps is { } tokSteps)
            commands.Add(("Stage I alone", $"{env}maskbit train tokenizer --config {TokenizerConfigName} {Overrides(StageSettings(tokSteps, tok.WarmupSteps))}{data} " +
                                           $"--out {Rel(TokenizerDir)}"));
        if (tokenizerCheckpoint != null)
            commands.Add(("evaluate the tokenizer", $"{env}maskbit eval tokenizer --config {TokenizerConfigName} --weights {Rel(tokenizerCheckpoint)}"));
        var gen = _state.Generator;
        if (gen.PlannedSteps is { } genSteps && tokenizerCheckpoint != null)
            commands.Add(("Stage II alone", $"{env}maskbit train generator --config {GeneratorConfigName} {Overrides([.. TokenizerArchitecture(), .. StageSettings(genSteps, gen.WarmupSteps)])}{data} " +
                                            $"--tokenizer {Rel(tokenizerCheckpoint)} --out {Rel(GeneratorDir)}"));
        if (tokenizerCheckpoint != null && generatorCheckpoint != null)
            commands.Add(("sample", $"maskbit generate --config {GeneratorConfigName} {Overrides(TokenizerArchitecture())} --tokenizer {Rel(tokenizerCheckpoint)} " +
                                    $"--generator {Rel(generatorCheckpoint)} --classes 0,1,2,3,4,5,6,7,8,9 --per-class {settings.SamplesPerClass} --seed {settings.Seed} --out {Rel(Path.Combine(_out, "samples"))}"));
        return commands;
    }
}
