using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MaskBit.Cli.Commands;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Cli.Report;

/// <summary>What index.html shows: the metrics (also written as metrics.json), the commands, the machine, the class
/// names of the sample rows, and whether the demo ran to the end.</summary>
internal sealed record DemoReportContent(JsonObject Metrics, IReadOnlyList<(string Label, string Command)> Commands,
    IReadOnlyList<(string Name, string Value)> Machine, IReadOnlyList<string>? ClassNames, bool Complete);

/// <summary>The files of a demo run folder: metrics.json and a self-contained index.html that shows the images
/// (referenced relatively), the metrics, the commands and the machine.</summary>
internal static class DemoReport
{
    public const string IndexFile = "index.html", MetricsJsonFile = "metrics.json", ReconstructionsFile = "reconstructions.png",
        SamplesFile = "samples.png", LossesFile = "losses.png";

    /// <summary>Images are small (32×32 tiles); the page shows them enlarged with crisp pixels.</summary>
    private const int ImageScale = 3;

    public static void Write(string directory, DemoReportContent content)
    {
        File.WriteAllText(Path.Combine(directory, MetricsJsonFile), content.Metrics.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.WriteAllText(Path.Combine(directory, IndexFile), Html(directory, content));
    }

    /// <summary>Removes what a demo wrote into <paramref name="directory"/> (and nothing else there).</summary>
    public static void Clean(string directory, params string[] stageFolders)
    {
        foreach (var folder in stageFolders)
            if (Directory.Exists(Path.Combine(directory, folder))) Directory.Delete(Path.Combine(directory, folder), recursive: true);
        foreach (var file in new[] { IndexFile, MetricsJsonFile, ReconstructionsFile, SamplesFile, LossesFile, DemoState.FileName })
            File.Delete(Path.Combine(directory, file));
    }

    public static IReadOnlyList<(string, string)> MachineInfo()
    {
        var info = new List<(string, string)>
        {
            ("date", DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture)),
            ("cpu", CpuModel() ?? RuntimeInformation.ProcessArchitecture.ToString()),
            ("cores", $"{Environment.ProcessorCount} (worker threads {CpuParallel.Workers})"),
            ("simd", $"AVX2 {Avx2.IsSupported}, FMA {Fma.IsSupported}, AVX-512F {Avx512F.IsSupported}"),
            ("memory", $"{GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1 << 20):N0} MiB available"),
            ("os", RuntimeInformation.OSDescription),
            (".net", RuntimeInformation.FrameworkDescription),
        };
        if (File.Exists("/proc/loadavg")) info.Add(("load average at the end", string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3))));
        return info;
    }

    private static string? CpuModel() =>
        File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;

    // ---- index.html ------------------------------------------------------------------------------------------

    private const string Style = """
        body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
        h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
        .status { padding: 0.5em 0.8em; border-radius: 4px; background: #e8f5e9; }
        .status.partial { background: #fff3e0; }
        img.pixels { image-rendering: pixelated; border: 1px solid #ccc; }
        .samples { display: flex; gap: 0.8em; align-items: flex-start; }
        .rows { font-size: 13px; color: #555; }
        .rows div { display: flex; align-items: center; justify-content: flex-end; }
        table { border-collapse: collapse; margin: 0.5em 0 1em; } td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: left; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        .tables { display: flex; flex-wrap: wrap; gap: 2em; }
        pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
        """;

    private static readonly Dictionary<string, string> Labels = new()
    {
        ["psnr"] = "PSNR (dB)", ["ssim"] = "SSIM", ["mae"] = "MAE", ["mse"] = "MSE", ["train_images_per_second"] = "training images/s",
        ["images_per_second"] = "images/s", ["wall_seconds"] = "wall time (s)", ["stopped_by"] = "stopped by",
    };

    private static string Html(string directory, DemoReportContent c)
    {
        var h = new StringBuilder();
        h.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>MaskBit demo</title>\n<style>\n")
         .Append(Style).Append("</style>\n</head>\n<body>\n<h1>MaskBit demo</h1>\n");
        var m = c.Metrics;
        string data = Encode(m["data"]?.ToString() ?? "");
        h.Append(c.Complete
            ? $"<p class=\"status\">Complete: a tokenizer ({m["tokenizer"]?["steps"]} steps) and a generator ({m["generator"]?["steps"]} steps) trained on {data} on the CPU.</p>\n"
            : "<p class=\"status partial\">Interrupted: this report shows what was done so far. Run the same command again to resume.</p>\n");

        h.Append("<h2>Reconstructions</h2>\n");
        Figure(h, directory, ReconstructionsFile, "original images (top row) and their reconstructions from the tokenizer's bit tokens (bottom row)");
        h.Append("<h2>Class-conditional samples</h2>\n");
        if (Image(directory, SamplesFile, "class-conditional samples, one row per class") is { } samples)
        {
            var (height, rows) = (PngSize(Path.Combine(directory, SamplesFile)).Height, m["sampling"]?["classes"]?.GetValue<int>() ?? 0);
            h.Append("<div class=\"samples\">");
            if (c.ClassNames != null && rows > 0)
            {
                double rowHeight = (height - 2.0) / rows * ImageScale;
                h.Append(CultureInfo.InvariantCulture, $"<div class=\"rows\" style=\"padding-top:{2 * ImageScale}px\">");
                for (int r = 0; r < rows; r++)
                    h.Append(CultureInfo.InvariantCulture, $"<div style=\"height:{rowHeight:0.#}px\">{r} {Encode(r < c.ClassNames.Count ? c.ClassNames[r] : "")}</div>");
                h.Append("</div>");
            }
            h.Append(samples).Append("</div>\n");
            if (m["sampling"] is JsonObject s)
                h.Append(CultureInfo.InvariantCulture, $"<p>{s["images"]} images, {s["sampling_steps"]} sampling steps, guidance scale {s["guidance_scale"]}, seed {m["seed"]}.</p>\n");
        }
        else h.Append("<p>Not sampled yet (the generator stage has not written a checkpoint).</p>\n");
        if (m["quality"] is JsonObject quality) h.Append(Quality(quality));
        h.Append("<h2>Loss curves</h2>\n");
        Figure(h, directory, LossesFile, "training losses per logged step", scale: 1);

        h.Append("<h2>Metrics</h2>\n<div class=\"tables\">\n");
        foreach (var (name, title) in new[] { ("tokenizer", "Stage I: tokenizer"), ("evaluation", "Tokenizer evaluation"), ("generator", "Stage II: generator"), ("sampling", "Sampling") })
            if (m[name] is JsonObject section) Table(h, title, section);
        var overall = new JsonObject();
        foreach (var (key, value) in m)
            if (value is not JsonObject) overall[key] = value?.DeepClone();
        Table(h, "Run", overall);
        h.Append("</div>\n<p>All figures: <a href=\"metrics.json\">metrics.json</a>; losses per step: <a href=\"tokenizer/metrics.jsonl\">tokenizer/metrics.jsonl</a>, " +
                 "<a href=\"generator/metrics.jsonl\">generator/metrics.jsonl</a>; trainer logs: <a href=\"tokenizer/train.log\">tokenizer/train.log</a>, " +
                 "<a href=\"generator/train.log\">generator/train.log</a>.</p>\n");
        var checkpoints = new[] { m["tokenizer"]?["checkpoint"], m["generator"]?["checkpoint"] }.Select(n => n?.ToString()).OfType<string>().ToList();
        if (checkpoints.Count > 0)
            h.Append("<p>Checkpoints (weights, EMA weights, optimizer state): ")
             .AppendJoin(", ", checkpoints.Select(p => $"<a href=\"{Encode(p.Replace('\\', '/'))}\">{Encode(p)}</a>")).Append(".</p>\n");

        h.Append("<h2>Commands</h2>\n");
        foreach (var (label, command) in c.Commands) h.Append($"<p>{Encode(label)}:</p>\n<pre>{Encode(command)}</pre>\n");
        h.Append("<h2>Machine</h2>\n<table>\n");
        foreach (var (name, value) in c.Machine) h.Append($"<tr><th>{Encode(name)}</th><td>{Encode(value)}</td></tr>\n");
        h.Append("</table>\n</body>\n</html>\n");
        return h.ToString();
    }

    /// <summary>The classifier's verdict on the samples next to real test images (the floor): the overall figures,
    /// then class agreement per class in a table, one row per class.</summary>
    internal static string Quality(JsonObject q)
    {
        var h = new StringBuilder("<h2>Sample quality</h2>\n");
        h.Append(CultureInfo.InvariantCulture,
            $"<p>The Fashion-MNIST classifier ({Encode(q["classifier"]?.ToString() ?? "")}) puts {Percent(q["class_agreement"])} of {q["images"]} samples in their " +
            $"requested class ({Percent(q["real_class_agreement"])} of as many real test images); the Fréchet distance in its features to " +
            $"{q["reference_images"]} other test images is {Format(q["frechet_distance"])} (real test images: {Format(q["real_frechet_distance"])}, the floor).</p>\n");
        h.Append("<table>\n<tr><th>class</th><th>samples in the class</th><th>real test images</th></tr>\n");
        foreach (var row in q["per_class"]?.AsArray() ?? [])
            h.Append(CultureInfo.InvariantCulture,
                $"<tr><td>{row?["class"]} {Encode(row?["name"]?.ToString() ?? "")}</td><td class=\"num\">{Percent(row?["samples"])}</td><td class=\"num\">{Percent(row?["real"])}</td></tr>\n");
        h.Append("</table>\n");
        return h.ToString();
    }

    private static string Percent(JsonNode? value) =>
        value?.GetValueKind() == JsonValueKind.Number ? value.GetValue<double>().ToString("0.0%", CultureInfo.InvariantCulture) : "–";

    private static void Figure(StringBuilder h, string directory, string file, string caption, int scale = ImageScale)
    {
        if (Image(directory, file, caption, scale) is { } image) h.Append("<figure>").Append(image).Append($"<figcaption>{Encode(caption)}</figcaption></figure>\n");
        else h.Append("<p>Not available yet.</p>\n");
    }

    /// <summary>An &lt;img&gt; with a relative source and its enlarged size, or null when the file is missing.</summary>
    private static string? Image(string directory, string file, string alt, int scale = ImageScale)
    {
        string path = Path.Combine(directory, file);
        if (!File.Exists(path)) return null;
        var (width, height) = PngSize(path);
        return $"<img class=\"pixels\" src=\"{file}\" alt=\"{Encode(alt)}\" width=\"{width * scale}\" height=\"{height * scale}\">";
    }

    /// <summary>Width and height from a PNG's IHDR chunk.</summary>
    private static (int Width, int Height) PngSize(string path)
    {
        Span<byte> header = stackalloc byte[24];
        using (var file = File.OpenRead(path)) file.ReadExactly(header);
        return (BinaryPrimitives.ReadInt32BigEndian(header[16..]), BinaryPrimitives.ReadInt32BigEndian(header[20..]));
    }

    private static void Table(StringBuilder h, string title, JsonObject section)
    {
        h.Append($"<table>\n<tr><th colspan=\"2\">{Encode(title)}</th></tr>\n");
        foreach (var (key, value) in section)
        {
            string label = Labels.TryGetValue(key, out var l) ? l : key.Replace('_', ' ');
            bool numeric = value?.GetValueKind() == JsonValueKind.Number;
            h.Append($"<tr><td>{Encode(label)}</td><td{(numeric ? " class=\"num\"" : "")}>{Encode(Format(value))}</td></tr>\n");
        }
        h.Append("</table>\n");
    }

    private static string Format(JsonNode? value) => value?.GetValueKind() switch
    {
        null or JsonValueKind.Null => "–",
        JsonValueKind.True => "yes",
        JsonValueKind.False => "no",
        JsonValueKind.Number when long.TryParse(value.ToJsonString(), CultureInfo.InvariantCulture, out var whole) => whole.ToString("N0", CultureInfo.InvariantCulture),
        JsonValueKind.Number => double.Parse(value.ToJsonString(), CultureInfo.InvariantCulture).ToString("0.####", CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };

    private static string Encode(string text) => WebUtility.HtmlEncode(text);
}
