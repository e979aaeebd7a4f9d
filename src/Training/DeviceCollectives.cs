using MaskBit.Distributed;
using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Models.Config;

namespace MaskBit.Models.Training;

/// <summary>The ways a device's gradients and weights travel between ranks.</summary>
public enum DevicePath
{
    /// <summary>Downloaded to host memory, summed by MPI (<see cref="ICollectives"/>), uploaded again: every device.</summary>
    HostStaged,
    /// <summary>Summed by NCCL straight from CUDA device buffers, on the device's stream.</summary>
    Nccl,
}

/// <summary>
/// Picks, once per device, how data-parallel training moves that device's buffers between ranks: NCCL when the
/// device is CUDA and <c>libnccl.so.2</c> loads on every rank (<see cref="NcclOnDevice"/>), else the host-staged MPI
/// path (the CPU backend, ILGPU's CPU accelerator, a CUDA machine without NCCL). <see cref="Variable"/> overrides:
/// auto (the default), nccl (an error naming what is missing when NCCL cannot be used), host.
/// </summary>
public static class DeviceCollectives
{
    public const string Variable = "MASKBIT_DEVICE_COLLECTIVES";

    private static readonly Lock Gate = new();
    private static readonly Dictionary<IBackend, NcclOnDevice?> Chosen = new(ReferenceEqualityComparer.Instance);

    /// <summary>The path for <paramref name="setting"/> (the variable's value, null when unset) on a device that is
    /// CUDA or not. <paramref name="ncclProblem"/> loads NCCL and says in one line why it cannot be used (null: it
    /// can); it is asked only when NCCL is a candidate.</summary>
    /// <exception cref="ConfigException">nccl asked for where it cannot run, or an unknown setting.</exception>
    public static DevicePath Choose(string? setting, IBackend device, bool isCuda, Func<string?> ncclProblem)
    {
        switch (setting is null or "" ? "auto" : setting)
        {
            case "host": return DevicePath.HostStaged;
            case "auto": return isCuda && ncclProblem() == null ? DevicePath.Nccl : DevicePath.HostStaged;
            case "nccl":
                if (!isCuda)
                    throw new ConfigException($"{Variable}=nccl: NCCL moves CUDA device buffers, this run's device is {device.Name} (use --device cuda, or {Variable}=host)");
                return ncclProblem() is { } problem ? throw new ConfigException($"{Variable}=nccl: {problem}") : DevicePath.Nccl;
            default: throw new ConfigException($"{Variable}={setting}: expected auto, nccl or host");
        }
    }

    /// <summary>NCCL for <paramref name="device"/>'s buffers in <paramref name="group"/>, or null for the host-staged
    /// path (always in one process). Chosen and set up on first use per device; every rank must make that first call
    /// at the same point (it is collective: the ranks agree on the path, and NCCL's set-up broadcasts its id).</summary>
    public static NcclOnDevice? For(ICollectives group, IBackend device)
    {
        if (group.WorldSize == 1) return null;
        lock (Gate)
        {
            if (Chosen.TryGetValue(device, out var known)) return known;
            var cuda = device is IlgpuBackend { IsCuda: true } ilgpu ? ilgpu : null;
            NcclLibrary? library = null;
            var path = Choose(Environment.GetEnvironmentVariable(Variable), device, cuda != null, () =>
            {
                library = NcclLibrary.TryLoad(out var problem);
                return problem;
            });
            // NCCL only when every rank can use it (a node without NCCL would otherwise wait in another collective).
            if (group.AllGather(path == DevicePath.Nccl ? 1 : 0).Any(v => v == 0)) path = DevicePath.HostStaged;
            NcclOnDevice? nccl = null;
            if (path == DevicePath.Nccl)
            {
                cuda!.BindToThread();
                nccl = new NcclOnDevice(new NcclCommunicator(library!, group), cuda);
                if (group.IsMain()) Console.WriteLine($"gradients and weights travel between the ranks by {library}, on the GPU");
            }
            Chosen[device] = nccl;
            return nccl;
        }
    }
}

/// <summary>NCCL collectives on the float32 buffers of one CUDA backend, queued on its stream (ordered with its
/// kernels); <see cref="WaitForCompletion"/> waits for them on the host, under the collective watchdog.</summary>
public sealed class NcclOnDevice(NcclCommunicator communicator, IlgpuBackend device)
{
    public IlgpuBackend Device { get; } = device;

    /// <summary>Blocks until the device has finished everything queued so far, the NCCL collectives included; aborts the
    /// job naming this rank after the group's timeout (a peer that died leaves NCCL's kernel waiting for ever).</summary>
    public void WaitForCompletion(string what) => CollectiveWatchdog.Run(communicator.Group, what, Device.Synchronize);

    /// <summary>Element-wise sum over the ranks of the <paramref name="n"/> floats at <paramref name="buf"/>, in place.</summary>
    public void AllReduceSum(Buf buf, long n)
    {
        var (address, stream) = Device.CudaFloats(buf, n)!.Value;
        communicator.AllReduceSum(address, n, stream);
    }

    /// <summary>Rank <paramref name="root"/>'s <paramref name="n"/> floats at <paramref name="buf"/> to every rank.</summary>
    public void Broadcast(Buf buf, long n, int root = 0)
    {
        var (address, stream) = Device.CudaFloats(buf, n)!.Value;
        communicator.Broadcast(address, n, root, stream);
    }
}
