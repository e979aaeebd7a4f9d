using System.Globalization;
using System.Text.RegularExpressions;

namespace MaskBit.Models.Training;

/// <summary>
/// The folder of one training run, the same for both stages: the resolved <c>config.yaml</c>, <c>metrics.jsonl</c>,
/// <c>checkpoints/checkpoint-&lt;step&gt;.safetensors</c>, <c>samples/step-&lt;step&gt;.png</c> (reconstruction grids of
/// the tokenizer, sample grids of the generator) and, with experiment.logger: tensorboard, <c>logs/events.out.tfevents.*</c>. Tokenizer runs of the first layout kept their checkpoints in the
/// run folder itself; those are still found (and resumed).
/// </summary>
public sealed partial class RunFolder(string root)
{
    public const string ConfigFileName = "config.yaml", MetricsFileName = "metrics.jsonl", CheckpointsFolder = "checkpoints", SamplesFolder = "samples", TensorBoardFolder = "logs";

    public string Root { get; } = Path.GetFullPath(root);
    public string ConfigPath => Path.Combine(Root, ConfigFileName);
    public string MetricsPath => Path.Combine(Root, MetricsFileName);
    public string CheckpointsDir => Path.Combine(Root, CheckpointsFolder);
    public string SamplesDir => Path.Combine(Root, SamplesFolder);
    /// <summary>TensorBoard event files (experiment.logger: tensorboard).</summary>
    public string TensorBoardDir => Path.Combine(Root, TensorBoardFolder);

    public string CheckpointPath(long step) => Path.Combine(CheckpointsDir, $"checkpoint-{step.ToString(CultureInfo.InvariantCulture)}.safetensors");
    public string SamplesPath(long step) => Path.Combine(SamplesDir, $"step-{step.ToString(CultureInfo.InvariantCulture)}.png");

    [GeneratedRegex(@"^checkpoint-(\d+)\.safetensors$")]
    private static partial Regex CheckpointPattern();

    /// <summary>The checkpoints of the run, newest first (also those of the first layout, in the run folder itself).</summary>
    public IReadOnlyList<(long Step, string Path)> Checkpoints() =>
        new[] { CheckpointsDir, Root }.Where(Directory.Exists)
            .SelectMany(dir => Directory.EnumerateFiles(dir, "checkpoint-*.safetensors"))
            .Select(f => (Match: CheckpointPattern().Match(Path.GetFileName(f)), Path: f))
            .Where(x => x.Match.Success)
            .Select(x => (long.Parse(x.Match.Groups[1].Value, CultureInfo.InvariantCulture), x.Path))
            .OrderByDescending(x => x.Item1)
            .ToList();

    /// <summary>The newest checkpoint, or null.</summary>
    public string? LatestCheckpoint() => Checkpoints() is [var newest, ..] ? newest.Path : null;

    /// <summary>Deletes all checkpoints but the newest (a finished run keeps one).</summary>
    public void KeepLatestCheckpoint()
    {
        foreach (var (_, path) in Checkpoints().Skip(1)) File.Delete(path);
    }

    /// <summary>Creates the folder and writes the resolved config.</summary>
    public void Start(string configYaml)
    {
        Directory.CreateDirectory(Root);
        File.WriteAllText(ConfigPath, configYaml);
    }

    /// <summary>metrics.jsonl for a run at <paramref name="resumeStep"/> (lines of later steps are dropped).</summary>
    internal MetricsLog OpenMetrics(long resumeStep) => new(MetricsPath, resumeStep);
}
