using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Models.Interop;

namespace MaskBit.Models.Training;

/// <summary>
/// Gradients averaged over the ranks as PyTorch DDP does it: the parameters in reverse order (the order backward
/// finishes them) split into buckets of about <see cref="DefaultBucketBytes"/> (DDP's bucket_cap_mb); during the
/// last backward that touches them (<see cref="AverageDuring"/>) a bucket's all-reduce starts as soon as the tape says
/// every gradient in it is final (<see cref="Tape.OnGradAccumulated"/>), buckets in order, so the sums travel on the
/// communication thread while the backward goes on; <see cref="Wait"/> then writes back sum × 1/world, the same on every
/// rank. The buckets depend only on the parameter list, so a world size and seed repeat bit for bit. Gradients that
/// are null (a part that did not train this step) are left out; every rank takes the same path through a step, so they
/// are null everywhere. One process: nothing happens. The buckets travel by NCCL on a CUDA device where it loads,
/// else staged through host memory and MPI (<see cref="DeviceCollectives"/>).
/// </summary>
public sealed class GradientAverager(ICollectives group, int bucketBytes = GradientAverager.DefaultBucketBytes)
{
    public const int DefaultBucketBytes = 25 << 20;

    private readonly Dictionary<IReadOnlyList<Tensor>, Buckets> _buckets = new(ReferenceEqualityComparer.Instance);
    /// <summary>The buckets started and not yet written back: host-staged (a request and its host buffer) or by
    /// NCCL (the device buffer its sum is queued into).</summary>
    private readonly List<(List<Tensor> Grads, IPendingCollective? Request, float[]? Buffer, Tensor? DeviceBucket)> _inFlight = [];

    public ICollectives Group { get; } = group;

    /// <summary>True (the default): buckets start while the backward runs. False: all start when the scope of
    /// <see cref="AverageDuring"/> ends, after the backward (the A/B of bench/AllReduce measures the difference).</summary>
    public bool OverlapWithBackward { get; set; } = true;

    /// <summary>Around the last backward of a step that adds to <paramref name="parameters"/>' gradients: starts each
    /// bucket's all-reduce as soon as its gradients are final, and at the end of the scope the buckets left (gradients
    /// this backward did not reach). Null in one process. Follow with <see cref="Wait"/> before the gradients are read.</summary>
    public IDisposable? AverageDuring(IReadOnlyList<Tensor> parameters)
    {
        if (Group.WorldSize == 1) return null;
        if (!_buckets.TryGetValue(parameters, out var buckets))
            _buckets[parameters] = buckets = new Buckets(parameters, Math.Max(1, bucketBytes / sizeof(float)));
        return new Sync(this, buckets);
    }

    /// <summary>Waits for every bucket started since the last call and replaces its gradients by their mean.</summary>
    public void Wait()
    {
        float scale = 1f / Group.WorldSize;
        NcclOnDevice? nccl = null;
        foreach (var (grads, request, buffer, deviceBucket) in _inFlight)
        {
            if (deviceBucket != null)
            {
                // Queued on the device's stream after NCCL's sum: g = scale · its part (ReduceSum over a middle
                // dimension of 1 is a scaled copy).
                long at = 0;
                foreach (var g in grads)
                {
                    g.Device.ReduceSum(deviceBucket.Buf.At(at), g.Buf, 1, 1, (int)g.Numel, scale);
                    at += g.Numel;
                }
                nccl = DeviceCollectives.For(Group, grads[0].Device);
                continue;
            }
            request!.Wait();
            int offset = 0;
            foreach (var g in grads)
            {
                var values = buffer!.AsSpan(offset, (int)g.Numel);
                for (int i = 0; i < values.Length; i++) values[i] *= scale;
                g.CopyFrom_(values);
                offset += values.Length;
            }
        }
        _inFlight.Clear();
        // The step downloads its losses and clipped norms right after this, which waits for NCCL's sums anyway;
        // waiting here puts that wait under the collective watchdog.
        nccl?.WaitForCompletion("bucketed all-reduce (NCCL)");
    }

    private void Start(List<Tensor> parameters, ref float[] buffer)
    {
        var grads = parameters.Where(p => p.Grad != null).Select(p => p.Grad!).ToList();
        long size = grads.Sum(g => g.Numel);
        if (size == 0) return;
        var device = grads[0].Device;
        if (DeviceCollectives.For(Group, device) is { } nccl)
        {
            var bucket = Tensor.Empty([checked((int)size)], device);
            long at = 0;
            foreach (var g in grads)
            {
                device.Copy(g.Buf, bucket.Buf.At(at), g.Numel);
                at += g.Numel;
            }
            nccl.AllReduceSum(bucket.Buf, size);
            _inFlight.Add((grads, null, null, bucket));
            return;
        }
        if (buffer.Length < size) buffer = new float[size];
        int offset = 0;
        foreach (var g in grads)
        {
            device.Download(g.Buf, buffer.AsSpan(offset, (int)g.Numel));
            offset += (int)g.Numel;
        }
        _inFlight.Add((grads, Group.StartAllReduceSum(buffer, 0, (int)size), buffer, null));
    }

    /// <summary>A parameter list split into buckets in reverse order, each with the host buffer its sum travels in.</summary>
    private sealed class Buckets
    {
        public readonly List<List<Tensor>> Members = [];
        public readonly Dictionary<Tensor, int> BucketOf = new(ReferenceEqualityComparer.Instance);
        public readonly float[][] Buffers;

        public Buckets(IReadOnlyList<Tensor> parameters, int capacity)
        {
            long filled = 0;
            for (int i = parameters.Count - 1; i >= 0; i--)
            {
                var p = parameters[i];
                if (Members.Count == 0 || (filled > 0 && filled + p.Numel > capacity)) { Members.Add([]); filled = 0; }
                Members[^1].Add(p);
                BucketOf[p] = Members.Count - 1;
                filled += p.Numel;
            }
            Buffers = new float[Members.Count][];
            Array.Fill(Buffers, []);
        }
    }

    /// <summary>One backward's bucket starts: counts each bucket's final gradients and starts the buckets in order.</summary>
    private sealed class Sync : IDisposable
    {
        private readonly GradientAverager _owner;
        private readonly Buckets _buckets;
        private readonly int[] _final;
        private readonly IDisposable? _hook;
        private int _next;

        public Sync(GradientAverager owner, Buckets buckets)
        {
            (_owner, _buckets, _final) = (owner, buckets, new int[buckets.Members.Count]);
            if (owner.OverlapWithBackward) _hook = Tape.OnGradAccumulated(OnFinal);
        }

        private void OnFinal(Tensor parameter)
        {
            if (!_buckets.BucketOf.TryGetValue(parameter, out int bucket)) return;
            _final[bucket]++;
            while (_next < _final.Length && _final[_next] == _buckets.Members[_next].Count) StartNext();
        }

        private void StartNext()
        {
            _owner.Start(_buckets.Members[_next], ref _buckets.Buffers[_next]);
            _next++;
        }

        public void Dispose()
        {
            _hook?.Dispose();
            while (_next < _final.Length) StartNext();
        }
    }
}

/// <summary>The loop's part of data-parallel training (accelerate's prepare / gather / is_main_process): rank 0's
/// weights to every rank at the start, one collective per step that averages the logged values and agrees on a
/// stop, and the check that every rank resumed at the same step.</summary>
public static class DataParallel
{
    /// <summary>Copies rank 0's module weights and buffers and EMA weights to every rank (a fresh run initialises
    /// them from one seed anyway; this makes it so, as DDP's constructor does).</summary>
    public static void BroadcastWeights(ICollectives group, TrainingState state)
    {
        if (group.WorldSize == 1) return;
        var tensors = state.Modules.Values.SelectMany(m => m.StateDict().Select(kv => kv.Tensor))
            .Concat(state.Emas.Values.SelectMany(e => e.Shadow))
            .Where(t => t.DType == Kernels.DType.Float32).ToList();
        if (tensors.Count > 0 && DeviceCollectives.For(group, tensors[0].Device) is { } nccl)
        {
            foreach (var t in tensors) nccl.Broadcast(t.Buf, t.Numel);
            nccl.WaitForCompletion("broadcast of rank 0's weights (NCCL)");
            return;
        }
        var host = new float[tensors.Sum(t => t.Numel)];
        int offset = 0;
        foreach (var t in tensors) { t.Device.Download(t.Buf, host.AsSpan(offset, (int)t.Numel)); offset += (int)t.Numel; }
        group.Broadcast(host);
        offset = 0;
        foreach (var t in tensors) { t.CopyFrom_(host.AsSpan(offset, (int)t.Numel)); offset += (int)t.Numel; }
    }

    /// <summary>Replaces the modules' float buffers (running statistics such as the LeCAM EMAs of the logits) by their
    /// mean over the ranks after a step, so every rank keeps the same state. The mean is taken in float64: identical
    /// values come back exactly, and a buffer that is an EMA of per-rank batch means becomes the EMA of the global
    /// batch's mean, as one process with the global batch computes it (DDP instead copies rank 0's buffers).</summary>
    public static void AverageBuffers(ICollectives group, TrainingState state)
    {
        if (group.WorldSize == 1) return;
        var buffers = state.Modules.Values.SelectMany(m => m.NamedBuffers().Select(kv => kv.Tensor))
            .Where(t => t.DType == Kernels.DType.Float32).ToList();
        if (buffers.Count == 0) return;
        var single = new float[buffers.Sum(t => t.Numel)];
        int offset = 0;
        foreach (var t in buffers) { t.Device.Download(t.Buf, single.AsSpan(offset, (int)t.Numel)); offset += (int)t.Numel; }
        var sum = Array.ConvertAll(single, v => (double)v);
        group.AllReduceAverage(sum);
        for (int i = 0; i < sum.Length; i++) single[i] = (float)sum[i];
        offset = 0;
        foreach (var t in buffers) { t.CopyFrom_(single.AsSpan(offset, (int)t.Numel)); offset += (int)t.Numel; }
    }

    /// <summary>Stops with a one-line error unless every rank is at the same step (they read one checkpoint).</summary>
    public static void RequireSameStep(ICollectives group, long step)
    {
        if (group.WorldSize == 1) return;
        var steps = group.AllGather(step);
        if (steps.Any(s => s != step))
            throw new InvalidOperationException($"rank {group.Rank}: the ranks start at different steps ({string.Join(", ", steps)}); " +
                                                "every rank must see the same run folder (a shared file system)");
    }

    /// <summary>Replaces <paramref name="values"/> by their mean over the ranks (same keys on every rank) and says
    /// whether any rank asked to stop. One all-reduce per step.</summary>
    public static bool AverageAndAgreeOnStop(ICollectives group, Dictionary<string, double> values, bool stopRequested)
    {
        if (group.WorldSize == 1) return stopRequested;
        var keys = values.Keys.Order(StringComparer.Ordinal).ToList();
        var buffer = new double[keys.Count + 1];
        for (int i = 0; i < keys.Count; i++) buffer[i] = values[keys[i]];
        buffer[^1] = stopRequested ? 1 : 0;
        group.AllReduceAverage(buffer);
        for (int i = 0; i < keys.Count; i++) values[keys[i]] = buffer[i];
        return buffer[^1] > 0;
    }
}
