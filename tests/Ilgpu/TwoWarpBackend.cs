using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>A CPU-accelerator backend whose row kernels (norms, softmax, attention) run groups of two warps, as
/// CUDA runs several: it exercises the cross-warp combining and per-warp shared memory that the shared test
/// backend (one-warp groups, the cheapest on the emulator) never reaches. One for the test run, like the shared one.</summary>
internal static class TwoWarpBackend
{
    private static readonly Lazy<IlgpuBackend> Backend = new(() =>
    {
        var shared = TestDevices.SharedIlgpuCpu;
        return IlgpuBackend.CreateCpu(shared.Sizes with { ReduceGroup = 2 * shared.Accelerator.WarpSize });
    });

    public static IlgpuBackend Instance => Backend.Value;
}
