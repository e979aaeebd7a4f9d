namespace MaskBit.Kernels;

/// <summary>Element type of a storage. Float32 is the compute type; Int32 carries indices and labels.
/// Room is left for Float16/BFloat16 storage (converted at the kernel boundary) later.</summary>
public enum DType { Float32, Int32 }

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
