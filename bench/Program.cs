using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using MaskBit.Kernels.Cpu;
using MaskBit.Models.Benchmarks;

namespace MaskBit.Bench;

/// <summary>
/// dotnet run -c Release --project bench -- [--quick] [--filter *Gemm*] [other BenchmarkDotNet arguments]
///   --quick             a short in-process job (few iterations): the whole suite in a couple of minutes
/// dotnet run -c Release --project bench -- --json [--filter *gemm*] [--runs N] [--seconds S] [--warmup N]
///   one JSON line per workload with the median of Stopwatch-timed runs (what peer.sh reads)
///   --device cuda       time the ILGPU kernels on the first CUDA GPU instead of the CPU backend (json mode);
///                       ilgpu-cpu: on ILGPU's CPU accelerator (slow: for checking that the GPU path runs)
///   --threads N         cores the CPU backend uses (default: all); works in both modes
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        try { _ = CpuIsa.Current; }
        catch (NotSupportedException e) { Console.Error.WriteLine($"error: {e.Message}"); return 2; }
        var rest = args.ToList();
        if (TakeValue(rest, "--threads") is string threads) CpuParallel.Workers = int.Parse(threads);
        if (Take(rest, "--json"))
        {
            string? filter = TakeValue(rest, "--filter");
            int runs = int.Parse(TakeValue(rest, "--runs") ?? "10");
            double seconds = double.Parse(TakeValue(rest, "--seconds") ?? "2", System.Globalization.CultureInfo.InvariantCulture);
            int warmup = int.Parse(TakeValue(rest, "--warmup") ?? "2");
            string device = TakeValue(rest, "--device") ?? "cpu";
            if (rest.Count > 0) { Console.Error.WriteLine($"--json: unknown arguments {string.Join(' ', rest)}"); return 2; }
            if (device is not ("cpu" or "cuda" or "ilgpu-cpu")) { Console.Error.WriteLine($"--device '{device}': expected cpu, cuda or ilgpu-cpu"); return 2; }
            MaskBit.Kernels.Ilgpu.IlgpuBackend? gpu;
            try
            {
                gpu = device switch
                {
                    "cuda" => MaskBit.Kernels.Ilgpu.IlgpuBackend.CreateCuda(),
                    "ilgpu-cpu" => MaskBit.Kernels.Ilgpu.IlgpuBackend.CreateCpu(),
                    _ => null,
                };
            }
            catch (InvalidOperationException e) { Console.Error.WriteLine($"--device {device}: {e.Message}"); return 1; }
            using (gpu)
                WorkloadRunner.Run(WorkloadRunner.Select(filter), new BenchmarkOptions(runs, seconds, warmup), row => Console.WriteLine(WorkloadRunner.ToJson(row)), gpu);
            return 0;
        }

        var config = DefaultConfig.Instance.AddColumn(ThroughputColumn.All)
            .WithSummaryStyle(SummaryStyle.Default.WithMaxParameterColumnWidth(40));
        if (Take(rest, "--quick"))
            config = config.AddJob(Job.ShortRun.WithWarmupCount(2).WithIterationCount(5).WithLaunchCount(1)
                .WithToolchain(InProcessEmitToolchain.Instance).AsDefault());
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(rest.ToArray(), config);
        return 0;
    }

    private static bool Take(List<string> args, string flag) => args.Remove(flag);

    private static string? TakeValue(List<string> args, string flag)
    {
        int i = args.IndexOf(flag);
        if (i < 0 || i + 1 >= args.Count) return null;
        string value = args[i + 1];
        args.RemoveRange(i, 2);
        return value;
    }
}
