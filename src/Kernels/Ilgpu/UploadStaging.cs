using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

/// <summary>
/// Host → device copies that do not wait. ILGPU's <c>CopyFromCPU(stream, span)</c> synchronises the stream (the
/// span may be gone once it returns), so every upload was a host wait. Here the data is first copied into a pinned
/// (page-locked) staging buffer, and the device copy is queued from there: the call returns at once and the
/// stream keeps running. A staging buffer stays busy until the stream has been drained — by a download or a
/// synchronisation, which the backend reports through <see cref="StreamDrained"/> — and is then reused. When the
/// busy buffers would exceed the budget, the upload waits for the stream first (counted as a synchronisation in
/// <see cref="DeviceTraffic"/>).
/// </summary>
internal sealed class UploadStaging(Accelerator accelerator, AcceleratorStream stream, TrafficCounters traffic, long budgetBytes) : IDisposable
{
    /// <summary>Smallest staging buffer: small uploads (scalars, index lists) share a few buffers.</summary>
    private const long MinimumBytes = 64 * 1024;

    private readonly Lock _lock = new();
    private readonly List<PageLockedArray1D<byte>> _free = [], _busy = [];
    private long _busyBytes;

    /// <summary>Bytes of staging buffers in use by queued copies (for tests).</summary>
    public long BusyBytes { get { lock (_lock) return _busyBytes; } }

    /// <summary>Queues dst ← src; returns without waiting for the device.</summary>
    public void Upload<T>(ReadOnlySpan<T> src, ArrayView<T> dst) where T : unmanaged
    {
        var bytes = MemoryMarshal.AsBytes(src);
        lock (_lock)
        {
            var staging = Rent(bytes.Length);
            bytes.CopyTo(staging.Span);
            dst.CopyFrom(stream, staging.ArrayView.SubView(0, bytes.Length).Cast<T>());
        }
    }

    /// <summary>Every queued copy has finished (the stream was drained): all staging buffers are free again.</summary>
    public void StreamDrained()
    {
        lock (_lock)
        {
            ReleaseBusy();
            // Keep at most the budget pinned while idle: pinned memory is taken from the whole machine.
            long kept = 0;
            for (int i = 0; i < _free.Count; i++)
            {
                if (kept + _free[i].Length <= budgetBytes) { kept += _free[i].Length; continue; }
                _free[i].Dispose();
                _free.RemoveAt(i--);
            }
        }
    }

    private PageLockedArray1D<byte> Rent(long bytes)
    {
        if (_busyBytes > 0 && _busyBytes + bytes > budgetBytes)
        {
            traffic.Synchronization();
            stream.Synchronize();
            ReleaseBusy();
        }
        int fit = _free.FindIndex(b => b.Length >= bytes);   // _free is sorted by length: the smallest that fits
        PageLockedArray1D<byte> staging;
        if (fit >= 0)
        {
            staging = _free[fit];
            _free.RemoveAt(fit);
        }
        else staging = accelerator.AllocatePageLocked1D<byte>(Math.Max(MinimumBytes, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)bytes)));
        _busy.Add(staging);
        _busyBytes += staging.Length;
        return staging;
    }

    /// <summary>Busy buffers back to the free list, which stays sorted by length.</summary>
    private void ReleaseBusy()
    {
        _free.AddRange(_busy);
        _free.Sort((a, b) => a.Length.CompareTo(b.Length));
        _busy.Clear();
        _busyBytes = 0;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var b in _free) b.Dispose();
            foreach (var b in _busy) b.Dispose();
            _free.Clear();
            _busy.Clear();
        }
    }
}
