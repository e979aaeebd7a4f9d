using MaskBit.Kernels.Cpu;

namespace MaskBit.Tests.Engine;

/// <summary>The CPU parallel loop: every item runs exactly once, a chunk's exception surfaces as itself, and a loop
/// nested in another's chunk finishes (the caller takes chunks too).</summary>
[NonParallelizable]
public class CpuParallelTests
{
    private int _workers;

    // More chunks than this machine may have cores: the caller and the pool share them.
    [SetUp]
    public void FourWorkers() { _workers = CpuParallel.Workers; CpuParallel.Workers = 4; }

    [TearDown]
    public void RestoreWorkers() => CpuParallel.Workers = _workers;

    private readonly struct CountBody(int[] hits) : IRangeBody
    {
        public void Run(int start, int end)
        {
            for (int i = start; i < end; i++) Interlocked.Increment(ref hits[i]);
        }
    }

    [TestCase(1)]
    [TestCase(7)]
    [TestCase(100_003)]
    public void EveryItemRunsOnce(int count)
    {
        var hits = new int[count];
        CpuParallel.For(count, new CountBody(hits), costPerItem: 1e6);
        Assert.That(hits, Is.All.EqualTo(1));
        var viaDelegate = new int[count];
        CpuParallel.For(count, (s, e) => { for (int i = s; i < e; i++) viaDelegate[i]++; }, costPerItem: 1e6);
        Assert.That(viaDelegate, Is.All.EqualTo(1));
    }

    [Test]
    public void AChunksExceptionSurfacesAsItself()
    {
        var e = Assert.Throws<InvalidOperationException>(() =>
            CpuParallel.For(8, (s, _) => { if (s > 0) throw new InvalidOperationException("chunk " + s); }, costPerItem: 1e6));
        Assert.That(e!.Message, Does.StartWith("chunk "));
    }

    [Test]
    public void NestedLoopsFinish()
    {
        var hits = new int[64 * 64];
        CpuParallel.For(64, (o0, o1) =>
        {
            for (int o = o0; o < o1; o++)
            {
                int row = o;
                CpuParallel.For(64, (i0, i1) => { for (int i = i0; i < i1; i++) hits[row * 64 + i]++; }, costPerItem: 1e6);
            }
        }, costPerItem: 1e6);
        Assert.That(hits, Is.All.EqualTo(1));
    }
}
