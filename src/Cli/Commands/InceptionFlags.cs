using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using MaskBit.Models.Metrics;

namespace MaskBit.Cli.Commands;

/// <summary>The FID-InceptionV3 flags (--inception-weights for `eval tokenizer`, `eval generator` and `train
/// tokenizer`; --is-splits for `eval tokenizer`) and how the eval commands print and save their metrics.</summary>
internal sealed class InceptionFlags
{
    public const string MetricsFileName = "metrics.json";

    public Option<string?> Weights { get; } = new("--inception-weights")
    {
        Description = $"The FID InceptionV3 ({InceptionFeatureExtractor.WeightsDescription}); enables FID and the Inception Score.",
    };

    public Option<int> Splits { get; } = new("--is-splits")
    {
        Description = "Inception Score splits (mean ± std over consecutive splits of the images; fewer when there are under " +
                      $"{InceptionScoreAccumulator.MinImagesPerSplit} images per split). The default 1 is the reference TokenizerEvaluator's single-split score.",
        DefaultValueFactory = _ => 1,
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Weights);
        command.Options.Add(Splits);
    }

    /// <summary>The network of --inception-weights, or null without the flag (loading fails with an error naming the file).</summary>
    public InceptionFeatureExtractor? Load(ParseResult parse, TextWriter stdout)
    {
        if (parse.GetValue(Weights) is not { } path) return null;
        var network = InceptionFeatureExtractor.Load(path);
        stdout.WriteLine($"loaded FID InceptionV3 from {path}");
        return network;
    }

    /// <summary>Prints the metrics (the Inception Score with its spread and splits on one line) and writes them to
    /// DIR/metrics.json; <paramref name="missing"/> is a line on metrics that could not be computed (see <see cref="NeedsNetwork"/>).</summary>
    public static void Report(IReadOnlyDictionary<string, double> metrics, int requestedSplits, string? missing, string outputDir, TextWriter stdout)
    {
        int width = Math.Max(20, metrics.Keys.Select(k => k.Length + 2).DefaultIfEmpty(0).Max());
        foreach (var (name, value) in metrics)
        {
            if (name is "InceptionScoreStd" or "InceptionScoreSplits") continue;
            string line = name.PadRight(width) + Format(value);
            if (name == "InceptionScore" && metrics.TryGetValue("InceptionScoreSplits", out double splits))
            {
                line += $" ± {Format(metrics["InceptionScoreStd"])} ({splits:0} split{(splits == 1 ? "" : "s")}";
                if (splits < requestedSplits) line += $", not {requestedSplits}: under {InceptionScoreAccumulator.MinImagesPerSplit} images per split otherwise";
                line += ")";
            }
            stdout.WriteLine(line);
        }
        if (missing != null) stdout.WriteLine(missing);
        Directory.CreateDirectory(outputDir);
        string path = Path.Combine(outputDir, MetricsFileName);
        File.WriteAllText(path, JsonSerializer.Serialize(metrics, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        stdout.WriteLine($"wrote {path}");
    }

    /// <summary>The line saying that <paramref name="metrics"/> were skipped for want of --inception-weights.</summary>
    public static string NeedsNetwork(string metrics) =>
        $"{metrics} not computed: they need the FID InceptionV3, pass --inception-weights FILE ({InceptionFeatureExtractor.WeightsDescription})";

    private static string Format(double value) =>
        value == Math.Floor(value) && Math.Abs(value) < 1e9 ? value.ToString("0", CultureInfo.InvariantCulture) : value.ToString("F4", CultureInfo.InvariantCulture);
}
