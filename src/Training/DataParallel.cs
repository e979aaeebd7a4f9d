using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Models.Interop;

namespace MaskBit.Models.Training;

/// <summary>
/// Gradients averaged over the ranks as PyTorch DDP does it: the parameters in reverse order (the order backward
/// finishes them) packed into buckets of about <see cref="DefaultBucketBytes"/> (DDP's bucket_cap_mb), each bucket's
/// all-reduce started as soon as it is packed, so one bucket travels while the next is packed and the previous is
/// written back. The average is the sum times 1/world, the same on every rank. Gradients that are null on this rank
/// (a part that did not train this step) are left out; every rank takes the same path through a step, so they are
/// null everywhere. One process: nothing happens.
/// </summary>
public sealed class GradientAverager(ICollectives group, int bucketBytes = GradientAverager.DefaultBucketBytes)
{
    public const int DefaultBucketBytes = 25 << 20;

    private readonly float[][] _buffers = [[], []];

    public ICollectives Group { get; } = group;

    /// <summary>Replaces every non-null gradient of <paramref name="parameters"/> by its mean over the ranks.</summary>
    public void Average(IReadOnlyList<Tensor> parameters)
    {
        if (Group.WorldSize == 1) return;
        float scale = 1f / Group.WorldSize;
        int capacity = Math.Max(1, bucketBytes / sizeof(float));
        var buckets = new List<List<Tensor>>();
        long filled = capacity;
        for (int i = parameters.Count - 1; i >= 0; i--)
        {
            if (parameters[i].Grad is not { } grad) continue;
            if (filled + grad.Numel > capacity) { buckets.Add([]); filled = 0; }
            buckets[^1].Add(grad);
            filled += grad.Numel;
        }

        (IPendingCollective Request, List<Tensor> Grads, float[] Buffer)? inFlight = null;
        for (int b = 0; b < buckets.Count; b++)
        {
            var grads = buckets[b];
            long size = grads.Sum(g => g.Numel);
            ref var buffer = ref _buffers[b % 2];
            if (buffer.Length < size) buffer = new float[size];
            int offset = 0;
            foreach (var g in grads)
            {
                g.Device.Download(g.Buf, buffer.AsSpan(offset, (int)g.Numel));
                offset += (int)g.Numel;
            }
            var request = Group.StartAllReduceSum(buffer, 0, (int)size);
            if (inFlight is { } previous) Finish(previous.Request, previous.Grads, previous.Buffer, scale);
            inFlight = (request, grads, buffer);
        }
        if (inFlight is { } last) Finish(last.Request, last.Grads, last.Buffer, scale);
    }

    private static void Finish(IPendingCollective request, List<Tensor> grads, float[] buffer, float scale)
    {
        request.Wait();
        int offset = 0;
        foreach (var g in grads)
        {
            var values = buffer.AsSpan(offset, (int)g.Numel);
            for (int i = 0; i < values.Length; i++) values[i] *= scale;
            g.CopyFrom_(values);
            offset += values.Length;
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
