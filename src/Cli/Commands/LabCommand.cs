using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Kernels.Lab;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit lab`: the kernel lab's runner (src/Kernels/Lab/README.md). Every version of every family is
/// validated against the CPU reference on the small edge-shape cases; on the benchmark cases (the model's shapes) it
/// is validated and timed: median ms, GFLOP/s and the share of the GPU's FP32 and bf16 peaks.</summary>
internal static class LabCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var device = new Option<string>("--device")
        {
            Description = "cuda (default) or ilgpu-cpu (ILGPU's CPU accelerator: validation cases only unless --cases says otherwise).",
            DefaultValueFactory = _ => DeviceChoice.Cuda,
        };
        device.AcceptOnlyFromAmong(DeviceChoice.Cuda, DeviceChoice.IlgpuCpu);
        var family = new Option<string?>("--family") { Description = $"One kernel family: {string.Join(", ", KernelLab.Families.Select(f => f.Name))}." };
        var version = new Option<int?>("--version") { Description = "One version number of each family." };
        var cases = new Option<string?>("--cases") { Description = "validation (small edge shapes), benchmark (the model's shapes, timed) or all; default all on cuda, validation on ilgpu-cpu." };
        cases.AcceptOnlyFromAmong("validation", "benchmark", "all");
        var quick = new Option<bool>("--quick") { Description = "Time each benchmark case for ~0.2 s (3 runs at least) instead of ~1 s." };
        var json = new Option<string?>("--json") { Description = "Also write one JSON line per (family, version, case) to FILE." };
        var command = new Command("lab", "Validate each kernel version against the CPU reference and time it on the model's shapes (GFLOP/s, % of the GPU's FP32 and bf16 peaks).")
            { device, family, version, cases, quick, json };
        command.SetAction(parse => CommandSupport.Guard(stderr, () =>
        {
            var families = parse.GetValue(family) is { } name ? [KernelLab.Family(name)] : KernelLab.Families;
            string deviceName = parse.GetValue(device)!;
            string which = parse.GetValue(cases) ?? (deviceName == DeviceChoice.Cuda ? "all" : "validation");
            using var scope = DeviceChoice.Use(deviceName);
            var backend = (IlgpuBackend)Device.Default;
            var peak = GpuPeak.Of(backend);
            stdout.WriteLine($"device: {backend}{(peak is null ? "" : "; " + peak.Describe())}");
            using var jsonOut = parse.GetValue(json) is { } path ? new StreamWriter(path) : null;
            var table = new List<string[]>();
            int failed = 0;
            foreach (var f in families)
            {
                var versions = parse.GetValue(version) is int v ? [f.Version(v)] : f.Versions;
                var selected = (which is "validation" or "all" ? f.ValidationCases.Select(c => (Case: c, Timed: false)) : [])
                    .Concat(which is "benchmark" or "all" ? f.BenchmarkCases.Select(c => (Case: c, Timed: true)) : []);
                foreach (var (c, timed) in selected)
                {
                    using var problem = c.Prepare(backend);
                    foreach (var lv in versions)
                    {
                        if (lv.CudaOnly && !backend.IsCuda)
                        {
                            table.Add([f.Name, $"v{lv.Number}{(lv.Number == f.UsedVersion ? "*" : "")}", c.Name, c.Shape, "", "needs CUDA", "", "", "", ""]);
                            continue;
                        }
                        LabCheck check;
                        try { check = KernelLab.Validate(c, problem, lv); }
                        catch (Exception e) when (e is not OutOfMemoryException)
                        {
                            // A version that does not compile or launch (e.g. ptxas refusing inline PTX) is a result of
                            // the lab; the other versions still run.
                            failed++;
                            stderr.WriteLine($"error: {f.Name} v{lv.Number} on {c.Name}: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
                            table.Add([f.Name, $"v{lv.Number}{(lv.Number == f.UsedVersion ? "*" : "")}", c.Name, c.Shape, "", "ERROR", "", "", "", ""]);
                            continue;
                        }
                        if (!check.Passed) failed++;
                        double? ms = timed && check.Passed
                            ? KernelLab.MedianMs(backend, problem, lv.Number, minRuns: 3, targetSeconds: parse.GetValue(quick) ? 0.2 : 1)
                            : null;
                        double? gflops = ms is double t ? c.Flops / (t * 1e6) : null;
                        var row = new Dictionary<string, object?>
                        {
                            ["family"] = f.Name, ["version"] = lv.Number, ["used"] = lv.Number == f.UsedVersion, ["case"] = c.Name, ["shape"] = c.Shape,
                            ["device"] = backend.Name, ["rel_error"] = check.RelativeError, ["tolerance"] = check.Tolerance, ["valid"] = check.Passed,
                            ["median_ms"] = ms, ["gflops"] = gflops,
                            ["pct_fp32_peak"] = gflops is double g && peak is not null ? 100 * g / peak.Fp32Gflops : null,
                            ["pct_bf16_peak"] = gflops is double g2 && peak?.Bf16Gflops is double b ? 100 * g2 / b : null,
                            ["flops_per_shared_load"] = lv.FlopsPerSharedLoad, ["flops_per_global_byte"] = lv.FlopsPerGlobalByte,
                        };
                        jsonOut?.WriteLine(JsonSerializer.Serialize(row));
                        table.Add([f.Name, $"v{lv.Number}{(lv.Number == f.UsedVersion ? "*" : "")}", c.Name, c.Shape,
                            F(check.RelativeError, "E1"), check.Passed ? "ok" : "FAIL", F(ms, "F3"), F(gflops, "F0"),
                            F(row["pct_fp32_peak"] as double?, "F1"), F(row["pct_bf16_peak"] as double?, "F1")]);
                    }
                }
            }
            WriteTable(stdout, ["family", "version", "case", "shape", "rel error", "valid", "median ms", "GFLOP/s", "% FP32 peak", "% bf16 peak"], table);
            stdout.WriteLine("* the version the backend uses; FLOPs per shared load and per global byte of each version: src/Kernels/Lab/README.md");
            if (failed > 0) stderr.WriteLine($"error: {failed} version(s) did not match the CPU reference within tolerance");
            return failed > 0 ? Program.ExitFailed : Program.ExitOk;
        }));
        return command;
    }

    private static string F(double? value, string format) => value is double d ? d.ToString(format, CultureInfo.InvariantCulture) : "";

    private static void WriteTable(TextWriter o, string[] header, List<string[]> rows)
    {
        var widths = header.Select((h, i) => rows.Select(r => r[i].Length).Append(h.Length).Max()).ToArray();
        string Format(string[] cells) => string.Join("  ", cells.Select((c, i) => i < 4 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd();
        o.WriteLine(Format(header));
        foreach (var r in rows) o.WriteLine(Format(r));
    }
}
