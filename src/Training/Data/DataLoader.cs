using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using MaskBit.Autograd;
using MaskBit.Kernels;

namespace MaskBit.Models.Data;

/// <summary>A sample the loader left out: dataset index, key and why it could not be read.</summary>
public sealed record SkippedSample(int Index, string Key, string Reason);

public sealed class DataLoaderOptions
{
    public int BatchSize { get; init; } = 32;
    /// <summary>Reshuffle the order every epoch (a permutation drawn from (Seed, epoch)).</summary>
    public bool Shuffle { get; init; } = true;
    public int Seed { get; init; }
    /// <summary>Threads that decode and augment batches ahead of the consumer; 0 decodes on the caller's thread.</summary>
    public int Workers { get; init; } = 2;
    /// <summary>How many decoded batches may wait ahead of the consumer, over all workers (at least one per worker).</summary>
    public int Prefetch { get; init; } = 4;
    /// <summary>Leave out the last, smaller batch of an epoch (the reference trains on full batches only).</summary>
    public bool DropLast { get; init; }
    /// <summary>Per-sample augmentation on the decoded image, e.g. <see cref="ImageTransform.Train"/>. Its
    /// <see cref="Random"/> is seeded from (Seed, epoch, dataset index), so results do not depend on worker
    /// timing, worker count or the position an epoch is resumed at.</summary>
    public Func<HostImage, Random, HostImage>? Transform { get; init; }
    /// <summary>Called (on the consuming thread) the first time a sample turns out to be unreadable.</summary>
    public Action<SkippedSample>? OnSkipped { get; init; }
    /// <summary>Device for the batch tensors (the consuming thread's default device when null).</summary>
    public IBackend? Device { get; init; }
    /// <summary>Data parallel: the loader of rank <see cref="Rank"/> of <see cref="WorldSize"/> delivers its part of
    /// every global batch of <see cref="BatchSize"/> × <see cref="WorldSize"/> samples of the shared epoch order
    /// (rank r takes samples [r·B, (r+1)·B) of it), so the ranks' batches are disjoint and together are the batch
    /// one process with the global batch size would take, augmented alike.</summary>
    public int Rank { get; init; }
    public int WorldSize { get; init; } = 1;
}

/// <summary>One batch: images (B,C,H,W) float32 in [0,1], labels (B) Int32, and the samples' keys. B can fall
/// short of the batch size at the end of an epoch and where unreadable samples were left out.</summary>
public sealed class Batch
{
    public required Tensor Images { get; init; }
    public required Tensor Labels { get; init; }
    public required IReadOnlyList<string> Keys { get; init; }
    public required int Epoch { get; init; }
    /// <summary>Position of this batch within its epoch: resume with Epoch(epoch, Index + 1).</summary>
    public required int Index { get; init; }
    public int Count => Keys.Count;
}

/// <summary>
/// Batches an <see cref="IImageDataset"/>: a deterministic per-epoch order, decoding and augmentation on worker
/// threads that run ahead of the consumer through bounded channels, batches delivered strictly in order.
/// Worker w decodes batches w, w+W, w+2W, … of the epoch into its own queue and the consumer takes them round
/// robin, so the output is identical for any worker count. A sample that cannot be read is reported once
/// (<see cref="DataLoaderOptions.OnSkipped"/>, <see cref="SkippedSamples"/>) and left out of its batch.
/// </summary>
public sealed class DataLoader
{
    private readonly IImageDataset _dataset;
    private readonly DataLoaderOptions _options;
    private readonly ConcurrentDictionary<int, SkippedSample> _knownBad = new();
    private readonly List<SkippedSample> _skippedInOrder = new();
    private long _skipCount;

    public DataLoader(IImageDataset dataset, DataLoaderOptions? options = null)
    {
        _dataset = dataset;
        _options = options ?? new DataLoaderOptions();
        if (_options.BatchSize <= 0) throw new ArgumentException($"batch size must be positive, not {_options.BatchSize}");
        if (_options.Workers < 0) throw new ArgumentException($"workers must not be negative, not {_options.Workers}");
        if (_options.Prefetch <= 0) throw new ArgumentException($"prefetch must be positive, not {_options.Prefetch}");
        if (_options.WorldSize < 1 || _options.Rank < 0 || _options.Rank >= _options.WorldSize)
            throw new ArgumentException($"rank {_options.Rank} does not fit a world of {_options.WorldSize}");
    }

    public IImageDataset Dataset => _dataset;
    public DataLoaderOptions Options => _options;

    /// <summary>Samples of one global batch (all ranks' batches together).</summary>
    public int GlobalBatchSize => _options.BatchSize * _options.WorldSize;

    public int BatchesPerEpoch => _options.DropLast
        ? _dataset.Count / GlobalBatchSize
        : (_dataset.Count + GlobalBatchSize - 1) / GlobalBatchSize;

    /// <summary>Each unreadable sample once, in the order they were first met.</summary>
    public IReadOnlyList<SkippedSample> SkippedSamples { get { lock (_skippedInOrder) return _skippedInOrder.ToArray(); } }

    /// <summary>How many times a sample was left out of a batch (a bad sample counts once per epoch it is met in).</summary>
    public long SkippedCount => Interlocked.Read(ref _skipCount);

    /// <summary>Dataset indices in the order epoch <paramref name="epoch"/> visits them.</summary>
    public int[] EpochOrder(int epoch)
    {
        var order = new int[_dataset.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        if (_options.Shuffle) new Random(MixSeed(_options.Seed, epoch, -1)).Shuffle(order);
        return order;
    }

    /// <summary>The batches of one epoch from batch <paramref name="startBatch"/> on (resuming skips earlier
    /// batches without reading them; later batches are the same as in an uninterrupted epoch).</summary>
    public IEnumerable<Batch> Epoch(int epoch, int startBatch = 0)
    {
        if (epoch < 0) throw new ArgumentOutOfRangeException(nameof(epoch), epoch, "epoch must not be negative");
        int end = BatchesPerEpoch;
        if (startBatch < 0 || startBatch > end) throw new ArgumentOutOfRangeException(nameof(startBatch), startBatch, $"an epoch has {end} batches");
        return EpochIterator(epoch, startBatch, end);
    }

    /// <summary>Batches of successive epochs without end, from (<paramref name="startEpoch"/>, <paramref name="startBatch"/>).</summary>
    public IEnumerable<Batch> Batches(int startEpoch = 0, int startBatch = 0)
    {
        if (BatchesPerEpoch == 0) throw new InvalidOperationException($"{_dataset.Count} samples make no batch of {GlobalBatchSize} with drop_last");
        for (int epoch = startEpoch; ; epoch++)
            foreach (var batch in Epoch(epoch, epoch == startEpoch ? startBatch : 0))
                yield return batch;
    }

    private IEnumerable<Batch> EpochIterator(int epoch, int startBatch, int end)
    {
        var order = EpochOrder(epoch);
        if (_options.Workers == 0)
        {
            for (int b = startBatch; b < end; b++)
                if (Deliver(DecodeBatch(order, epoch, b), epoch) is { } batch) yield return batch;
            yield break;
        }
        using var prefetcher = new Prefetcher(this, order, epoch, startBatch, end);
        for (int b = startBatch; b < end; b++)
            if (Deliver(prefetcher.Take(b), epoch) is { } batch) yield return batch;
    }

    // ---- decoding (worker threads) -----------------------------------------------------------------------

    /// <summary>A batch decoded on the host, not yet turned into tensors (tensors are made on the consumer's
    /// thread, whose default device applies).</summary>
    private sealed class HostBatch
    {
        public int Index;
        public float[] Pixels = Array.Empty<float>();
        public int[] Shape = Array.Empty<int>();
        public int[] Labels = Array.Empty<int>();
        public string[] Keys = Array.Empty<string>();
        public List<SkippedSample> Skipped = new();
        public ExceptionDispatchInfo? Error;
    }

    private HostBatch DecodeBatch(int[] order, int epoch, int batchIndex)
    {
        int begin = Math.Min(batchIndex * GlobalBatchSize + _options.Rank * _options.BatchSize, order.Length);
        int end = Math.Min(begin + _options.BatchSize, order.Length);
        var result = new HostBatch { Index = batchIndex };
        var images = new List<HostImage>(end - begin);
        var labels = new List<int>(end - begin);
        var keys = new List<string>(end - begin);
        for (int position = begin; position < end; position++)
        {
            int index = order[position];
            if (_knownBad.TryGetValue(index, out var known)) { result.Skipped.Add(known); continue; }
            RawSample sample;
            try { sample = _dataset.Load(index); }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                result.Skipped.Add(new SkippedSample(index, _dataset.KeyOf(index), e.Message));
                continue;
            }
            var image = _options.Transform?.Invoke(sample.Image, new Random(MixSeed(_options.Seed, epoch, index))) ?? sample.Image;
            if (images.Count > 0 && (image.Height != images[0].Height || image.Width != images[0].Width || image.Channels != images[0].Channels))
                throw new InvalidOperationException(
                    $"sample '{sample.Key}' is {image} but '{keys[0]}' is {images[0]}: a batch needs images of one size; give the loader a Transform that resizes and crops");
            images.Add(image);
            labels.Add(sample.Label);
            keys.Add(sample.Key);
        }
        if (images.Count == 0) return result;

        int size = images[0].Pixels.Length;
        result.Pixels = new float[images.Count * size];
        for (int i = 0; i < images.Count; i++) ImageIO.WriteChw(images[i], result.Pixels.AsSpan(i * size, size));
        result.Shape = new[] { images.Count, images[0].Channels, images[0].Height, images[0].Width };
        result.Labels = labels.ToArray();
        result.Keys = keys.ToArray();
        return result;
    }

    // ---- delivery (consumer thread) ----------------------------------------------------------------------

    private Batch? Deliver(HostBatch host, int epoch)
    {
        host.Error?.Throw();
        foreach (var skipped in host.Skipped)
        {
            Interlocked.Increment(ref _skipCount);
            if (!_knownBad.TryAdd(skipped.Index, skipped)) continue;
            lock (_skippedInOrder) _skippedInOrder.Add(skipped);
            _options.OnSkipped?.Invoke(skipped);
        }
        if (host.Keys.Length == 0) return null;
        return new Batch
        {
            Images = Tensor.FromArray(host.Pixels, host.Shape, _options.Device),
            Labels = Tensor.FromInts(host.Labels, new[] { host.Labels.Length }, _options.Device),
            Keys = host.Keys,
            Epoch = epoch,
            Index = host.Index,
        };
    }

    /// <summary>Worker threads, each with its own bounded queue; disposing cancels and joins them.</summary>
    private sealed class Prefetcher : IDisposable
    {
        private readonly Channel<HostBatch>[] _queues;
        private readonly Task[] _workers;
        private readonly CancellationTokenSource _cancel = new();
        private readonly int _startBatch;

        public Prefetcher(DataLoader loader, int[] order, int epoch, int startBatch, int endBatch)
        {
            int workers = Math.Max(1, Math.Min(loader._options.Workers, endBatch - startBatch));
            int capacity = Math.Max(1, (loader._options.Prefetch + workers - 1) / workers);
            _startBatch = startBatch;
            _queues = new Channel<HostBatch>[workers];
            _workers = new Task[workers];
            for (int w = 0; w < workers; w++)
            {
                var queue = _queues[w] = Channel.CreateBounded<HostBatch>(new BoundedChannelOptions(capacity)
                {
                    SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait,
                });
                int first = startBatch + w;
                _workers[w] = Task.Factory.StartNew(() => Work(loader, order, epoch, first, endBatch, workers, queue.Writer),
                    CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
        }

        private void Work(DataLoader loader, int[] order, int epoch, int first, int end, int stride, ChannelWriter<HostBatch> writer)
        {
            try
            {
                for (int b = first; b < end; b += stride)
                {
                    HostBatch batch;
                    try { batch = loader.DecodeBatch(order, epoch, b); }
                    catch (Exception e) { batch = new HostBatch { Index = b, Error = ExceptionDispatchInfo.Capture(e) }; }
                    writer.WriteAsync(batch, _cancel.Token).AsTask().GetAwaiter().GetResult();
                    if (batch.Error != null) break;
                }
            }
            catch (OperationCanceledException) { /* the consumer stopped early */ }
            finally { writer.TryComplete(); }
        }

        public HostBatch Take(int batchIndex)
            => _queues[(batchIndex - _startBatch) % _queues.Length].Reader.ReadAsync().AsTask().GetAwaiter().GetResult();

        public void Dispose()
        {
            _cancel.Cancel();
            Task.WaitAll(_workers);
            _cancel.Dispose();
        }
    }

    // ---- seeds -------------------------------------------------------------------------------------------

    /// <summary>A well-mixed 31-bit seed from (seed, epoch, index) (SplitMix64 finaliser applied in turn).</summary>
    internal static int MixSeed(int seed, int epoch, long index)
    {
        ulong h = SplitMix((uint)seed);
        h = SplitMix(h ^ (uint)epoch);
        h = SplitMix(h ^ (ulong)index);
        return (int)(h >> 33);
    }

    private static ulong SplitMix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
