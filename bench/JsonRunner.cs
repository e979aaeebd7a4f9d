using System.Diagnostics;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace MaskBit.Bench;

/// <summary>The machine-readable mode (used by peer.sh): each workload is warmed up, then timed with a Stopwatch
/// until it has at least <c>minRuns</c> runs and <c>targetSeconds</c> of timing, and one JSON line with the median
/// is printed. Workloads whose op is not implemented yet print a row with an error instead.</summary>
public static class JsonRunner
{
    private static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <param name="device">"cpu" (the SIMD backend) or "cuda" (the ILGPU kernels on GPU 0; each run ends with a
    /// synchronisation, so the time is the kernels', not their enqueueing).</param>
    public static int Run(string? filter, int minRuns, double targetSeconds, string device = "cpu")
    {
        var pattern = filter == null ? null : GlobToRegex(filter);
        MaskBit.Kernels.Ilgpu.IlgpuBackend? gpu;
        try { gpu = device == "cuda" ? MaskBit.Kernels.Ilgpu.IlgpuBackend.CreateCuda() : null; }
        catch (InvalidOperationException e) { Console.Error.WriteLine($"--device cuda: {e.Message}"); return 1; }
        using var owned = gpu;
        var backend = gpu ?? Workload.Backend;
        foreach (var w in Workload.All)
        {
            if (pattern != null && !pattern.IsMatch(w.Name) && !pattern.IsMatch($"{w.Group}.{w.Name}")) continue;
            var row = Measure(w, backend, minRuns, targetSeconds);
            row["device"] = backend.Name;
            Console.WriteLine(JsonSerializer.Serialize(row, Options));
        }
        return 0;
    }

    private static Dictionary<string, object?> Measure(Workload w, MaskBit.Kernels.IBackend backend, int minRuns, double targetSeconds)
    {
        var row = new Dictionary<string, object?> { ["name"] = w.Name, ["group"] = w.Group, ["shape"] = w.Shape, ["peer"] = w.Peer };
        bool onCpu = ReferenceEquals(backend, Workload.Backend);
        try
        {
            using var prepared = w.Prepare(backend);
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < 2 || sw.Elapsed.TotalSeconds < Math.Min(0.5, targetSeconds / 4); i++) { prepared.Run(); backend.Synchronize(); }
            var times = new List<double>();
            sw.Restart();
            while (times.Count < minRuns || (sw.Elapsed.TotalSeconds < targetSeconds && times.Count < 10000))
            {
                long t0 = Stopwatch.GetTimestamp();
                prepared.Run();
                backend.Synchronize();
                times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
            times.Sort();
            double median = times[times.Count / 2];
            row["median_ms"] = Math.Round(median, 4);
            row["min_ms"] = Math.Round(times[0], 4);
            row["runs"] = times.Count;
            if (w.Flops > 0)
            {
                double gflops = w.Flops / (median * 1e6);
                row["gflops"] = Math.Round(gflops, 2);
                if (onCpu) row["pct_peak"] = Math.Round(100 * gflops / Workload.PeakGflops, 1);
            }
            if (w.Bytes > 0) row["gbytes_s"] = Math.Round(w.Bytes / (median * 1e6), 2);
        }
        catch (NotImplementedException) { row["error"] = "not implemented"; }
        catch (Exception e) { row["error"] = $"{e.GetType().Name}: {e.Message}"; }
        return row;
    }

    /// <summary>BenchmarkDotNet-style glob (* and ?) as a case-insensitive whole-name regex.</summary>
    private static Regex GlobToRegex(string glob) =>
        new("^" + Regex.Escape(glob).Replace(@"\*", ".*").Replace(@"\?", ".") + "$", RegexOptions.IgnoreCase);
}
