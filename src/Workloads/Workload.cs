using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Models.Benchmarks;

/// <summary>One timed call of a workload with its buffers or models already built; disposing frees them.</summary>
public sealed class PreparedWorkload(Action run, IReadOnlyList<IDisposable> owned) : IDisposable
{
    public void Run() => run();
    public void Dispose() { foreach (var d in owned) d.Dispose(); }
}

/// <summary>A benchmark workload: what it computes, how much arithmetic or memory traffic one call costs (for
/// GFLOP/s and GB/s; 0 when not counted), and which PyTorch peer rows measure the same thing. Shared by the
/// BenchmarkDotNet project (bench/), its <c>--json</c> mode (bench/peer.sh) and <c>maskbit bench</c>.</summary>
/// <param name="Peer">Alternatives for the PyTorch peer: each alternative is a list of peer workload names whose
/// medians add up to this workload; the fastest alternative is the bar. Kernel rows name rows of
/// the shared folder's peer/peer_pytorch.py (bench/peer.sh), model rows name rows of bench/peer/peer_models.py.</param>
/// <param name="Images">Images one call processes (for images/s; 0 when not counted).</param>
public sealed record Workload(string Name, string Group, string Shape, double Flops, double Bytes,
    string[][] Peer, Func<IBackend, PreparedWorkload> Prepare, int Images = 0)
{
    public static IBackend Backend => CpuBackend.Instance;

    /// <summary>Kernel workloads first, then the model-level ones (group "model").</summary>
    public static readonly IReadOnlyList<Workload> All = KernelWorkloads.Build().Concat(ModelWorkloads.Build()).ToList();

    public static Workload Get(string name) => All.FirstOrDefault(w => w.Name == name)
        ?? throw new ArgumentException($"no benchmark workload '{name}' (see Workload.All)");

    public static IEnumerable<string> NamesIn(string group) => All.Where(w => w.Group == group).Select(w => w.Name);
}
