using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using MaskBit.Models.Metrics;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit eval generator --config C --tokenizer W1 --generator W2 [--num-images N] [--inception-weights I
/// [--fid-stats S]] [--out DIR]`: samples N images with labels cycling over the classes (every consecutive run of
/// nclass images holds each class once) and reports the sampling speed; with the FID InceptionV3 also the
/// Inception Score of the samples and, against reference statistics (ADM-style .npz with mu, sigma, as the
/// reference's eval_maskbit uses), gFID. Printed and written to DIR/metrics.json.</summary>
public static class EvalGeneratorCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var flags = new SamplingFlags();
        var inception = new InceptionFlags();
        var numImages = new Option<int>("--num-images") { Description = "Images to sample.", DefaultValueFactory = _ => 50 };
        var fidStats = new Option<string?>("--fid-stats") { Description = "Reference statistics for gFID: an ADM-style .npz with mu (2048) and sigma (2048, 2048); needs --inception-weights." };
        var output = new Option<string>("--out") { Description = "Folder for metrics.json.", DefaultValueFactory = _ => "." };
        var command = new Command("generator", CommandSupport.Describe(
            "Measure the generator's sampling speed (and gFID / IS where an Inception network is available).",
            "maskbit eval generator --num-images 40   # the shipped Fashion-MNIST model"));
        flags.AddTo(command);
        command.Options.Add(numImages);
        inception.AddTo(command);
        command.Options.Add(fidStats);
        command.Options.Add(output);
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(flags.Device), () =>
        {
            int n = parse.GetValue(numImages);
            if (n < 1) return GeneratorCommands.Usage(stderr, "--num-images", $"must be at least 1, got {n}");
            int splits = parse.GetValue(inception.Splits);
            if (splits < 1) return GeneratorCommands.Usage(stderr, "--is-splits", $"must be at least 1, got {splits}");
            string? inceptionPath = parse.GetValue(inception.Weights), statsPath = parse.GetValue(fidStats);
            if (statsPath != null && inceptionPath == null)
                return GeneratorCommands.Usage(stderr, "--inception-weights", "gFID needs the FID InceptionV3 (--inception-weights) besides --fid-stats");
            if (statsPath != null && n < 2) return GeneratorCommands.Usage(stderr, "--num-images", $"gFID needs at least 2 images, got {n}");
            if (!GeneratorCommands.RequireFile(inceptionPath, "--inception-weights", stderr) || !GeneratorCommands.RequireFile(statsPath, "--fid-stats", stderr))
                return Program.ExitBadFile;
            var reference = statsPath == null ? null : GaussianStatistics.LoadNpz(statsPath);
            if (reference != null && reference.Dim != InceptionFeatureExtractor.PoolFeatures)
                throw new InvalidDataException($"{statsPath}: mu has {reference.Dim} values, the Inception pool features {InceptionFeatureExtractor.PoolFeatures}");
            var network = inception.Load(parse, stdout);
            var loaded = flags.Load(parse, stdout, stderr, out int code);
            if (loaded == null) return code;

            var labels = Enumerable.Range(0, n).Select(i => i % loaded.NumClasses).ToArray();
            var clock = Stopwatch.StartNew();
            var (images, shape, _) = loaded.Sample(labels, new ProgressDisplay(stdout, "sample", unit: "img"));
            double seconds = clock.Elapsed.TotalSeconds;
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"sampled {n} images ({loaded.Options.NumSteps} steps, guidance {loaded.Options.GuidanceScale}, batch {loaded.BatchSize}) in {seconds:0.00} s: {n / seconds:0.00} images/s"));
            var metrics = new Dictionary<string, double>
            {
                ["num_images"] = n,
                ["num_classes"] = labels.Distinct().Count(),
                ["sampling_seconds"] = seconds,
                ["images_per_second"] = n / seconds,
            };

            string? missing = InceptionFlags.NeedsNetwork("gFID and InceptionScore");
            if (network != null)
            {
                if (shape[1] != 3) throw new InvalidDataException($"gFID / IS need RGB samples; the tokenizer decodes {shape[1]} channel(s)");
                var outputs = network.Extract(new ImageBatch(images, shape[0], shape[1], shape[2], shape[3]).ToUInt8(), n, shape[2], shape[3]);
                if (reference != null)
                {
                    var moments = new FeatureMoments(outputs.FeatureDim);
                    for (int i = 0; i < n; i++) moments.Add(outputs.FeatureRow(i));
                    metrics["gFID"] = Frechet.Distance(moments.ToStatistics(), reference);
                }
                var score = new InceptionScoreAccumulator(outputs.LogitsDim, InceptionScoreAccumulator.EffectiveSplits(n, splits), n);
                for (int i = 0; i < n; i++) score.Add(outputs.LogitsRow(i));
                var (mean, std) = score.MeanAndStd();
                metrics["InceptionScore"] = mean;
                metrics["InceptionScoreStd"] = std;
                metrics["InceptionScoreSplits"] = score.Splits;
                missing = reference == null ? "gFID not computed: it needs reference statistics, pass --fid-stats NPZ (ADM-style, with mu and sigma)" : null;
            }
            InceptionFlags.Report(metrics, splits, missing, parse.GetValue(output)!, stdout);
            return Program.ExitOk;
        }));
        return command;
    }
}
