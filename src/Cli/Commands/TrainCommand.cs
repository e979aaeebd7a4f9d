using System.CommandLine;
using MaskBit.Models.Config;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit train tokenizer`: Stage-I training from a config (the reference's scripts/train_tokenizer.py);
/// `maskbit train classifier`: the classifier that scores generated samples.</summary>
internal static class TrainCommand
{
    /// <summary>What --help of both training commands says about Ctrl-C and exit codes.</summary>
    public const string StopNote = "Ctrl-C (or SIGTERM) stops after the current step with a resumable checkpoint and exit code 130; " +
                                   "run the same command again to continue from it.";

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var train = new Command("train", "Train a model.");
        train.Subcommands.Add(Tokenizer(stdout, stderr));
        train.Subcommands.Add(Classifier(stdout, stderr));
        return train;
    }

    private static Command Tokenizer(TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.ConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var output = new Option<string?>("--out") { Description = "Run folder (default: experiment.output_dir, else $WORKSPACE/outputs/<experiment.name>, WORKSPACE defaulting to ./runs). An existing checkpoint there is resumed." };
        var seed = CommandSupport.SeedOption("Overrides training.seed.");
        var device = CommandSupport.DeviceOption();
        var perceptualWeights = new Option<string?>("--perceptual-weights")
        {
            Description = "Weights of the perceptual network (replaces losses.perceptual_weights): resnet50-0676ba61.pth, " +
                          "convnext_small-0c510722.pth, or for lpips vgg16-397923af.pth,vgg.pth (torchvision / LPIPS files as they are).",
        };
        var allowNoPerceptual = new Option<bool>("--allow-no-perceptual") { Description = "Train without the perceptual term when no perceptual weights are given." };
        var inception = new InceptionFlags();
        var command = new Command("tokenizer", CommandSupport.Describe(
            "Train the conv tokenizer (VQGAN+ / MaskBit Stage I). " + StopNote,
            "maskbit train tokenizer --config configs/fashion_mnist_tokenizer.yaml training.max_train_steps=600 --out runs/tokenizer",
            "maskbit train tokenizer --config configs/fashion_mnist_tokenizer.yaml --out runs/tokenizer   # resumes runs/tokenizer"))
        {
            config, overrides, output, seed, device, perceptualWeights, allowNoPerceptual,
        };
        command.Options.Add(inception.Weights);   // rFID / IS in the evaluations of experiment.eval_every
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(device), () =>
        {
            var assignments = (parse.GetValue(overrides) ?? Array.Empty<string>()).ToList();
            if (parse.GetValue(seed) is { } s) assignments.Add($"training.seed={s}");
            var cfg = CommandSupport.LoadConfig(parse.GetValue(config)!, assignments);
            string outputDir = parse.GetValue(output) ?? DefaultOutputDir(RunSettings.From(cfg, TrainingStage.Tokenizer));

            var progress = new ProgressDisplay(stdout, "train", plainLines: false);   // the trainer logs every log_every steps
            using var trainer = new TokenizerTrainer(cfg, new TokenizerTrainerOptions
            {
                OutputDir = outputDir,
                PerceptualWeights = parse.GetValue(perceptualWeights),
                AllowNoPerceptual = parse.GetValue(allowNoPerceptual),
                InceptionWeights = parse.GetValue(inception.Weights),
                Log = CommandSupport.RankLog(progress.Log),
                OnStep = progress.Shows ? progress.ReportStep : null,
            });
            return RunUntilStopped(progress, token => trainer.Run(token));
        }));
        return command;
    }

    private static Command Classifier(TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.ConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var output = new Option<string?>("--out") { Description = "Run folder (default: experiment.output_dir, else $WORKSPACE/outputs/<experiment.name>). An existing checkpoint there is resumed." };
        var seed = CommandSupport.SeedOption("Overrides training.seed.");
        var device = CommandSupport.DeviceOption();
        var command = new Command("classifier", CommandSupport.Describe(
            "Train the image classifier that scores generated samples (class agreement, Fréchet distance in its features); " +
            "a completed run writes classifier.safetensors in the run folder. " + StopNote,
            "maskbit train classifier --config configs/fashion_mnist_classifier.yaml --out runs/classifier"))
        {
            config, overrides, output, seed, device,
        };
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(device), () =>
        {
            var assignments = (parse.GetValue(overrides) ?? Array.Empty<string>()).ToList();
            if (parse.GetValue(seed) is { } s) assignments.Add($"training.seed={s}");
            var cfg = CommandSupport.LoadConfig(parse.GetValue(config)!, assignments);
            string outputDir = parse.GetValue(output) ?? DefaultOutputDir(RunSettings.From(cfg, TrainingStage.Classifier));
            var progress = new ProgressDisplay(stdout, "train", plainLines: false);
            using var trainer = new ClassifierTrainer(cfg, new ClassifierTrainerOptions
            {
                OutputDir = outputDir, Log = CommandSupport.RankLog(progress.Log), OnStep = progress.Shows ? progress.ReportStep : null,
            });
            return RunUntilStopped(progress, token => trainer.Run(token));
        }));
        return command;
    }

    /// <summary>Runs a trainer until it ends or Ctrl-C/SIGTERM stops it (exit 130 with a resumable checkpoint).</summary>
    private static int RunUntilStopped(ProgressDisplay progress, Func<CancellationToken, TrainingResult> run)
    {
        using var stop = new StopSignal(progress.Log);
        try
        {
            return run(stop.Token).Outcome == TrainingOutcome.Cancelled ? Program.ExitInterrupted : Program.ExitOk;
        }
        finally { progress.Finish(); }
    }

    /// <summary>experiment.output_dir, else $WORKSPACE/outputs/&lt;experiment.name&gt; (WORKSPACE defaulting to ./runs), as
    /// both reference scripts place a run.</summary>
    public static string DefaultOutputDir(RunSettings run) =>
        run.OutputDir ?? Path.Combine(Environment.GetEnvironmentVariable("WORKSPACE") is { Length: > 0 } w ? w : "runs", "outputs", run.Name);
}
