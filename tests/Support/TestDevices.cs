using System.Diagnostics;
using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Tests.Support;

/// <summary>
/// The devices that device-parameterized tests run on (<c>[TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]</c>):
/// "cpu" (the SIMD backend, the reference), "ilgpu-cpu" (ILGPU kernels on the CPU accelerator, one backend shared
/// by the whole test run: creating accelerators and compiling kernels is the expensive part) and "cuda" when
/// MASKBIT_TEST_CUDA=1. MASKBIT_TEST_DEVICES (a comma-separated list, e.g. "cpu,cuda") picks the devices
/// instead. A "cuda" case is ignored (skipped) when the machine has no usable CUDA device. Tests on ILGPU
/// devices must be [NonParallelizable]: the CPU accelerator runs one OS thread per GPU thread, and concurrent
/// launches only slow each other down.
/// </summary>
public static class TestDevices
{
    public const string Cpu = "cpu";
    public const string IlgpuCpu = "ilgpu-cpu";
    public const string Cuda = "cuda";

    public static bool CudaRequested => Environment.GetEnvironmentVariable("MASKBIT_TEST_CUDA") == "1";

    public static IEnumerable<string> Names =>
        Environment.GetEnvironmentVariable("MASKBIT_TEST_DEVICES") is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : CudaRequested ? [Cpu, IlgpuCpu, Cuda] : [Cpu, IlgpuCpu];

    /// <summary>The ILGPU devices only (for tests that make no sense on the reference itself).</summary>
    public static IEnumerable<string> IlgpuNames => Names.Where(n => n != Cpu);

    private static readonly Lazy<IlgpuBackend> IlgpuCpuBackend = new(() =>
    {
        DeviceAssertions.Install();
        return IlgpuBackend.CreateCpu();
    });

    /// <summary>The CPU accelerator for model-level runs (the golden cases): 4-lane warps, because the emulator
    /// pays for every shuffle and barrier in each thread of the warp or group (the tokenizer case takes minutes
    /// with 32-lane warps). The kernel tests cover 32-lane warps op by op on the shared backend.</summary>
    private static readonly Lazy<IlgpuBackend> NarrowWarpIlgpuCpuBackend = new(() =>
    {
        DeviceAssertions.Install();
        return IlgpuBackend.CreateCpu(threadsPerWarp: 4);
    });

    private static readonly Lazy<IlgpuBackend> CudaBackend = new(() => IlgpuBackend.CreateCuda());

    public static IBackend Get(string name) => name switch
    {
        Cpu => CpuBackend.Instance,
        IlgpuCpu => IlgpuCpuBackend.Value,
        Cuda => CudaOrIgnore(),
        _ => throw new ArgumentException($"unknown test device '{name}'"),
    };

    /// <summary>The backend for whole-model tests on device <paramref name="name"/>: as <see cref="Get"/>, except
    /// that "ilgpu-cpu" is a CPU accelerator with narrow warps (a model-sized run costs seconds, not minutes).</summary>
    public static IBackend GetForModels(string name) => name == IlgpuCpu ? NarrowWarpIlgpuCpuBackend.Value : Get(name);

    private static IlgpuBackend CudaOrIgnore()
    {
        try { return CudaBackend.Value; }
        catch (InvalidOperationException e) { Assert.Ignore($"no CUDA device: {e.Message}"); throw; }
    }

    /// <summary>The shared CPU-accelerator backend.</summary>
    public static IlgpuBackend SharedIlgpuCpu => IlgpuCpuBackend.Value;
}

/// <summary>
/// An out-of-bounds ArrayView access on ILGPU's CPU accelerator fails a <c>Trace.Assert</c>, whose default
/// listener calls Environment.FailFast: the test host dies and the whole run is lost. This listener counts such
/// failures instead, so a test can check <see cref="Failures"/> and fail on its own (test buffers keep spare room
/// around the data so the stray access stays inside allocated memory).
/// </summary>
public sealed class DeviceAssertions : TraceListener
{
    private static readonly DeviceAssertions Instance = new();
    private static int _failures;
    private static string? _lastMessage;

    public static int Failures => Volatile.Read(ref _failures);
    public static string? LastMessage => Volatile.Read(ref _lastMessage);

    /// <summary>Replaces the default (fail-fast) trace listeners with the counter; idempotent.</summary>
    public static void Install()
    {
        lock (Trace.Listeners)
        {
            if (Trace.Listeners.Contains(Instance)) return;
            Trace.Listeners.Clear();
            Trace.Listeners.Add(Instance);
        }
    }

    public override void Fail(string? message, string? detailMessage)
    {
        Volatile.Write(ref _lastMessage, $"{message} {detailMessage}".Trim());
        Interlocked.Increment(ref _failures);
    }

    public override void Write(string? message) { }
    public override void WriteLine(string? message) { }
}
