using System.CommandLine;
using System.Diagnostics;
using System.Globalization;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit eval generator --config C --tokenizer W1 --generator W2 [--num-images N] [--inception-weights I
/// --fid-stats S]`: samples N images with labels cycling over the classes (as an evaluation set would) and reports
/// the sampling speed; gFID and IS need an InceptionV3 feature extractor, which this build does not have yet, so
/// with those flags it checks the files and says that part is skipped.</summary>
public static class EvalGeneratorCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var flags = new SamplingFlags();
        var numImages = new Option<int>("--num-images") { Description = "Images to sample.", DefaultValueFactory = _ => 50 };
        var inception = new Option<string?>("--inception-weights") { Description = "FID InceptionV3 weights (for gFID / IS)." };
        var fidStats = new Option<string?>("--fid-stats") { Description = "Reference statistics (.npz with mu, sigma) for gFID." };
        var command = new Command("generator", CommandSupport.Describe(
            "Measure the generator's sampling speed (and gFID / IS where an Inception network is available).",
            "maskbit eval generator --num-images 40   # the shipped Fashion-MNIST model"));
        flags.AddTo(command);
        command.Options.Add(numImages);
        command.Options.Add(inception);
        command.Options.Add(fidStats);
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(flags.Device), () =>
        {
            int n = parse.GetValue(numImages);
            if (n < 1) return GeneratorCommands.Usage(stderr, "--num-images", $"must be at least 1, got {n}");
            string? inceptionPath = parse.GetValue(inception), statsPath = parse.GetValue(fidStats);
            if ((inceptionPath == null) != (statsPath == null))
                return GeneratorCommands.Usage(stderr, inceptionPath == null ? "--inception-weights" : "--fid-stats", "gFID needs both --inception-weights and --fid-stats");
            if (!GeneratorCommands.RequireFile(inceptionPath, "--inception-weights", stderr) || !GeneratorCommands.RequireFile(statsPath, "--fid-stats", stderr))
                return Program.ExitBadFile;
            var loaded = flags.Load(parse, stdout, stderr, out int code);
            if (loaded == null) return code;

            var labels = Enumerable.Range(0, n).Select(i => i % loaded.NumClasses).ToArray();
            var clock = Stopwatch.StartNew();
            loaded.Sample(labels, new ProgressDisplay(stdout, "sample", unit: "img"));
            double seconds = clock.Elapsed.TotalSeconds;
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"sampled {n} images ({loaded.Options.NumSteps} steps, guidance {loaded.Options.GuidanceScale}, batch {loaded.BatchSize}) in {seconds:0.00} s: {n / seconds:0.00} images/s"));
            if (inceptionPath != null)
                stdout.WriteLine("gFID / IS skipped: this build has no InceptionV3 feature extractor (IFeatureExtractor) yet");
            return Program.ExitOk;
        }));
        return command;
    }
}
