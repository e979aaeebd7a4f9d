namespace MaskBit.Kernels;

/// <summary>Element type of a storage. Float32 is the compute type; Int32 carries indices and labels. BFloat16 and
/// Float16 are storage types (mixed precision keeps 16-bit copies of operands and saved activations): kernels write
/// them through <see cref="IBackend.Convert"/> and <see cref="IBackend.Copy"/>; GEMM and convolution also read them
/// as operands; all compute in float32.</summary>
public enum DType { Float32, Int32, BFloat16, Float16 }

public static class DTypes
{
    /// <summary>Whether values of this type are 16-bit floats (stored as raw ushort bits).</summary>
    public static bool Is16Bit(this DType dtype) => dtype is DType.BFloat16 or DType.Float16;

    public static int ElementSize(this DType dtype) => dtype.Is16Bit() ? 2 : 4;

    /// <summary>The torch spelling (float32, int32, bfloat16, float16).</summary>
    public static string TorchName(this DType dtype) => dtype.ToString().ToLowerInvariant();
}

/// <summary>A flat block of device memory owned by one backend. Tensors are (storage, offset, shape) views on it.</summary>
public abstract class Storage : IDisposable
{
    public abstract IBackend Backend { get; }
    public abstract DType DType { get; }
    /// <summary>Number of elements.</summary>
    public abstract long Length { get; }
    public abstract void Dispose();
}

/// <summary>A position inside a storage: what kernels receive instead of raw arrays, so the same op signature
/// fits host memory and device memory alike.</summary>
public readonly record struct Buf(Storage Storage, long Offset)
{
    public Buf At(long delta) => new(Storage, Offset + delta);
}
