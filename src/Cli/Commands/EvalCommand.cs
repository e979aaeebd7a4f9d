using System.CommandLine;
using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Distributed;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Metrics;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit eval tokenizer`: reconstruction metrics of a trained tokenizer (the reference's
/// eval_reconstruction): PSNR, SSIM, MAE, MSE, codebook usage and entropy, and with --inception-weights rFID
/// (reconstructions against the originals, as the reference's TokenizerEvaluator) and the Inception Score; printed
/// and written to metrics.json.</summary>
internal static class EvalCommand
{
    public const string MetricsFileName = InceptionFlags.MetricsFileName;

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var eval = new Command("eval", "Evaluate a model.");
        eval.Subcommands.Add(Tokenizer(stdout, stderr));
        return eval;
    }

    private static Command Tokenizer(TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.ConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var weights = new Option<string?>("--checkpoint", "--weights") { Description = "Tokenizer weights: a training checkpoint or official weights (.bin, .safetensors); default: the config's experiment.vqgan_checkpoint, as the reference's eval_tokenizer." };
        var lpipsWeights = new Option<string?>("--lpips-weights") { Description = $"Adds LPIPS (VGG16) to the metrics, FILE[,FILE]: {PretrainedModels.LpipsWeightsDescription}." };
        var data = new Option<string?>("--data") { Description = "Images: webdataset shard pattern, image folder or fashion-mnist (default: dataset.params.eval_shards_path_or_url)." };
        var maxImages = new Option<int?>("--max-images") { Description = "Evaluate at most this many images." };
        var batchSize = new Option<int?>("--batch-size") { Description = "Images per batch (default: training.per_gpu_batch_size, else 32)." };
        var output = new Option<string>("--out") { Description = "Folder for metrics.json.", DefaultValueFactory = _ => "." };
        var noEma = CommandSupport.NoEmaOption();
        var nonStrict = CommandSupport.NonStrictOption();
        var inception = new InceptionFlags();
        var device = CommandSupport.DeviceOption();
        var strict = SkipReport.StrictOption();
        var precision = CommandSupport.PrecisionOption("the evaluation's forwards (the tokenizer's, and Inception's and LPIPS's when given)");
        var classifier = EvalGeneratorCommand.ClassifierOption("reconstructions of the first test images (the ceiling of this tokenizer's generators)", "tokenizer");
        var command = new Command("tokenizer", CommandSupport.Describe(
            "Reconstruction metrics of a tokenizer (PSNR, SSIM, MAE, MSE, codebook usage and entropy; " +
            "rFID and Inception Score with --inception-weights, LPIPS with --lpips-weights).",
            "maskbit eval tokenizer --config configs/fashion_mnist_tokenizer.yaml --checkpoint runs/tokenizer/checkpoint-600.safetensors --max-images 1000",
            "maskbit eval tokenizer --config configs/tokenizer/maskbit_tokenizer_12bit.yaml experiment.vqgan_checkpoint=maskbit_tokenizer_12bit.bin --inception-weights pt_inception-2015-12-05-6726825d.pth"))
        {
            config, overrides, weights, data, maxImages, batchSize, output, noEma, nonStrict, lpipsWeights, device, strict, classifier, precision,
        };
        inception.AddTo(command);
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(device), () =>
        {
            // Under mpirun each rank reconstructs a share of the images; rank 0 merges the sums and reports.
            var group = ProcessGroup.World;
            var log = group.IsMain() ? stdout : TextWriter.Null;
            var cfg = CommandSupport.LoadConfig(parse.GetValue(config)!, parse.GetValue(overrides));
            var run = RunSettings.From(cfg, TrainingStage.Tokenizer);
            string source = parse.GetValue(data) ?? run.EvalSource
                ?? throw new ConfigException($"{cfg.File}: no evaluation data: pass --data or set dataset.params.eval_shards_path_or_url");
            int batch = parse.GetValue(batchSize) ?? run.BatchSize ?? 32;
            if (batch < 1) throw new UsageException($"--batch-size must be at least 1, not {batch}");
            int splits = parse.GetValue(inception.Splits);
            if (splits < 1) throw new UsageException($"--is-splits must be at least 1, not {splits}");

            const string remedy = "pass a checkpoint of `maskbit train tokenizer` or official tokenizer weights";
            string weightsPath = parse.GetValue(weights) is { } given ? CommandSupport.RequireFile(given, "--checkpoint", remedy)
                : run.TokenizerCheckpoint is { } configured ? CommandSupport.RequireFile(configured, $"{cfg.File}: experiment.vqgan_checkpoint", remedy + " (--checkpoint)")
                : throw new UsageException($"--checkpoint is missing: {remedy}, or set experiment.vqgan_checkpoint");
            var autocast = Autocast.Parse(parse.GetValue(precision), "--precision");
            ImageTokenizer model;
            // As generate: 16-bit forwards keep the GEMM and conv weights in that type (half the model's memory).
            using (Module.StoreWeightsIn(autocast)) model = CommandSupport.LoadTokenizer(cfg, weightsPath, !parse.GetValue(noEma), log, parse.GetValue(nonStrict));
            using var forwards = Autocast.Enable(autocast);
            int channels = TrainingData.Channels(cfg);
            bool withInception = parse.GetValue(inception.Weights) != null;
            if ((withInception || parse.GetValue(lpipsWeights) != null) && channels != 3)
                throw new ConfigException($"rFID / IS / LPIPS need RGB images; the config's data has {channels} channel(s)");
            var lpips = parse.GetValue(lpipsWeights) is { } lpipsPath ? new LpipsMetric(PretrainedModels.LpipsNetwork(lpipsPath.Split(',', StringSplitOptions.TrimEntries))) : null;
            var dataset = TrainingData.Open(source, train: false, channels);
            IReadOnlyDictionary<string, double> scores;
            InceptionFeatureExtractor? network;
            try
            {
                var skips = new SkipReport(stderr, parse.GetValue(strict));
                long count = Math.Min(parse.GetValue(maxImages) ?? long.MaxValue, dataset.Count);
                if (withInception && count < 2) throw new ConfigException($"rFID needs at least 2 images, the data gives {count}");
                // This rank's images: a contiguous run of whole batches (all of them in one process).
                var (first, end) = GeneratorEvaluation.Share(count, batch, group.Rank, group.WorldSize);
                var share = group.WorldSize == 1 ? dataset : new SubsetDataset(dataset, Enumerable.Range((int)first, (int)(end - first)).ToArray());
                var loader = TokenizerEvaluation.EvalLoader(share, TrainingData.Transform(cfg), batch, workers: 1,
                    onSkipped: sample => skips.Skip(sample.Reason.Contains(sample.Key, StringComparison.Ordinal) ? sample.Reason : $"{sample.Key}: {sample.Reason}"));
                network = inception.Load(parse, log);
                log.WriteLine($"evaluating on {source}: {count} of {dataset.Count} images" + (group.WorldSize > 1 ? $", split over {group.WorldSize} ranks" : ""));
                var progress = new ProgressDisplay(log, "eval", unit: "img");
                scores = TokenizerEvaluation.Evaluate(model, Reporting(loader.Epoch(0), progress, end - first), end - first, network, splits, lpips,
                    new TokenizerEvaluation.EvaluationShare(group, first, count));
                progress.Finish();
                skips.Finish(end - first, "images");
                // The classifier's scores of the reconstructions: rank 0 alone (a few hundred images, not split).
                if (group.IsMain() && EvalGeneratorCommand.ClassifierPath(parse.GetValue(classifier), cfg) is { } classifierPath && dataset is FashionMnist)
                    scores = ScoreReconstructions(classifierPath, model, dataset, (int)Math.Min(count, dataset.Count / 2), scores, log);
            }
            finally { (dataset as IDisposable)?.Dispose(); }

            if (!group.IsMain()) return Program.ExitOk;
            InceptionFlags.Report(scores, splits, !withInception ? InceptionFlags.NeedsNetwork("rFID and InceptionScore") : null, parse.GetValue(output)!, stdout);
            return Program.ExitOk;
        }));
        return command;
    }

    /// <summary><paramref name="scores"/> and the classifier's class agreement and Fréchet distance of the
    /// reconstructions of the first <paramref name="count"/> test images, printed next to the floor.</summary>
    private static IReadOnlyDictionary<string, double> ScoreReconstructions(string weights, ImageTokenizer tokenizer, IImageDataset test, int count,
        IReadOnlyDictionary<string, double> scores, TextWriter stdout)
    {
        var metrics = new Dictionary<string, double>(scores);
        if (count < 2) { stdout.WriteLine("classifier scores need at least 2 images (--max-images)"); return metrics; }
        var progress = new ProgressDisplay(stdout, "classifier", unit: "img");
        var result = SampleQuality.MeasureReconstructions(EvalGeneratorCommand.LoadClassifier(weights, stdout), test, count,
            images => TokenizerEvaluation.Reconstruct(tokenizer, images).Reconstructions, progress: done => progress.Report(done, count));
        progress.Finish();
        foreach (var line in result.Lines("reconstructions")) stdout.WriteLine(line);
        foreach (var (key, value) in result.ToMetrics()) metrics[key] = value;
        return metrics;
    }

    /// <summary>The batches, reporting the images handed out so far (the evaluation of the previous batch is done
    /// when the next is requested).</summary>
    private static IEnumerable<Batch> Reporting(IEnumerable<Batch> batches, ProgressDisplay progress, long total)
    {
        long done = 0;
        foreach (var batch in batches)
        {
            yield return batch;
            done += batch.Images.Shape[0];
            progress.Report(Math.Min(done, total), total);
        }
    }
}
