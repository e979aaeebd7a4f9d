namespace MaskBit.Kernels.Ilgpu;

/// <summary>Running totals of what an <see cref="IlgpuBackend"/> moved between host and device and how often it
/// waited for the device. Ops only enqueue kernels, so every count here is a place where the host stalls the
/// stream (a download or synchronisation) or a copy from the host; subtract two snapshots
/// (<see cref="op_Subtraction"/>) to get the traffic of a training step.</summary>
/// <param name="Uploads">Host → device copies (<see cref="IlgpuBackend.Upload(ReadOnlySpan{float}, Buf)"/>), queued from
/// pinned staging without a wait (a wait for staging room is counted under Synchronizations).</param>
/// <param name="Downloads">Device → host copies; each one waits for all queued work.</param>
/// <param name="Synchronizations">Explicit waits for the device (<see cref="IlgpuBackend.Synchronize"/> and pool trims).</param>
/// <param name="Allocations">Device buffers allocated because the pool had none of that length.</param>
public readonly record struct DeviceTraffic(long Uploads, long UploadBytes, long Downloads, long DownloadBytes, long Synchronizations, long Allocations)
{
    public static DeviceTraffic operator -(DeviceTraffic after, DeviceTraffic before) => new(
        after.Uploads - before.Uploads, after.UploadBytes - before.UploadBytes, after.Downloads - before.Downloads,
        after.DownloadBytes - before.DownloadBytes, after.Synchronizations - before.Synchronizations, after.Allocations - before.Allocations);

    public override string ToString() =>
        $"{Uploads} uploads ({UploadBytes} B), {Downloads} downloads ({DownloadBytes} B), {Synchronizations} synchronizations, {Allocations} allocations";
}

/// <summary>The mutable counters behind <see cref="DeviceTraffic"/> (updated from any thread).</summary>
internal sealed class TrafficCounters
{
    private long _uploads, _uploadBytes, _downloads, _downloadBytes, _synchronizations, _allocations;

    public void Upload(long bytes) { Interlocked.Increment(ref _uploads); Interlocked.Add(ref _uploadBytes, bytes); }
    public void Download(long bytes) { Interlocked.Increment(ref _downloads); Interlocked.Add(ref _downloadBytes, bytes); }
    public void Synchronization() => Interlocked.Increment(ref _synchronizations);
    public void Allocation() => Interlocked.Increment(ref _allocations);

    public DeviceTraffic Snapshot() => new(Interlocked.Read(ref _uploads), Interlocked.Read(ref _uploadBytes), Interlocked.Read(ref _downloads),
        Interlocked.Read(ref _downloadBytes), Interlocked.Read(ref _synchronizations), Interlocked.Read(ref _allocations));
}
