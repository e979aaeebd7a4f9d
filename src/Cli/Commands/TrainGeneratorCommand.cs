using System.CommandLine;
using MaskBit.Models.Metrics;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>
/// The Stage-II commands: `train generator`, `generate`, `eval generator`. They join the `train` and `eval`
/// groups when those exist already (the tokenizer commands add them too) and create them otherwise.
/// </summary>
public static class GeneratorCommands
{
    public static void Register(RootCommand root, TextWriter stdout, TextWriter stderr)
    {
        Group(root, "train", "Train a model.").Subcommands.Add(TrainGeneratorCommand.Create(stdout, stderr));
        Group(root, "eval", "Evaluate a model.").Subcommands.Add(EvalGeneratorCommand.Create(stdout, stderr));
        root.Subcommands.Add(GenerateCommand.Create(stdout, stderr));
    }

    private static Command Group(RootCommand root, string name, string description)
    {
        var existing = root.Subcommands.FirstOrDefault(c => c.Name == name);
        if (existing != null) return existing;
        var group = new Command(name, description);
        root.Subcommands.Add(group);
        return group;
    }

    /// <summary>A usage error naming the flag: message on stderr, exit code 2.</summary>
    public static int Usage(TextWriter stderr, string flag, string problem)
    {
        stderr.WriteLine($"error: {flag}: {problem}");
        return Program.ExitUsage;
    }

    /// <summary>Checks that an input file exists (exit 1 naming it otherwise).</summary>
    public static bool RequireFile(string? path, string flag, TextWriter stderr)
    {
        if (path == null || File.Exists(path)) return true;
        stderr.WriteLine($"error: {flag}: file not found: {path}");
        return false;
    }
}

/// <summary>`maskbit train generator --config C [a.b.c=v ...] [--tokenizer W] [--out DIR] [--seed N] [--token-cache | --no-token-cache]`.</summary>
public static class TrainGeneratorCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.ConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer weights (overrides experiment.vqgan_checkpoint): a MaskBit training checkpoint or an official .bin." };
        var output = new Option<string?>("--out") { Description = "Run folder (default: experiment.output_dir, else $WORKSPACE/outputs/<experiment.name>, WORKSPACE defaulting to ./runs). An existing checkpoint there is resumed." };
        var seed = CommandSupport.SeedOption("Overrides training.seed.");
        var device = CommandSupport.DeviceOption();
        var cache = new Option<bool>("--token-cache") { Description = "Cache the dataset's tokens once in tokens.npz (un-augmented images) even when the config augments; the default when it does not." };
        var noCache = new Option<bool>("--no-token-cache") { Description = "Encode (augmented) images every step, also when the config does not augment; the default when it does." };
        var inceptionWeights = new Option<string?>("--inception-weights")
        {
            Description = $"The FID InceptionV3 ({InceptionFeatureExtractor.WeightsDescription}): experiment.eval_every also scores the Inception Score of one sample per held-out image's label.",
        };
        var fidStats = new Option<string?>("--fid-stats") { Description = "Reference statistics (ADM-style .npz with mu and sigma): experiment.eval_every also scores gFID (needs --inception-weights)." };
        var command = new Command("generator", CommandSupport.Describe(
            "Train the Stage-II masked bit-token generator on a frozen tokenizer. " + TrainCommand.StopNote,
            "maskbit train generator --config configs/fashion_mnist_generator.yaml --tokenizer runs/tokenizer/checkpoint-600.safetensors --out runs/generator"))
        {
            config, overrides, tokenizer, output, seed, device, cache, noCache, inceptionWeights, fidStats,
        };
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(device), () =>
        {
            var assignments = (parse.GetValue(overrides) ?? Array.Empty<string>()).ToList();
            if (parse.GetValue(seed) is { } s) assignments.Add($"training.seed={s}");
            if (parse.GetValue(cache) && parse.GetValue(noCache)) throw new UsageException("--token-cache and --no-token-cache exclude each other");
            var cfg = CommandSupport.LoadConfig(parse.GetValue(config)!, assignments);
            var run = RunSettings.From(cfg, TrainingStage.Generator);
            string tokenizerPath = parse.GetValue(tokenizer) ?? run.TokenizerCheckpoint
                ?? throw new UsageException("--tokenizer: no tokenizer weights given (pass --tokenizer PATH, e.g. a checkpoint of `maskbit train tokenizer`, or set experiment.vqgan_checkpoint)");
            tokenizerPath = CommandSupport.RequireFile(tokenizerPath,
                parse.GetValue(tokenizer) != null ? "--tokenizer" : "experiment.vqgan_checkpoint",
                "pass --tokenizer PATH or run `maskbit train tokenizer` first");
            string outDir = parse.GetValue(output) ?? TrainCommand.DefaultOutputDir(run);
            string? inceptionPath = parse.GetValue(inceptionWeights), statsPath = parse.GetValue(fidStats);
            if (statsPath != null && inceptionPath == null) throw new UsageException("--fid-stats: gFID needs the FID InceptionV3 (--inception-weights) too");
            var inception = inceptionPath == null ? null
                : InceptionFeatureExtractor.Load(CommandSupport.RequireFile(inceptionPath, "--inception-weights", "pass the FID InceptionV3 weights file"));
            var reference = statsPath == null ? null : ReferenceStatistics.Load(CommandSupport.RequireFile(statsPath, "--fid-stats", "pass an ADM-style .npz with mu and sigma (or reference images arr_0)"), inception);

            var progress = new ProgressDisplay(stdout, "train", plainLines: false);   // the trainer logs every log_every steps
            using var stop = new StopSignal(progress.Log);
            try
            {
                var trainer = new GeneratorTrainer(cfg, new GeneratorTrainerOptions
                {
                    OutputDir = outDir, TokenizerPath = tokenizerPath, CacheTokens = parse.GetValue(cache) ? true : parse.GetValue(noCache) ? false : null,
                    Inception = inception, FidReference = reference, Log = CommandSupport.RankLog(progress.Log),
                    OnStep = progress.Shows ? progress.ReportStep : null,
                });
                var result = trainer.Run(stop.Token);
                if (result.Outcome == TrainingOutcome.Cancelled) return Program.ExitInterrupted;
                CommandSupport.RankLog(progress.Log).WriteLine($"weights to sample with: {trainer.WeightsPath}");
                return Program.ExitOk;
            }
            finally { progress.Finish(); }
        }));
        return command;
    }
}
