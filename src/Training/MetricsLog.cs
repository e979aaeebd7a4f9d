using System.Text;
using System.Text.Json;

namespace MaskBit.Models.Training;

/// <summary>metrics.jsonl: one JSON object per logged step, {"step": N, "name": value, ...}. Opening it for a run
/// that resumes at step k drops the lines of steps after k (written by the interrupted run after its last
/// checkpoint), so the file reads as one uninterrupted run; a fresh run (k = 0) starts an empty file.</summary>
internal sealed class MetricsLog : IDisposable
{
    private readonly StreamWriter _writer;

    public MetricsLog(string path, long resumeStep)
    {
        var kept = resumeStep > 0 && File.Exists(path)
            ? File.ReadLines(path).Where(line => StepOf(line) is { } step && step <= resumeStep).ToList()
            : new List<string>();
        File.WriteAllLines(path, kept);
        _writer = new StreamWriter(path, append: true, new UTF8Encoding(false));
    }

    private static long? StepOf(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.TryGetProperty("step", out var s) && s.TryGetInt64(out var step) ? step : null;
        }
        catch (JsonException) { return null; }
    }

    /// <summary>Writes one line; non-finite values (never losses: those stop the run) are written as null.</summary>
    public void Write(long step, IReadOnlyDictionary<string, double> values)
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("step", step);
            foreach (var (name, value) in values)
            {
                if (double.IsFinite(value)) json.WriteNumber(name, value);
                else json.WriteNull(name);
            }
            json.WriteEndObject();
        }
        _writer.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
        _writer.Flush();
    }

    public void Dispose() => _writer.Dispose();
}
