using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Autograd;

/// <summary>Where new tensors live unless a device is given. The CPU backend is the default.</summary>
public static class Device
{
    public static IBackend Cpu => CpuBackend.Instance;

    [ThreadStatic] private static IBackend? _default;

    /// <summary>The device new tensors are created on (per thread; CPU unless changed).</summary>
    public static IBackend Default
    {
        get => _default ?? CpuBackend.Instance;
        set => _default = value;
    }
}
