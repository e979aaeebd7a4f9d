using System.Collections.Concurrent;

namespace MaskBit.Kernels.Cpu;

/// <summary>Host memory of the CPU backend: a pooled managed array (float, int, or the raw ushort bits of bfloat16
/// and float16). Disposing (or finalising) returns the
/// array to the pool, so steady-state training loops stop touching fresh pages.</summary>
public sealed class CpuStorage : Storage
{
    private readonly CpuBackend _backend;
    private float[]? _f;
    private int[]? _i;
    private ushort[]? _h;
    private readonly long _length;
    private readonly DType _dtype;

    internal CpuStorage(CpuBackend backend, long length, DType dtype, bool zero)
    {
        if (length > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(length), $"{length} elements exceed one CPU buffer");
        _backend = backend;
        _length = length;
        _dtype = dtype;
        if (dtype == DType.Float32) { _f = BufferPool<float>.Shared.Rent((int)length); if (zero) Array.Clear(_f); }
        else if (dtype.Is16Bit()) { _h = BufferPool<ushort>.Shared.Rent((int)length); if (zero) Array.Clear(_h); }
        else { _i = BufferPool<int>.Shared.Rent((int)length); if (zero) Array.Clear(_i); }
    }

    public override IBackend Backend => _backend;
    public override DType DType => _dtype;
    public override long Length => _length;

    /// <summary>The backing array (exactly <see cref="Length"/> elements). Only CPU kernels use it.</summary>
    public float[] Floats => _f ?? throw Missing(DType.Float32);
    public int[] Ints => _i ?? throw Missing(DType.Int32);
    /// <summary>The raw bits of a bfloat16 or float16 storage.</summary>
    public ushort[] Halves => _h ?? throw Missing(_dtype.Is16Bit() ? _dtype : DType.BFloat16);

    private InvalidOperationException Missing(DType wanted) =>
        new(_f == null && _i == null && _h == null ? "storage was disposed" : $"storage holds {_dtype}, not {wanted}");

    public override void Dispose() { Release(); GC.SuppressFinalize(this); }
    ~CpuStorage() => Release();

    private void Release()
    {
        var f = Interlocked.Exchange(ref _f, null);
        if (f != null) BufferPool<float>.Shared.Return(f);
        var i = Interlocked.Exchange(ref _i, null);
        if (i != null) BufferPool<int>.Shared.Return(i);
        var h = Interlocked.Exchange(ref _h, null);
        if (h != null) BufferPool<ushort>.Shared.Return(h);
    }
}

/// <summary>Exact-length array pool: training repeats the same shapes every step, so buffers are keyed by
/// length (no rounding waste). It holds at most <see cref="HighWaterBytes"/>: a return beyond that drops the sizes
/// rented least recently (those of a model or a benchmark that is gone) until the pool is back under the mark, and
/// <see cref="Trim"/> gives memory back on demand. Dropped arrays are garbage that the GC reclaims only in a full
/// collection, which large-array allocation alone triggers late (a step of the 12-bit tokenizer under a 64 MB mark
/// grew by 1.3 GB of it): once half a mark's worth has been dropped, the next rent that must allocate runs that
/// collection first, so the new array reuses the dropped ones' memory.</summary>
public sealed class BufferPool<T> where T : unmanaged
{
    public static readonly BufferPool<T> Shared = BufferPool.Register(new BufferPool<T>(BufferPool.DefaultHighWaterBytes));

    /// <summary>The arrays of one length and the rent clock's value at their last rent (least recent go first).</summary>
    private sealed class Bin
    {
        public readonly ConcurrentBag<T[]> Arrays = new();
        public long LastRent;
    }

    private readonly ConcurrentDictionary<int, Bin> _bins = new();
    private readonly object _evicting = new();
    private long _pooledBytes, _rentClock, _droppedBytes;
    private static readonly int ElementSize = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();

    public BufferPool(long highWaterBytes) => HighWaterBytes = highWaterBytes;

    /// <summary>The most bytes the pool keeps; settable (lower it to keep a small process small, raise it when a
    /// training step's transient tensors exceed it and its steps should still find every buffer pooled). A scope of
    /// <see cref="BufferPool.LimitIdleBytes"/> lowers it while it lasts (<see cref="EffectiveHighWaterBytes"/>).</summary>
    public long HighWaterBytes { get; set; }

    /// <summary>The mark in force: <see cref="HighWaterBytes"/>, or the lowest open <see cref="BufferPool.LimitIdleBytes"/>
    /// limit when that is lower.</summary>
    public long EffectiveHighWaterBytes => Math.Min(HighWaterBytes, BufferPool.IdleLimitBytes);

    /// <summary>Bytes held by the pool (not rented out).</summary>
    public long PooledBytes => Interlocked.Read(ref _pooledBytes);

    public T[] Rent(int length)
    {
        if (length == 0) return Array.Empty<T>();
        if (_bins.TryGetValue(length, out var bin))
        {
            bin.LastRent = Interlocked.Increment(ref _rentClock);
            if (bin.Arrays.TryTake(out var array))
            {
                Interlocked.Add(ref _pooledBytes, -(long)length * ElementSize);
                return array;
            }
        }
        else _bins.TryAdd(length, new Bin { LastRent = Interlocked.Increment(ref _rentClock) });
        CollectDropped();
        return GC.AllocateUninitializedArray<T>(length);
    }

    public void Return(T[] array)
    {
        if (array.Length == 0) return;
        long bytes = (long)array.Length * ElementSize, mark = EffectiveHighWaterBytes;
        if (bytes > mark)
        {
            Interlocked.Add(ref _droppedBytes, bytes);
            return;
        }
        _bins.GetOrAdd(array.Length, _ => new Bin()).Arrays.Add(array);
        // Evicting down to 7/8 of the mark leaves room, so a pool at its mark does not sort its bins on every return.
        if (Interlocked.Add(ref _pooledBytes, bytes) > mark) Trim(mark / 8 * 7);
    }

    /// <summary>Drops pooled arrays, least recently rented sizes first, until at most <paramref name="keepBytes"/>
    /// remain; the dropped arrays are the GC's (see <see cref="BufferPool.Trim"/> to also hand them back to the OS).
    /// Returns the bytes dropped.</summary>
    public long Trim(long keepBytes = 0)
    {
        long dropped = 0;
        lock (_evicting)
            foreach (var (length, bin) in _bins.OrderBy(kv => kv.Value.LastRent).ToList())
                while (PooledBytes > keepBytes && bin.Arrays.TryTake(out _))
                {
                    long bytes = (long)length * ElementSize;
                    Interlocked.Add(ref _pooledBytes, -bytes);
                    dropped += bytes;
                }
        Interlocked.Add(ref _droppedBytes, dropped);
        return dropped;
    }

    /// <summary>Bytes dropped to the GC since the last collection this pool ran.</summary>
    public long DroppedBytes => Interlocked.Read(ref _droppedBytes);

    /// <summary>Collections this pool has run to reclaim dropped arrays.</summary>
    public int Collections => _collections;
    private int _collections;

    /// <summary>Runs a full, non-compacting collection when half a mark's worth of arrays has been dropped since the
    /// last one (one caller runs it; not from <see cref="Return"/>, which finalizers call).</summary>
    private void CollectDropped()
    {
        long threshold = EffectiveHighWaterBytes / 2;
        if (Interlocked.Read(ref _droppedBytes) < threshold || Interlocked.Exchange(ref _droppedBytes, 0) < threshold) return;
        Interlocked.Increment(ref _collections);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: false);
    }
}

/// <summary>The CPU backend's pools together (one <see cref="BufferPool{T}"/> per element type).</summary>
public static class BufferPool
{
    private static readonly List<Action<long>> Pools = new();

    /// <summary>The high-water mark each pool starts with: an eighth of the memory available to the process
    /// (at least 512 MB) — above what a training step of the shipped configs keeps in flight, far below a laptop's RAM.</summary>
    public static long DefaultHighWaterBytes { get; } = Math.Max(512L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 8);

    internal static BufferPool<T> Register<T>(BufferPool<T> pool) where T : unmanaged
    {
        lock (Pools) Pools.Add(keep => pool.Trim(keep));
        return pool;
    }

    /// <summary>The open <see cref="LimitIdleBytes"/> scopes' limits (several may overlap, and close in any order).</summary>
    private static readonly List<IdleLimit> OpenLimits = new();
    private static long _idleLimitBytes = long.MaxValue;

    /// <summary>The lowest open <see cref="LimitIdleBytes"/> limit; <see cref="long.MaxValue"/> when none is open.</summary>
    public static long IdleLimitBytes => Interlocked.Read(ref _idleLimitBytes);

    /// <summary>Until the returned scope is disposed, every pool keeps at most <paramref name="bytes"/> idle
    /// (its own <see cref="BufferPool{T}.HighWaterBytes"/> where that is lower), and what the shared pools hold beyond it
    /// now is dropped: for a step that would rather collect than keep idle arrays of many sizes (the 12-bit tokenizer step's
    /// convolutions leave about 2 GB of them at the default mark). Disposing restores the marks as they were.</summary>
    public static IDisposable LimitIdleBytes(long bytes)
    {
        var limit = new IdleLimit(bytes);
        lock (OpenLimits)
        {
            OpenLimits.Add(limit);
            Interlocked.Exchange(ref _idleLimitBytes, OpenLimits.Min(l => l.Bytes));
        }
        lock (Pools) foreach (var trim in Pools) trim(bytes);
        return limit;
    }

    private sealed class IdleLimit(long bytes) : IDisposable
    {
        public long Bytes { get; } = bytes;

        public void Dispose()
        {
            lock (OpenLimits)
                if (OpenLimits.Remove(this))
                    Interlocked.Exchange(ref _idleLimitBytes, OpenLimits.Count == 0 ? long.MaxValue : OpenLimits.Min(l => l.Bytes));
        }
    }

    /// <summary>Gives the CPU backend's idle memory back to the operating system: storages of tensors nobody
    /// references are finalised (returning their arrays to the pools), every pool is emptied, and the GC compacts
    /// and decommits what was freed. For between workloads — after a model is dropped, between benchmark rows.</summary>
    public static void Trim()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        lock (Pools) foreach (var trim in Pools) trim(0);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }
}
