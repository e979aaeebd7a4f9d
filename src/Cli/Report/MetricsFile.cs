using System.Text.Json;

namespace MaskBit.Cli.Report;

/// <summary>Reads a trainer's metrics.jsonl (one JSON object per logged step with a "step" field); a missing file
/// reads as empty and lines that are not JSON objects are skipped.</summary>
public static class MetricsFile
{
    /// <summary>(step, value) of every line that has a numeric <paramref name="key"/>, in file order.</summary>
    public static IReadOnlyList<(double X, double Y)> Series(string path, string key)
    {
        var points = new List<(double, double)>();
        foreach (var line in Lines(path))
            if (line.TryGetProperty("step", out var step) && step.ValueKind == JsonValueKind.Number
                && line.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.Number)
                points.Add((step.GetDouble(), value.GetDouble()));
        return points;
    }

    /// <summary>The last numeric value of each key in the file.</summary>
    public static IReadOnlyDictionary<string, double> LastValues(string path)
    {
        var last = new Dictionary<string, double>();
        foreach (var line in Lines(path))
            foreach (var property in line.EnumerateObject())
                if (property.Value.ValueKind == JsonValueKind.Number) last[property.Name] = property.Value.GetDouble();
        return last;
    }

    private static IEnumerable<JsonElement> Lines(string path)
    {
        if (!File.Exists(path)) yield break;
        foreach (var text in File.ReadLines(path))
        {
            JsonElement element;
            try
            {
                using var document = JsonDocument.Parse(text);
                element = document.RootElement.Clone();
            }
            catch (JsonException) { continue; }
            if (element.ValueKind == JsonValueKind.Object) yield return element;
        }
    }
}
