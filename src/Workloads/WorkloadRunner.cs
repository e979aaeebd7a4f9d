using System.Diagnostics;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Models.Benchmarks;

/// <summary>How long to time each workload: warm-up calls, then at least <see cref="MinRuns"/> runs and
/// <see cref="TargetSeconds"/> of timing.</summary>
public sealed record BenchmarkOptions(int MinRuns = 10, double TargetSeconds = 2, int WarmupRuns = 2)
{
    /// <summary>A short pass: one warm-up, three runs, a quarter second per workload.</summary>
    public static readonly BenchmarkOptions Quick = new(MinRuns: 3, TargetSeconds: 0.25, WarmupRuns: 1);
}

/// <summary>Median wall time of each selected workload, as JSON rows (bench --json, read by bench/peer.sh) and
/// as a table (maskbit bench). Workloads whose op is not implemented yet give a row with an error instead.</summary>
public static class WorkloadRunner
{
    private static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static IEnumerable<Workload> Select(string? filter)
    {
        var pattern = filter == null ? null : GlobToRegex(filter);
        return Workload.All.Where(w => pattern == null || pattern.IsMatch(w.Name) || pattern.IsMatch($"{w.Group}.{w.Name}"));
    }

    /// <summary>Times each workload and hands its row to <paramref name="onRow"/> as soon as it is done.</summary>
    /// <param name="backend">The device to time (default: the CPU backend). Each run ends with a synchronisation,
    /// so a GPU's time is its kernels', not their enqueueing.</param>
    public static List<Dictionary<string, object?>> Run(IEnumerable<Workload> workloads, BenchmarkOptions options,
        Action<Dictionary<string, object?>>? onRow = null, MaskBit.Kernels.IBackend? backend = null)
    {
        var rows = new List<Dictionary<string, object?>>();
        foreach (var w in workloads)
        {
            var row = Measure(w, options, backend ?? Workload.Backend);
            // Model workloads leave whole models behind: their memory goes back to the OS before the next row, so
            // each row's peak is its own; rss_after_mb shows that it did.
            BufferPool.Trim();
            row["rss_after_mb"] = Math.Round(ProcessMemory.ResidentMb(), 1);
            rows.Add(row);
            onRow?.Invoke(row);
        }
        return rows;
    }

    public static string ToJson(Dictionary<string, object?> row) => JsonSerializer.Serialize(row, Options);

    public static Dictionary<string, object?> Measure(Workload w, BenchmarkOptions options, MaskBit.Kernels.IBackend backend)
    {
        var row = new Dictionary<string, object?> { ["name"] = w.Name, ["group"] = w.Group, ["shape"] = w.Shape, ["peer"] = w.Peer, ["device"] = backend.Name };
        bool onCpu = ReferenceEquals(backend, Workload.Backend);
        try
        {
            // Memory as the PyTorch peer reports it: resident set before the workload, and its peak from there
            // (preparation included), plus the managed bytes each timed run allocates.
            bool ownPeak = ProcessMemory.TryResetPeak();
            row["rss_before_mb"] = Math.Round(ProcessMemory.ResidentMb(), 1);
            using var prepared = w.Prepare(backend);
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < options.WarmupRuns || sw.Elapsed.TotalSeconds < Math.Min(0.5, options.TargetSeconds / 4); i++) { prepared.Run(); backend.Synchronize(); }
            var times = new List<double>();
            long allocatedBefore = GC.GetTotalAllocatedBytes();
            sw.Restart();
            while (times.Count < options.MinRuns || (sw.Elapsed.TotalSeconds < options.TargetSeconds && times.Count < 10000))
            {
                long t0 = Stopwatch.GetTimestamp();
                prepared.Run();
                backend.Synchronize();
                times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
            row["alloc_mb_per_run"] = Math.Round((GC.GetTotalAllocatedBytes() - allocatedBefore) / 1e6 / times.Count, 3);
            row["peak_rss_mb"] = Math.Round(ProcessMemory.PeakResidentMb(), 1);
            if (!ownPeak) row["peak_rss_scope"] = "process";
            times.Sort();
            double median = times[times.Count / 2];
            row["median_ms"] = Math.Round(median, 4);
            row["min_ms"] = Math.Round(times[0], 4);
            row["runs"] = times.Count;
            if (w.Flops > 0)
            {
                double gflops = w.Flops / (median * 1e6);
                row["gflops"] = Math.Round(gflops, 2);
                if (onCpu)
                {
                    var (percent, underMeasured) = FmaPeak.Share(gflops);
                    row["pct_peak"] = Math.Round(percent, 1);
                    row["peak_gflops"] = Math.Round(FmaPeak.Gflops, 1);
                    row["isa"] = CpuIsa.Name(CpuIsa.Current);
                    if (underMeasured) row["peak_note"] = FmaPeak.UnderMeasuredNote;
                }
                else if (backend is MaskBit.Kernels.Ilgpu.IlgpuBackend gpu && MaskBit.Kernels.Lab.GpuPeak.Of(gpu) is { } peak)
                {
                    // A CUDA device: the share of its FP32 peak (and, for comparison with tensor-core libraries, of bf16).
                    row["pct_peak"] = Math.Round(100 * gflops / peak.Fp32Gflops, 1);
                    row["peak_gflops"] = Math.Round(peak.Fp32Gflops, 1);
                    if (peak.Bf16Gflops is double bf16) row["pct_bf16_peak"] = Math.Round(100 * gflops / bf16, 2);
                }
            }
            if (w.Bytes > 0) row["gbytes_s"] = Math.Round(w.Bytes / (median * 1e6), 2);
            if (w.Images > 0) row["images_s"] = Math.Round(w.Images / (median / 1e3), 2);
        }
        catch (NotImplementedException) { row["error"] = "not implemented"; }
        catch (Exception e) { row["error"] = $"{e.GetType().Name}: {e.Message}"; }
        return row;
    }

    /// <summary>The rows as an aligned text table: workload, shape, median ms, GFLOP/s, % of the FMA peak (marked
    /// ! above 100%), GB/s, images/s, peak resident memory.</summary>
    public static void WriteTable(IReadOnlyList<Dictionary<string, object?>> rows, TextWriter o)
    {
        string Cell(Dictionary<string, object?> r, string key, string format) =>
            r.TryGetValue(key, out var v) && v is double d ? d.ToString(format, CultureInfo.InvariantCulture) : "";
        var lines = rows.Select(r => new[]
        {
            (string)r["name"]!, (string)r["shape"]!,
            r.TryGetValue("error", out var e) ? $"error: {e}" : Cell(r, "median_ms", "F3"),
            Cell(r, "gflops", "F1"), Cell(r, "pct_peak", "F1") + (r.ContainsKey("peak_note") ? "!" : ""), Cell(r, "gbytes_s", "F2"), Cell(r, "images_s", "F1"), Cell(r, "peak_rss_mb", "F0"),
        }).ToList();
        string[] header = ["workload", "shape", "median ms", "GFLOP/s", "% peak", "GB/s", "images/s", "peak RSS MB"];
        var widths = header.Select((h, i) => lines.Select(l => l[i].Length).Append(h.Length).Max()).ToArray();
        string Format(string[] cells) => string.Join("  ", cells.Select((c, i) => i < 2 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd();
        o.WriteLine(Format(header));
        foreach (var l in lines) o.WriteLine(Format(l));
        if (rows.Any(r => r.ContainsKey("peak_note")))
            o.WriteLine($"! above 100% of the measured FMA peak: {FmaPeak.UnderMeasuredNote} (a busy machine or unpinned threads), not a kernel beyond the hardware");
    }

    /// <summary>BenchmarkDotNet-style glob (* and ?) as a case-insensitive whole-name regex.</summary>
    /// <summary>A glob (`*`, `?`) or a comma-separated list of globs, any of which may match.</summary>
    public static Regex GlobToRegex(string glob) =>
        new("^(" + string.Join("|", glob.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(g => Regex.Escape(g).Replace(@"\*", ".*").Replace(@"\?", "."))) + ")$", RegexOptions.IgnoreCase);
}
