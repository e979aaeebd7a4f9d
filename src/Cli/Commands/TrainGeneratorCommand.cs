using System.CommandLine;
using MaskBit.Models.Config;
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

    /// <summary>Loads the config; a bad override is a usage error (2), anything else about the file a failure (1).</summary>
    public static MaskBitConfig? LoadConfig(string path, string[] overrides, TextWriter stderr, out int exitCode)
    {
        exitCode = Program.ExitOk;
        try { return MaskBitConfig.Load(path, overrides); }
        catch (ConfigException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            exitCode = e.Message.StartsWith("override ", StringComparison.Ordinal) ? Program.ExitUsage : Program.ExitBadFile;
            return null;
        }
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

    /// <summary>Runs a command body, turning the expected failures (bad files, bad data, config problems) into
    /// a message and exit code 1 instead of a stack trace.</summary>
    public static int Guard(TextWriter stderr, Func<int> body)
    {
        try { return body(); }
        catch (Exception e) when (e is IOException or InvalidDataException or ConfigException or UnauthorizedAccessException
                                      or Models.Interop.CheckpointFormatException or TrainingDivergedException or ArgumentException)
        {
            stderr.WriteLine($"error: {e.Message}");
            return Program.ExitBadFile;
        }
    }
}

/// <summary>`maskbit train generator --config C [a.b.c=v ...] [--tokenizer W] [--out DIR] [--seed N] [--no-token-cache]`.</summary>
public static class TrainGeneratorCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.ConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer weights (overrides experiment.vqgan_checkpoint): a MaskBit training checkpoint or an official .bin." };
        var output = new Option<string?>("--out") { Description = "Run folder (default: experiment.output_dir, else runs/<experiment.name>). An existing checkpoint there is resumed." };
        var seed = new Option<int?>("--seed") { Description = "Overrides training.seed." };
        var noCache = new Option<bool>("--no-token-cache") { Description = "Encode augmented images every step instead of caching the dataset's tokens once in tokens.npz." };
        var command = new Command("generator", "Train the Stage-II masked bit-token generator on a frozen tokenizer (Ctrl-C stops with a resumable checkpoint).")
        {
            config, overrides, tokenizer, output, seed, noCache,
        };
        command.SetAction(parse => GeneratorCommands.Guard(stderr, () =>
        {
            var cfg = GeneratorCommands.LoadConfig(parse.GetValue(config)!, parse.GetValue(overrides) ?? Array.Empty<string>(), stderr, out int code);
            if (cfg == null) return code;
            string? tokenizerPath = parse.GetValue(tokenizer);
            if (tokenizerPath == null && !cfg.Has("experiment.vqgan_checkpoint"))
                return GeneratorCommands.Usage(stderr, "--tokenizer", "no tokenizer weights given (pass --tokenizer or set experiment.vqgan_checkpoint)");
            tokenizerPath ??= cfg.GetString("experiment.vqgan_checkpoint");
            if (!GeneratorCommands.RequireFile(tokenizerPath, parse.GetValue(tokenizer) != null ? "--tokenizer" : "experiment.vqgan_checkpoint", stderr))
                return Program.ExitBadFile;
            string outDir = parse.GetValue(output) ?? cfg.GetString("experiment.output_dir",
                Path.Combine("runs", cfg.GetString("experiment.name", "maskbit_generator")));

            using var cancel = new CancellationTokenSource();
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                e.Cancel = true;   // finish the step and write a checkpoint instead of dying
                stderr.WriteLine("interrupt: stopping after this step (press Ctrl-C again to abort)");
                if (cancel.IsCancellationRequested) Environment.Exit(130);
                cancel.Cancel();
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                var trainer = new GeneratorTrainer(cfg, new GeneratorTrainerOptions
                {
                    OutputDir = outDir, TokenizerPath = tokenizerPath, Seed = parse.GetValue(seed),
                    CacheTokens = !parse.GetValue(noCache), Log = stdout, Cancel = cancel.Token,
                });
                var result = trainer.Run();
                stdout.WriteLine(result.Interrupted
                    ? $"stopped at step {result.Step}: {result.CheckpointPath}"
                    : $"finished at step {result.Step}: weights {result.WeightsPath}, checkpoint {result.CheckpointPath}");
                return Program.ExitOk;
            }
            finally { Console.CancelKeyPress -= onCancel; }
        }));
        return command;
    }
}
