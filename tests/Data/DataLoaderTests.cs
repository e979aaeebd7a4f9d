using MaskBit.Models.Data;

namespace MaskBit.Tests.Data;

public class DataLoaderTests
{
    private static readonly ImageTransform Augment = new(16, useAspectRatioAug: true, minScale: 0.2);

    private static DataLoader Loader(IImageDataset ds, int workers, int prefetch = 4, int batchSize = 5, int seed = 11, bool dropLast = false)
        => new(ds, new DataLoaderOptions
        {
            BatchSize = batchSize, Workers = workers, Prefetch = prefetch, Seed = seed, DropLast = dropLast, Transform = Augment.Train,
        });

    /// <summary>A batch as comparable values: keys, labels, pixels.</summary>
    private static (string[] Keys, int[] Labels, float[] Pixels, int Index) Snapshot(Batch b)
        => (b.Keys.ToArray(), b.Labels.ToIntArray(), b.Images.ToArray(), b.Index);

    private static void AssertSameBatches(IEnumerable<Batch> expected, IEnumerable<Batch> actual)
    {
        var a = expected.Select(Snapshot).ToList();
        var b = actual.Select(Snapshot).ToList();
        Assert.That(b, Has.Count.EqualTo(a.Count));
        for (int i = 0; i < a.Count; i++)
        {
            Assert.That(b[i].Index, Is.EqualTo(a[i].Index));
            Assert.That(b[i].Keys, Is.EqualTo(a[i].Keys), $"batch {i} keys");
            Assert.That(b[i].Labels, Is.EqualTo(a[i].Labels), $"batch {i} labels");
            Assert.That(b[i].Pixels, Is.EqualTo(a[i].Pixels), $"batch {i} pixels");
        }
    }

    [Test]
    public void BatchesHaveTheRightShapesAndCoverTheEpoch()
    {
        var ds = new SyntheticDataset(23);
        var batches = Loader(ds, workers: 2).Epoch(0).ToList();
        Assert.That(batches, Has.Count.EqualTo(5));
        Assert.That(batches[0].Images.Shape, Is.EqualTo(new[] { 5, 3, 16, 16 }));
        Assert.That(batches[0].Labels.Shape, Is.EqualTo(new[] { 5 }));
        Assert.That(batches[^1].Count, Is.EqualTo(3));
        Assert.That(batches.SelectMany(b => b.Keys).Order(), Is.EqualTo(Enumerable.Range(0, 23).Select(ds.KeyOf)));
        Assert.That(batches.SelectMany(b => b.Images.ToArray()).All(v => v is >= 0f and <= 1f));

        var dropLast = Loader(ds, workers: 2, dropLast: true);
        Assert.That(dropLast.BatchesPerEpoch, Is.EqualTo(4));
        Assert.That(dropLast.Epoch(0).Select(b => b.Count), Is.All.EqualTo(5));
    }

    [Test]
    public void OutputDoesNotDependOnWorkersOrPrefetch()
    {
        var ds = new SyntheticDataset(23);
        var reference = Loader(ds, workers: 0).Epoch(1).ToList();
        AssertSameBatches(reference, Loader(ds, workers: 1, prefetch: 1).Epoch(1));
        AssertSameBatches(reference, Loader(ds, workers: 3, prefetch: 8).Epoch(1));
        AssertSameBatches(reference, Loader(ds, workers: 2, prefetch: 2).Epoch(1));
    }

    [Test]
    public void ShuffleDependsOnSeedAndEpoch()
    {
        var ds = new SyntheticDataset(40);
        var loader = Loader(ds, workers: 0);
        var order0 = loader.EpochOrder(0);
        Assert.That(order0.Order(), Is.EqualTo(Enumerable.Range(0, 40)));
        Assert.That(loader.EpochOrder(0), Is.EqualTo(order0));
        Assert.That(loader.EpochOrder(1), Is.Not.EqualTo(order0));
        Assert.That(Loader(ds, workers: 0, seed: 12).EpochOrder(0), Is.Not.EqualTo(order0));
        Assert.That(new DataLoader(ds, new DataLoaderOptions { Shuffle = false }).EpochOrder(3), Is.EqualTo(Enumerable.Range(0, 40)));

        // The same sample is augmented differently in different epochs.
        var e0 = Loader(ds, workers: 0, batchSize: 40).Epoch(0).Single();
        var e1 = Loader(ds, workers: 0, batchSize: 40).Epoch(1).Single();
        Assert.That(e0.Images.ToArray(), Is.Not.EqualTo(e1.Images.ToArray()));
    }

    [Test]
    public void ResumingAnEpochRepeatsTheRemainingBatches()
    {
        var ds = new SyntheticDataset(23);
        var full = Loader(ds, workers: 2).Epoch(2).ToList();
        AssertSameBatches(full.Skip(3), Loader(ds, workers: 2).Epoch(2, startBatch: 3));
        Assert.That(Loader(ds, workers: 2).Epoch(2, startBatch: 5).Count(), Is.Zero);
        Assert.Throws<ArgumentOutOfRangeException>(() => Loader(ds, workers: 2).Epoch(2, startBatch: 6));

        var continued = Loader(ds, workers: 3).Batches(startEpoch: 1, startBatch: 4).Take(3).ToList();
        Assert.That(continued.Select(b => (b.Epoch, b.Index)), Is.EqualTo(new[] { (1, 4), (2, 0), (2, 1) }));
        AssertSameBatches(full.Take(2), continued.Skip(1));
    }

    [Test]
    public void BadSamplesAreSkippedReportedOnceAndCounted()
    {
        var ds = new SyntheticDataset(20, null, 4, 13);
        var reported = new List<SkippedSample>();
        var loader = new DataLoader(ds, new DataLoaderOptions
        {
            BatchSize = 6, Workers = 2, Seed = 5, Transform = Augment.Train, OnSkipped = reported.Add,
        });
        var epoch0 = loader.Epoch(0).ToList();
        Assert.That(epoch0.Sum(b => b.Count), Is.EqualTo(18));
        Assert.That(epoch0.Select(b => b.Images.Shape[0]), Is.EqualTo(epoch0.Select(b => b.Count)));
        Assert.That(loader.SkippedSamples.Select(s => s.Key).Order(), Is.EqualTo(new[] { "synthetic/004", "synthetic/013" }));
        Assert.That(loader.SkippedSamples[0].Reason, Does.Contain("broken on purpose"));

        int loadsBefore = ds.Loads;
        loader.Epoch(1).ToList();
        Assert.That(ds.Loads - loadsBefore, Is.EqualTo(18), "known-bad samples are not read again");
        Assert.That(reported, Has.Count.EqualTo(2));
        Assert.That(loader.SkippedCount, Is.EqualTo(4));

        // Good samples come out exactly as from a dataset without the bad ones in the same positions.
        var clean = new DataLoader(new SyntheticDataset(20), new DataLoaderOptions { BatchSize = 6, Workers = 0, Seed = 5, Transform = Augment.Train });
        var expected = clean.Epoch(0).SelectMany(b => b.Keys).Where(k => k is not ("synthetic/004" or "synthetic/013"));
        Assert.That(epoch0.SelectMany(b => b.Keys), Is.EqualTo(expected));
    }

    [Test]
    public void MixedSizesWithoutTransformFailWithTheKey()
    {
        var loader = new DataLoader(new SyntheticDataset(10), new DataLoaderOptions { BatchSize = 4, Workers = 2, Shuffle = false });
        var e = Assert.Throws<InvalidOperationException>(() => loader.Epoch(0).ToList())!;
        Assert.That(e.Message, Does.Contain("synthetic/001").And.Contain("Transform"));
    }

    [Test]
    public void PrefetchIsBoundedAndEarlyExitStopsWorkers()
    {
        var ds = new SyntheticDataset(400, _ => (16, 16));
        var loader = new DataLoader(ds, new DataLoaderOptions { BatchSize = 4, Workers = 2, Prefetch = 2 });
        using (var batches = loader.Epoch(0).GetEnumerator())
        {
            Assert.That(batches.MoveNext(), Is.True);
            Thread.Sleep(150);
            // one batch delivered + one waiting in each worker's queue + one being finished per worker
            Assert.That(ds.Loads, Is.InRange(2 * 4, 5 * 4));
        }
        int afterDispose = ds.Loads;
        Thread.Sleep(50);
        Assert.That(ds.Loads, Is.EqualTo(afterDispose), "workers are stopped when enumeration ends");
    }
}
