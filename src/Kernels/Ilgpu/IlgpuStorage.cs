using System.Collections.Concurrent;
using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

/// <summary>Device memory of an <see cref="IlgpuBackend"/>: a pooled <c>MemoryBuffer1D</c> of floats, ints, or the raw
/// ushort bits of bfloat16/float16.
/// Disposing (or finalising) hands the buffer back to the backend's pool, like <c>CpuStorage</c>.</summary>
public sealed class IlgpuStorage : Storage
{
    private readonly IlgpuBackend _backend;
    private MemoryBuffer1D<float, Stride1D.Dense>? _f;
    private MemoryBuffer1D<int, Stride1D.Dense>? _i;
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _h;
    private readonly long _length;
    private readonly DType _dtype;

    internal IlgpuStorage(IlgpuBackend backend, long length, DType dtype, bool zero)
    {
        _backend = backend;
        _length = length;
        _dtype = dtype;
        long capacity = Math.Max(length, 1);   // ILGPU gives no usable view of an empty buffer
        if (dtype == DType.Float32) { _f = backend.FloatPool.Rent(capacity); if (zero) _f.View.MemSetToZero(backend.Stream); }
        else if (dtype.Is16Bit()) { _h = backend.HalfPool.Rent(capacity); if (zero) _h.View.MemSetToZero(backend.Stream); }
        else { _i = backend.IntPool.Rent(capacity); if (zero) _i.View.MemSetToZero(backend.Stream); }
    }

    public override IBackend Backend => _backend;
    public override DType DType => _dtype;
    public override long Length => _length;

    /// <summary>The float elements [offset, offset + length) as a kernel argument.</summary>
    internal ArrayView<float> Floats(long offset, long length) =>
        (_f ?? throw Missing(DType.Float32)).View.SubView(offset, length);

    internal ArrayView<int> Ints(long offset, long length) =>
        (_i ?? throw Missing(DType.Int32)).View.SubView(offset, length);

    internal ArrayView<ushort> Halves(long offset, long length) =>
        (_h ?? throw Missing(_dtype.Is16Bit() ? _dtype : DType.BFloat16)).View.SubView(offset, length);

    private InvalidOperationException Missing(DType wanted) =>
        new(_f == null && _i == null && _h == null ? "storage was disposed" : $"storage holds {_dtype}, not {wanted}");

    public override void Dispose() { Release(); GC.SuppressFinalize(this); }
    ~IlgpuStorage() => Release();

    private void Release()
    {
        var f = Interlocked.Exchange(ref _f, null);
        if (f != null) _backend.FloatPool.Return(f);
        var i = Interlocked.Exchange(ref _i, null);
        if (i != null) _backend.IntPool.Return(i);
        var h = Interlocked.Exchange(ref _h, null);
        if (h != null) _backend.HalfPool.Return(h);
    }
}

/// <summary>Exact-length pool of device buffers (training repeats the same shapes every step, and device
/// allocations are slow and synchronising). <see cref="Return"/> may run on the finaliser thread, so it only
/// files the buffer; disposing surplus buffers happens in <see cref="Rent"/>, on the thread that uses the
/// accelerator. Every buffer stays referenced from <c>_owned</c> so that it is never finalised before the
/// storage that returns it.</summary>
internal sealed class DeviceBufferPool<T>(Accelerator accelerator, long budgetBytes, TrafficCounters traffic) : IDisposable where T : unmanaged
{
    private readonly ConcurrentDictionary<long, ConcurrentBag<MemoryBuffer1D<T, Stride1D.Dense>>> _free = new();
    private readonly ConcurrentDictionary<MemoryBuffer1D<T, Stride1D.Dense>, byte> _owned = new();
    private static readonly int ElementSize = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
    private long _pooledBytes;
    private volatile bool _disposed;

    /// <summary>Bytes of the cached (free) buffers.</summary>
    public long PooledBytes => Interlocked.Read(ref _pooledBytes);
    /// <summary>Device buffers allocated and not yet freed, in use or cached.</summary>
    public int BufferCount => _owned.Count;

    public MemoryBuffer1D<T, Stride1D.Dense> Rent(long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_free.TryGetValue(length, out var bag) && bag.TryTake(out var buffer))
        {
            Interlocked.Add(ref _pooledBytes, -length * ElementSize);
            return buffer;
        }
        if (PooledBytes > budgetBytes) Trim(budgetBytes / 2);
        try { buffer = accelerator.Allocate1D<T>(length); }
        catch (Exception e) when (e is OutOfMemoryException or AcceleratorException)
        {
            // Cached buffers of other sizes may be what is missing: drop them all and try once more.
            Trim(0);
            buffer = accelerator.Allocate1D<T>(length);
        }
        _owned[buffer] = 0;
        traffic.Allocation();
        return buffer;
    }

    public void Return(MemoryBuffer1D<T, Stride1D.Dense> buffer)
    {
        if (_disposed) return;   // the accelerator has freed it already
        Interlocked.Add(ref _pooledBytes, buffer.Length * ElementSize);
        _free.GetOrAdd(buffer.Length, _ => new()).Add(buffer);
    }

    /// <summary>Frees cached buffers until at most <paramref name="keepBytes"/> remain cached.</summary>
    public void Trim(long keepBytes)
    {
        accelerator.Synchronize();   // queued kernels may still use a returned buffer
        traffic.Synchronization();
        foreach (var bag in _free.Values)
            while (PooledBytes > keepBytes && bag.TryTake(out var buffer))
            {
                Interlocked.Add(ref _pooledBytes, -buffer.Length * ElementSize);
                _owned.TryRemove(buffer, out _);
                buffer.Dispose();
            }
    }

    public void Dispose()
    {
        _disposed = true;
        foreach (var buffer in _owned.Keys) buffer.Dispose();
        _owned.Clear();
        _free.Clear();
    }
}
