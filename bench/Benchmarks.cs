using BenchmarkDotNet.Attributes;

namespace MaskBit.Bench;

/// <summary>Shared body of the BenchmarkDotNet classes: one parameter names the workload (see
/// <see cref="Workload.All"/>); setup allocates and fills its buffers outside the timing.</summary>
public abstract class WorkloadBenchmark
{
    private PreparedWorkload? _prepared;

    public abstract string Workload { get; set; }

    [GlobalSetup]
    public void Setup() => _prepared = Bench.Workload.Get(Workload).Prepare(Bench.Workload.Backend);

    [GlobalCleanup]
    public void Cleanup() => _prepared?.Dispose();

    [Benchmark]
    public void Run() => _prepared!.Run();
}

public class GemmBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => Bench.Workload.NamesIn("gemm");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}

public class ConvBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => Bench.Workload.NamesIn("conv");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}

public class AttentionBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => Bench.Workload.NamesIn("attention");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}

public class NormBenchmarks : WorkloadBenchmark
{
    public static IEnumerable<string> Names => Bench.Workload.NamesIn("norm");
    [ParamsSource(nameof(Names))] public override string Workload { get; set; } = "";
}
