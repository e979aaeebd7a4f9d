using BenchmarkDotNet.Attributes;
using MaskBit.Models.Benchmarks;
using W = MaskBit.Models.Benchmarks.Workload;

namespace MaskBit.Bench;

/// <summary>Shared body of the BenchmarkDotNet classes: one parameter names the workload (see
/// <see cref="W.All"/>); setup allocates and fills its buffers outside the timing.</summary>
public abstract class WorkloadBenchmark
{
    private PreparedWorkload? _prepared;

    public abstract string Workload { get; set; }

    [GlobalSetup]
    public void Setup() => _prepared = W.Get(Workload).Prepare(W.Backend);

    [GlobalCleanup]
    public void Cleanup() => _prepared?.Dispose();

    [Benchmark]
    public void Run() => _prepared!.Run();
}

public class GemmBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => W.NamesIn("gemm");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}

public class ConvBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => W.NamesIn("conv");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}

public class AttentionBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => W.NamesIn("attention");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}

public class NormBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => W.NamesIn("norm");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}

/// <summary>Model-level workloads (training steps, encode+decode, a sampling step); each run takes seconds.</summary>
public class ModelBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => W.NamesIn("model");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}
