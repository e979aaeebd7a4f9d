using System.Collections.Concurrent;

namespace MaskBit.Kernels.Cpu;

/// <summary>Host memory of the CPU backend: a pooled managed array. Disposing (or finalising) returns the
/// array to the pool, so steady-state training loops stop touching fresh pages.</summary>
public sealed class CpuStorage : Storage
{
    private readonly CpuBackend _backend;
    private float[]? _f;
    private int[]? _i;
    private readonly long _length;
    private readonly DType _dtype;

    internal CpuStorage(CpuBackend backend, long length, DType dtype, bool zero)
    {
        if (length > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(length), $"{length} elements exceed one CPU buffer");
        _backend = backend;
        _length = length;
        _dtype = dtype;
        if (dtype == DType.Float32) { _f = BufferPool<float>.Shared.Rent((int)length); if (zero) Array.Clear(_f); }
        else { _i = BufferPool<int>.Shared.Rent((int)length); if (zero) Array.Clear(_i); }
    }

    public override IBackend Backend => _backend;
    public override DType DType => _dtype;
    public override long Length => _length;

    /// <summary>The backing array (exactly <see cref="Length"/> elements). Only CPU kernels use it.</summary>
    public float[] Floats => _f ?? throw new InvalidOperationException(_i != null ? "storage holds Int32, not Float32" : "storage was disposed");
    public int[] Ints => _i ?? throw new InvalidOperationException(_f != null ? "storage holds Float32, not Int32" : "storage was disposed");

    public override void Dispose() { Release(); GC.SuppressFinalize(this); }
    ~CpuStorage() => Release();

    private void Release()
    {
        var f = Interlocked.Exchange(ref _f, null);
        if (f != null) BufferPool<float>.Shared.Return(f);
        var i = Interlocked.Exchange(ref _i, null);
        if (i != null) BufferPool<int>.Shared.Return(i);
    }
}

/// <summary>Exact-length array pool: training repeats the same shapes every step, so buffers are keyed by
/// length (no rounding waste). Bounded by a byte budget; beyond it arrays are left to the GC.</summary>
public sealed class BufferPool<T> where T : unmanaged
{
    public static readonly BufferPool<T> Shared = new(budgetBytes: 4L << 30);

    private readonly ConcurrentDictionary<int, ConcurrentBag<T[]>> _bins = new();
    private readonly long _budgetBytes;
    private long _pooledBytes;
    private static readonly int ElementSize = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();

    public BufferPool(long budgetBytes) => _budgetBytes = budgetBytes;

    public long PooledBytes => Interlocked.Read(ref _pooledBytes);

    public T[] Rent(int length)
    {
        if (length == 0) return Array.Empty<T>();
        if (_bins.TryGetValue(length, out var bag) && bag.TryTake(out var array))
        {
            Interlocked.Add(ref _pooledBytes, -(long)length * ElementSize);
            return array;
        }
        return GC.AllocateUninitializedArray<T>(length);
    }

    public void Return(T[] array)
    {
        if (array.Length == 0) return;
        long bytes = (long)array.Length * ElementSize;
        if (Interlocked.Add(ref _pooledBytes, bytes) > _budgetBytes) { Interlocked.Add(ref _pooledBytes, -bytes); return; }
        _bins.GetOrAdd(array.Length, _ => new ConcurrentBag<T[]>()).Add(array);
    }

    public void Clear() { _bins.Clear(); Interlocked.Exchange(ref _pooledBytes, 0); }
}
