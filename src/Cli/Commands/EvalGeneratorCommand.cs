using System.CommandLine;
using System.Globalization;
using MaskBit.Distributed;
using MaskBit.Models.Classifier;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Metrics;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit eval generator --config C --generator W2 [--tokenizer W1] [--num-images N] [--inception-weights I
/// [--fid-stats S]] [--out DIR]`: the reference's eval_maskbit — N images (50,000 by default) with labels cycling
/// over the classes, streamed through the FID InceptionV3 (<see cref="GeneratorEvaluation"/>: memory independent of
/// N), gFID against ADM-style reference statistics and the Inception Score in the ADM suite's parts of 5,000; the
/// sampling speed always. Resumable: the state is saved in DIR every minute and on Ctrl-C, and the same command
/// continues it. Printed and written to DIR/metrics.json.</summary>
public static class EvalGeneratorCommand
{
    /// <summary>How often the state is saved while sampling.</summary>
    private static readonly TimeSpan SaveEvery = TimeSpan.FromMinutes(1);

    /// <summary>Where statistics computed from reference images (arr_0) are saved, in the output folder.</summary>
    public const string ReferenceStatisticsFileName = "reference_stats.npz";

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var flags = new SamplingFlags();
        var inception = new InceptionFlags();
        var numImages = new Option<long>("--num-images") { Description = "Images to sample (the reference evaluates 50,000).", DefaultValueFactory = _ => GeneratorEvaluation.ReferenceImages };
        var splitSize = new Option<long>("--is-split-size")
        {
            Description = "Images per Inception Score part; the score is the mean over the parts (the ADM suite's 5,000, as the reference: 10 parts of 50,000 images).",
            DefaultValueFactory = _ => InceptionScoreAccumulator.AdmSplitSize,
        };
        var fidStats = new Option<string?>("--fid-stats")
        {
            Description = "Reference for gFID: an ADM-style .npz with mu (2048) and sigma (2048, 2048) (e.g. the reference's train_imagenet256_stats.npz), " +
                          $"or reference images arr_0 (N, H, W, 3) uint8, whose statistics are computed and saved as DIR/{ReferenceStatisticsFileName}; needs --inception-weights.",
        };
        var fresh = new Option<bool>("--fresh") { Description = $"Start over instead of resuming the evaluation state in --out ({GeneratorEvaluation.StateFileName})." };
        var output = new Option<string>("--out") { Description = "Folder for metrics.json and the resumable state.", DefaultValueFactory = _ => "." };
        var classifier = ClassifierOption("samples", "generator");
        var command = new Command("generator", CommandSupport.Describe(
            "Evaluate a generator as the reference's eval_maskbit: gFID and Inception Score of 50,000 samples (with --inception-weights), and the sampling speed. " +
            "Samples stream through the Inception network (memory does not grow with --num-images); an interrupted run resumes from the state in --out.",
            "maskbit eval generator --num-images 40   # the shipped Fashion-MNIST model",
            "maskbit eval generator --config configs/generator/maskbit_generator_10bit.yaml --tokenizer maskbit_tokenizer_10bit.bin --generator maskbit_generator_10bit.bin " +
            "--inception-weights pt_inception-2015-12-05-6726825d.pth --fid-stats train_imagenet256_stats.npz --out eval/generator_10bit"));
        flags.AddTo(command);
        command.Options.Add(numImages);
        command.Options.Add(inception.Weights);
        command.Options.Add(splitSize);
        command.Options.Add(fidStats);
        command.Options.Add(fresh);
        command.Options.Add(output);
        command.Options.Add(classifier);
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(flags.Device), () =>
        {
            long n = parse.GetValue(numImages), partSize = parse.GetValue(splitSize);
            if (n < 1) return GeneratorCommands.Usage(stderr, "--num-images", $"must be at least 1, got {n}");
            if (partSize < 1) return GeneratorCommands.Usage(stderr, "--is-split-size", $"must be at least 1, got {partSize}");
            string? inceptionPath = parse.GetValue(inception.Weights), statsPath = parse.GetValue(fidStats);
            if (statsPath != null && inceptionPath == null)
                return GeneratorCommands.Usage(stderr, "--inception-weights", "gFID needs the FID InceptionV3 (--inception-weights) besides --fid-stats");
            if (statsPath != null && n < 2) return GeneratorCommands.Usage(stderr, "--num-images", $"gFID needs at least 2 images, got {n}");
            if (!GeneratorCommands.RequireFile(inceptionPath, "--inception-weights", stderr) || !GeneratorCommands.RequireFile(statsPath, "--fid-stats", stderr))
                return Program.ExitBadFile;
            string outDir = parse.GetValue(output)!;
            // Under mpirun each rank samples and evaluates a share of the images; rank 0 merges the shares and reports.
            var group = ProcessGroup.World;
            var log = group.IsMain() ? stdout : TextWriter.Null;
            var network = inception.Load(parse, log);
            var reference = statsPath == null || !group.IsMain() ? null : LoadReference(statsPath, network!, outDir, stdout);
            var loaded = flags.Load(parse, log, stderr, out int code);
            if (loaded == null) return code;
            string? classifierPath = ClassifierPath(parse.GetValue(classifier), loaded.Config);
            var quality = classifierPath == null ? null : new ClassifierPass(classifierPath, loaded, n, log);
            // Without the Inception network only the classifier's images are worth sampling.
            if (network == null && quality != null) n = Math.Min(n, quality.Images);

            string settings = string.Create(CultureInfo.InvariantCulture,
                $"{loaded.Files}; steps {loaded.Options.NumSteps}, guidance {loaded.Options.GuidanceScale}, temperature {loaded.Options.SoftmaxTemperature}, " +
                $"seed {loaded.Seed}, batch {loaded.BatchSize}; inception {(inceptionPath == null ? "none" : Path.GetFullPath(inceptionPath))}, IS part size {partSize}; " +
                $"classifier {(quality == null ? "none" : $"{Path.GetFullPath(classifierPath!)}, {quality.Images} images")}");
            GeneratorEvaluation Share(int rank) => new(network, n, loaded.NumClasses, settings, partSize,
                GeneratorEvaluation.Share(n, loaded.BatchSize, rank, group.WorldSize), quality?.EmptyScores());
            var evaluation = Share(group.Rank);
            Directory.CreateDirectory(outDir);
            string statePath = StatePath(outDir, group.Rank, group.WorldSize);
            if (parse.GetValue(fresh)) File.Delete(statePath);
            if (evaluation.Resume(statePath))
                log.WriteLine($"resuming the evaluation in {statePath}: {evaluation.Done} of {evaluation.End - evaluation.First} images done (--fresh starts over)");

            var progress = new ProgressDisplay(log, "sample", unit: "img");
            bool finished;
            using (var stop = new StopSignal(progress.Log))
                finished = evaluation.Run(
                    (labels, start) => loaded.SampleBatch(labels, new SeededRandomSource(GeneratorEvaluation.BatchSeed(loaded.Seed, start))),
                    loaded.BatchSize, done => progress.Report(done, evaluation.End - evaluation.First), statePath, SaveEvery, stop.Token);
            progress.Finish();
            // Every rank has saved its state; one all-gather says whether all finished (and that the files are there).
            if (group.AllGather(finished ? 1 : 0).Any(f => f == 0))
            {
                log.WriteLine($"stopped after {evaluation.Done} of {evaluation.End - evaluation.First} images; the state is in {statePath}, run the same command to continue");
                return Program.ExitInterrupted;
            }
            if (!group.IsMain()) return Program.ExitOk;
            for (int rank = 1; rank < group.WorldSize; rank++)
            {
                var other = Share(rank);
                if (!other.Resume(StatePath(outDir, rank, group.WorldSize)))
                    throw new FileNotFoundException($"{StatePath(outDir, rank, group.WorldSize)}: rank {rank}'s evaluation state is missing (--out must be on a file system every rank shares)");
                evaluation.Merge(other);
            }
            var metrics = evaluation.Result(reference);
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"sampled {n} images ({loaded.Options.NumSteps} steps, guidance {loaded.Options.GuidanceScale}, batch {loaded.BatchSize}) in {evaluation.SamplingSeconds:0.00} s: {metrics["images_per_second"]:0.00} images/s"));
            string? missing = network == null ? InceptionFlags.NeedsNetwork("gFID and InceptionScore")
                : reference == null ? "gFID not computed: it needs reference statistics, pass --fid-stats NPZ (ADM-style, with mu and sigma, or reference images arr_0)" : null;
            if (quality != null)
                foreach (var (key, value) in quality.Result(evaluation.Classifier, stdout)) metrics[key] = value;
            InceptionFlags.Report(metrics, (int)metrics.GetValueOrDefault("InceptionScoreSplits", 1), missing, outDir, stdout);
            return Program.ExitOk;
        }));
        return command;
    }

    /// <summary>The resumable state of rank <paramref name="rank"/> of <paramref name="world"/> (one file per rank under mpirun).</summary>
    private static string StatePath(string outDir, int rank, int world) =>
        Path.Combine(outDir, world == 1 ? GeneratorEvaluation.StateFileName
            : Path.ChangeExtension(GeneratorEvaluation.StateFileName, null) + $".rank{rank}of{world}.npz");

    /// <summary>--classifier of `eval generator` and `eval tokenizer`: what scores the <paramref name="scored"/>.</summary>
    internal static Option<string?> ClassifierOption(string scored, string model) => new("--classifier")
    {
        Description = $"Fashion-MNIST classifier weights (model.classifier of the shipped classifier.yaml) scoring the {scored}: class agreement and the " +
                      $"Fréchet distance in its features, next to real test images at the same n (default: {ShippedModel.DisplayFolder}/classifier.safetensors " +
                      $"when the {model} config's dataset.params.train_shards_path_or_url is fashion-mnist at resolution 32; 'none' turns it off).",
    };

    /// <summary>--classifier, else the shipped classifier when the model was trained on Fashion-MNIST; null for none.</summary>
    internal static string? ClassifierPath(string? option, MaskBitConfig config)
    {
        if (option == "none") return null;
        if (option != null) return CommandSupport.RequireFile(option, "--classifier", "pass the classifier.safetensors of `maskbit train classifier`");
        // The shipped classifier reads the embedded Fashion-MNIST's 32×32 images.
        bool fashionMnist = config.GetString("dataset.params.train_shards_path_or_url", "") == TrainingData.FashionMnistName
                            && config.GetInt("dataset.preprocessing.resolution", 0) == ClassifierConfig.FashionMnist.Resolution;
        return fashionMnist && File.Exists(ShippedModel.ClassifierWeights) ? ShippedModel.ClassifierWeights : null;
    }

    /// <summary>The classifier's share of the sampling pass: it scores the first min(n, 5,000) samples (as many as
    /// half the test set, whose first images are the floor and the rest the reference) against their requested
    /// class; <see cref="Result"/> prints class agreement and the Fréchet distance in its features next to the same
    /// numbers for as many real test images (<see cref="SampleQuality"/>).</summary>
    private sealed class ClassifierPass
    {
        private readonly ImageClassifier _model;
        private readonly FashionMnist _test = new(train: false, padTo32: true, channels: 1);

        /// <summary>How many of the first samples the classifier scores.</summary>
        public long Images { get; }

        public ClassifierPass(string weights, SamplingFlags.Loaded loaded, long n, TextWriter log)
        {
            _model = LoadClassifier(weights, log);
            int resolution = (int)loaded.Config.GetInt("dataset.preprocessing.resolution", 0);
            if (resolution != _model.Config.Resolution)
                throw new UsageException($"--classifier reads {_model.Config.Resolution}×{_model.Config.Resolution} Fashion-MNIST images; this generator makes {resolution}×{resolution} (pass --classifier none)");
            if (loaded.NumClasses != _model.Config.NumClasses)
                throw new UsageException($"--classifier tells {_model.Config.NumClasses} classes apart; this generator samples {loaded.NumClasses} (pass --classifier none)");
            Images = Math.Min(n, _test.Count / 2);
            if (Images < 2) log.WriteLine("classifier scores need at least 2 images (--num-images)");
        }

        public (ClassifierScores, long)? EmptyScores() => Images < 2 ? null : (new ClassifierScores(_model), Images);

        public Dictionary<string, double> Result(ClassifierScores? samples, TextWriter stdout)
        {
            if (samples == null) return new();
            var result = SampleQuality.Against(samples, _test);
            foreach (var line in result.Lines()) stdout.WriteLine(line);
            return result.ToMetrics();
        }
    }

    internal static ImageClassifier LoadClassifier(string weights, TextWriter stdout) =>
        PretrainedModels.Classifier(CommandSupport.LoadConfig(ShippedModel.ClassifierConfig, null), weights, stdout.WriteLine);

    /// <summary>The reference statistics of --fid-stats; computed from its images (and saved to the output folder)
    /// when it holds arr_0 rather than mu / sigma.</summary>
    private static GaussianStatistics LoadReference(string path, InceptionFeatureExtractor network, string outDir, TextWriter stdout)
    {
        GaussianStatistics statistics;
        if (ReferenceStatistics.HasStatistics(path)) statistics = ReferenceStatistics.Load(path, network);
        else
        {
            stdout.WriteLine($"{path} holds reference images (arr_0): computing their Inception statistics");
            var progress = new ProgressDisplay(stdout, "reference", unit: "img");
            statistics = ReferenceStatistics.Load(path, network, (done, total) => progress.Report(done, total));
            progress.Finish();
            Directory.CreateDirectory(outDir);
            string saved = Path.Combine(outDir, ReferenceStatisticsFileName);
            ReferenceStatistics.Save(saved, statistics);
            stdout.WriteLine($"wrote {saved} (pass it as --fid-stats next time)");
        }
        if (statistics.Dim != InceptionFeatureExtractor.PoolFeatures)
            throw new InvalidDataException($"{path}: mu has {statistics.Dim} values, the Inception pool features {InceptionFeatureExtractor.PoolFeatures}");
        return statistics;
    }
}
