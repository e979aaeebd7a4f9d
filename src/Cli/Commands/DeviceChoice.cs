using System.CommandLine;
using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Cli.Commands;

/// <summary>The chosen device cannot be opened (no CUDA driver, no GPU): exit code 1 with what is missing.</summary>
internal sealed class DeviceUnavailableException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// The <c>--device</c> flag of the model commands: <c>cpu</c> (the default: SIMD kernels on the host),
/// <c>cuda</c> (the first NVIDIA GPU through ILGPU) or <c>ilgpu-cpu</c> (ILGPU's CPU accelerator, which runs
/// the GPU kernels on the host — slow, for checking them). Ops that have no ILGPU kernel yet fail with
/// <see cref="NotSupportedException"/>, which the command guard reports in one line.
/// </summary>
internal static class DeviceChoice
{
    public const string Cpu = "cpu", Cuda = "cuda", IlgpuCpu = "ilgpu-cpu";

    public static Option<string> Option()
    {
        var option = new Option<string>("--device")
        {
            Description = "Compute device: cpu (default), cuda (first NVIDIA GPU via ILGPU; under mpirun the local rank's GPU) or ilgpu-cpu (ILGPU's CPU accelerator, for checking GPU kernels).",
            DefaultValueFactory = _ => Cpu,
        };
        option.AcceptOnlyFromAmong(Cpu, Cuda, IlgpuCpu);
        return option;
    }

    /// <summary>Makes <paramref name="name"/> the default device of this thread until disposed (a GPU backend
    /// is closed then).</summary>
    public static IDisposable? Use(string name)
    {
        if (name == Cpu) return null;
        IBackend backend;
        // Under mpirun each rank of a machine takes its own GPU: the local rank's.
        try { backend = name == Cuda ? IlgpuBackend.CreateCuda(LaunchInfo.FromEnvironment()?.LocalRank ?? 0) : IlgpuBackend.CreateCpu(); }
        catch (Exception e) when (e is InvalidOperationException or DllNotFoundException or TypeInitializationException)
        {
            // CreateCuda's messages name the device, the driver version and what to try.
            throw new DeviceUnavailableException($"--device {name}: {e.Message}{(name == Cuda ? "; use --device cpu to run without a GPU" : "")}", e);
        }
        return new Scope(backend);
    }

    private sealed class Scope : IDisposable
    {
        private readonly IBackend _previous = Device.Default;
        private readonly IBackend _backend;

        public Scope(IBackend backend)
        {
            _backend = backend;
            Device.Default = backend;
        }

        public void Dispose()
        {
            Device.Default = _previous;
            _backend.Dispose();
        }
    }
}
