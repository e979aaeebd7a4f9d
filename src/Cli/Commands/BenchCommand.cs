using System.CommandLine;
using System.Globalization;
using MaskBit.Autograd;
using MaskBit.Kernels.Cpu;
using MaskBit.Models.Benchmarks;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit bench`: the kernel and model workloads of bench/ (see bench/README.md), timed with medians, as a
/// table with GFLOP/s and the share of this machine's FMA peak (measured in-process, see <see cref="FmaPeak"/>).</summary>
internal static class BenchCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var quick = new Option<bool>("--quick") { Description = "A short pass: one warm-up, 3 runs and ~0.25 s per workload." };
        var json = new Option<string?>("--json") { Description = "Also write one JSON line per workload to FILE (the format bench/peer.sh reads)." };
        var filter = new Option<string?>("--filter") { Description = "Glob over workload names (or group.name), e.g. 'gemm_*', 'model.*'." };
        var threads = new Option<int?>("--threads") { Description = "Cores the CPU backend uses (default: all)." };
        var list = new Option<bool>("--list") { Description = "List the workloads and exit." };
        var device = DeviceChoice.Option();
        var command = new Command("bench", "Benchmark the kernels and model steps on a device: median ms, GFLOP/s, % of the CPU's FMA peak, GB/s, images/s.")
            { quick, json, filter, threads, list, device };
        command.SetAction(parse => CommandSupport.Guard(stderr, () =>
        {
            var selected = WorkloadRunner.Select(parse.GetValue(filter)).ToList();
            if (selected.Count == 0)
            {
                stderr.WriteLine($"error: --filter '{parse.GetValue(filter)}' matches no workload (see --list)");
                return Program.ExitUsage;
            }
            if (parse.GetValue(list))
            {
                foreach (var w in selected) stdout.WriteLine($"{w.Group}.{w.Name}  {w.Shape}");
                return Program.ExitOk;
            }
            if (parse.GetValue(threads) is { } t) CpuParallel.Workers = t;
            var options = parse.GetValue(quick) ? BenchmarkOptions.Quick : new BenchmarkOptions();
            using var deviceScope = DeviceChoice.Use(parse.GetValue(device)!);
            using var jsonOut = parse.GetValue(json) is { } path ? new StreamWriter(path) : null;
            if (deviceScope == null) stdout.WriteLine($"machine: {FmaPeak.MachineHeader}");
            var rows = WorkloadRunner.Run(selected, options, row =>
            {
                jsonOut?.WriteLine(WorkloadRunner.ToJson(row));
                jsonOut?.Flush();
            }, Device.Default);
            WorkloadRunner.WriteTable(rows, stdout);
            var gpuPeak = Device.Default is MaskBit.Kernels.Ilgpu.IlgpuBackend gpu ? MaskBit.Kernels.Lab.GpuPeak.Of(gpu) : null;
            stdout.WriteLine(deviceScope == null ? $"% peak: of the FMA peak in the machine line above"
                : gpuPeak != null ? $"device: {gpuPeak.Describe()}; % peak is of the FP32 peak"
                : $"device: {Device.Default.Name} (no known peak for it, so % peak is left out)");
            return rows.Any(r => r.ContainsKey("error")) ? Program.ExitFailed : Program.ExitOk;
        }));
        return command;
    }
}
