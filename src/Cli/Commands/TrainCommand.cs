using System.CommandLine;
using System.Runtime.InteropServices;
using MaskBit.Models.Config;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit train tokenizer`: Stage-I training from a config (the reference's scripts/train_tokenizer.py).</summary>
internal static class TrainCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var train = new Command("train", "Train a model.");
        train.Subcommands.Add(Tokenizer(stdout, stderr));
        return train;
    }

    private static Command Tokenizer(TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.ConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var output = new Option<string?>("--out") { Description = "Run folder (default: experiment.output_dir, else $WORKSPACE/outputs/<experiment.name>, WORKSPACE defaulting to ./runs)." };
        var seed = new Option<int?>("--seed") { Description = "Overrides training.seed." };
        var device = new Option<string>("--device") { Description = "Compute device (cpu).", DefaultValueFactory = _ => "cpu" };
        var perceptualWeights = new Option<string?>("--perceptual-weights") { Description = "Weights of the perceptual network (losses.perceptual_loss)." };
        var allowNoPerceptual = new Option<bool>("--allow-no-perceptual") { Description = "Train without the perceptual term when its network is unavailable." };
        var command = new Command("tokenizer", "Train the conv tokenizer (VQGAN+ / MaskBit Stage I). Ctrl-C stops after the current step and writes a resumable checkpoint.")
        {
            config, overrides, output, seed, device, perceptualWeights, allowNoPerceptual,
        };
        command.SetAction(parse => CommandSupport.Guard(stderr, () =>
        {
            if (parse.GetValue(device) is var d && d != "cpu")
            {
                stderr.WriteLine($"error: --device '{d}': training runs on the cpu device only for now");
                return Program.ExitUsage;
            }
            var assignments = (parse.GetValue(overrides) ?? Array.Empty<string>()).ToList();
            if (parse.GetValue(seed) is { } s) assignments.Add($"training.seed={s}");
            var cfg = MaskBitConfig.Load(parse.GetValue(config)!, assignments);
            string outputDir = parse.GetValue(output) ?? DefaultOutputDir(cfg);

            bool interactive = ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected;
            var progress = interactive ? new ProgressDisplay(stdout) : null;
            using var trainer = new TokenizerTrainer(cfg, new TokenizerTrainerOptions
            {
                OutputDir = outputDir,
                PerceptualWeights = parse.GetValue(perceptualWeights),
                AllowNoPerceptual = parse.GetValue(allowNoPerceptual),
                Log = progress?.Log ?? stdout,
                OnStep = progress != null ? progress.Update : null,
            });
            using var stop = new StopSignal(stdout);
            try
            {
                var result = trainer.Run(stop.Token);
                return result.Outcome == TrainingOutcome.Cancelled ? Program.ExitCancelled : Program.ExitOk;
            }
            finally { progress?.Finish(); }
        }));
        return command;
    }

    private static string DefaultOutputDir(MaskBitConfig cfg) =>
        cfg.Has("experiment.output_dir") ? cfg.GetString("experiment.output_dir")
            : Path.Combine(Environment.GetEnvironmentVariable("WORKSPACE") is { Length: > 0 } w ? w : "runs", "outputs",
                cfg.GetString("experiment.name", "tokenizer"));

    /// <summary>Ctrl-C / SIGTERM request a clean stop (checkpoint, then exit); a second Ctrl-C ends the process.</summary>
    internal sealed class StopSignal : IDisposable
    {
        private readonly CancellationTokenSource _source = new();
        private readonly TextWriter _stdout;
        private readonly PosixSignalRegistration? _terminate;

        public StopSignal(TextWriter stdout)
        {
            _stdout = stdout;
            Console.CancelKeyPress += OnCancelKeyPress;
            _terminate = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
            {
                context.Cancel = true;
                Request();
            });
        }

        public CancellationToken Token => _source.Token;

        private void OnCancelKeyPress(object? sender, ConsoleCancelEventArgs e)
        {
            if (_source.IsCancellationRequested) return;   // second Ctrl-C: let the process end
            e.Cancel = true;
            Request();
        }

        private void Request()
        {
            _stdout.WriteLine();
            _stdout.WriteLine("stopping after this step (writing a checkpoint); press Ctrl-C again to abort");
            _source.Cancel();
        }

        public void Dispose()
        {
            Console.CancelKeyPress -= OnCancelKeyPress;
            _terminate?.Dispose();
            _source.Dispose();
        }
    }
}
