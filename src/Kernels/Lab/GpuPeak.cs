using System.Globalization;
using ILGPU.Runtime.Cuda;
using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Kernels.Lab;

/// <summary>A CUDA GPU's arithmetic peaks at the clock the driver reports (the boost clock): FP32 FMA lanes and
/// dense bf16 tensor-core FLOPs (float32 accumulation) per multiprocessor and clock, by architecture, from NVIDIA's
/// architecture whitepapers. Sustained clocks under load are lower, so a kernel reads a little under its share.</summary>
public sealed record GpuPeak(string Device, int Sm, double Fp32Gflops, double? Bf16Gflops)
{
    /// <summary>The peaks of <paramref name="device"/>, or null where it is not a CUDA GPU (the CPU accelerator).</summary>
    public static GpuPeak? Of(IlgpuBackend device)
    {
        if (device.Accelerator is not CudaAccelerator cuda) return null;
        var arch = cuda.Architecture;
        int sm = arch.Major * 10 + arch.Minor;
        double clockGhz = cuda.ClockRate / 1e6;   // kHz
        double perSmClock = 2.0 * Fp32LanesPerSm(sm);
        double? bf16 = Bf16FlopsPerSmClock(sm) is int f ? f * cuda.NumMultiprocessors * clockGhz : null;
        return new GpuPeak(cuda.Name, sm, perSmClock * cuda.NumMultiprocessors * clockGhz, bf16);
    }

    /// <summary>FP32 FMA units per multiprocessor: 64 on Volta, Turing and A100; 128 on GA10x, Ada, Hopper, Blackwell.</summary>
    private static int Fp32LanesPerSm(int sm) => sm switch { < 80 => 64, 80 => 64, _ => 128 };

    /// <summary>Dense bf16 FLOPs per multiprocessor and clock with float32 accumulation (none before Ampere):
    /// A100 2048, GA10x/Ada 512 (GeForce halves float32-accumulate rate; workstation parts reach 1024), Hopper 4096.</summary>
    private static int? Bf16FlopsPerSmClock(int sm) => sm switch
    {
        < 80 => null,
        80 => 2048,
        < 90 => 512,
        < 100 => 4096,
        _ => 4096,
    };

    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Device} (sm_{Sm}): FP32 peak {Fp32Gflops:F0} GFLOP/s{(Bf16Gflops is double b ? $", bf16 tensor peak {b:F0} GFLOP/s" : "")} at the reported clock");
}
