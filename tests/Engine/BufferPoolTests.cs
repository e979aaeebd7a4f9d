using MaskBit.Kernels.Cpu;

namespace MaskBit.Tests.Engine;

public class BufferPoolTests
{
    private const int Floats = 1024;   // 4 KB per array
    private const long ArrayBytes = Floats * sizeof(float);

    [Test]
    public void ReturnedArraysAreRentedAgain()
    {
        var pool = new BufferPool<float>(highWaterBytes: 1 << 20);
        var a = pool.Rent(Floats);
        pool.Return(a);
        Assert.That(pool.PooledBytes, Is.EqualTo(ArrayBytes));
        Assert.That(pool.Rent(Floats), Is.SameAs(a));
        Assert.That(pool.PooledBytes, Is.Zero);
    }

    [Test]
    public void ReturnsBeyondTheHighWaterMarkDropTheLeastRecentlyRentedSizes()
    {
        const long mark = 9 * ArrayBytes;   // the eight arrays below fit, a ninth does not
        var pool = new BufferPool<float>(highWaterBytes: mark);
        // Four sizes, rented in this order; the first is then rented again, so the second is the least recent.
        var sizes = new[] { Floats, Floats + 1, Floats + 2, Floats + 3 };
        var arrays = sizes.Select(n => Enumerable.Range(0, 2).Select(_ => pool.Rent(n)).ToArray()).ToArray();
        var again = pool.Rent(sizes[0]);
        foreach (var pair in arrays) foreach (var a in pair) pool.Return(a);
        Assert.That(pool.PooledBytes, Is.GreaterThan(8 * ArrayBytes), "all eight kept");
        pool.Return(again);   // over the mark: evicts down to 7/8 of it, least recently rented size first

        Assert.That(pool.PooledBytes, Is.LessThanOrEqualTo(mark / 8 * 7));
        Assert.That(pool.Rent(sizes[1]), Is.Not.SameAs(arrays[1][0]).And.Not.SameAs(arrays[1][1]), "the least recently rented size goes first");
        Assert.That(pool.Rent(sizes[0]), Is.SameAs(again).Or.SameAs(arrays[0][0]).Or.SameAs(arrays[0][1]), "the most recently rented size stays");
    }

    [Test]
    public void AnArrayLargerThanTheMarkIsNotKept()
    {
        var pool = new BufferPool<float>(highWaterBytes: ArrayBytes);
        pool.Return(pool.Rent(2 * Floats));
        Assert.That(pool.PooledBytes, Is.Zero);
    }

    [Test]
    public void HalfAMarkDroppedMakesTheNextAllocatingRentCollectFirst()
    {
        var pool = new BufferPool<float>(highWaterBytes: 4 * ArrayBytes);
        pool.Return(pool.Rent(Floats));
        pool.Trim();
        Assert.That(pool.DroppedBytes, Is.EqualTo(ArrayBytes));
        pool.Rent(Floats + 1);
        Assert.That(pool.Collections, Is.Zero, "a quarter of the mark dropped: no collection");

        pool.Return(pool.Rent(5 * Floats));   // larger than the mark: dropped at once
        Assert.That(pool.DroppedBytes, Is.EqualTo(6 * ArrayBytes));
        pool.Return(pool.Rent(Floats + 2));
        Assert.That(pool.Collections, Is.EqualTo(1));
        Assert.That(pool.DroppedBytes, Is.Zero);
        pool.Rent(Floats + 2);
        Assert.That(pool.Collections, Is.EqualTo(1), "a rent served from the pool allocates nothing and collects nothing");
    }

    [Test]
    public void TrimKeepsAtMostTheGivenBytes()
    {
        var pool = new BufferPool<float>(highWaterBytes: 1 << 20);
        var arrays = Enumerable.Range(0, 6).Select(i => pool.Rent(Floats + i)).ToList();
        foreach (var a in arrays) pool.Return(a);
        long before = pool.PooledBytes;

        long dropped = pool.Trim(keepBytes: 2 * ArrayBytes + 100);
        Assert.That(pool.PooledBytes, Is.LessThanOrEqualTo(2 * ArrayBytes + 100));
        Assert.That(dropped, Is.EqualTo(before - pool.PooledBytes));
        Assert.That(pool.Rent(Floats + 5), Is.SameAs(arrays[5]), "the most recently rented sizes are kept");

        pool.Trim();
        Assert.That(pool.PooledBytes, Is.Zero);
    }

    [Test]
    public void TrimAllEmptiesTheSharedPools()
    {
        const int odd = 64 * 1021;   // a size no other test uses
        var storage = (CpuStorage)CpuBackend.Instance.Allocate(odd);
        var array = storage.Floats;
        storage.Dispose();
        Assert.That(BufferPool<float>.Shared.Rent(odd), Is.SameAs(array), "a disposed storage's array is pooled");
        BufferPool<float>.Shared.Return(array);

        BufferPool.Trim();
        Assert.That(BufferPool<float>.Shared.Rent(odd), Is.Not.SameAs(array));
    }

    [Test]
    public void AnIdleLimitHoldsWhileItsScopeIsOpenAndOverlappingScopesRestoreTheMark()
    {
        var pool = new BufferPool<float>(highWaterBytes: 8 * ArrayBytes);
        Assert.That(BufferPool.IdleLimitBytes, Is.EqualTo(long.MaxValue), "no limit is open outside a scope");
        var outer = BufferPool.LimitIdleBytes(4 * ArrayBytes);
        var inner = BufferPool.LimitIdleBytes(2 * ArrayBytes);
        Assert.That(pool.EffectiveHighWaterBytes, Is.EqualTo(2 * ArrayBytes), "the lowest open limit");
        pool.Return(pool.Rent(3 * Floats));
        Assert.That(pool.PooledBytes, Is.Zero, "an array beyond the limit is dropped");

        outer.Dispose();   // closed out of order: the inner limit still holds
        Assert.That(pool.EffectiveHighWaterBytes, Is.EqualTo(2 * ArrayBytes));
        inner.Dispose();
        inner.Dispose();
        Assert.That(pool.EffectiveHighWaterBytes, Is.EqualTo(8 * ArrayBytes), "the pool's own mark again");
        Assert.That(BufferPool.IdleLimitBytes, Is.EqualTo(long.MaxValue));
        pool.Return(pool.Rent(3 * Floats));
        Assert.That(pool.PooledBytes, Is.EqualTo(3 * ArrayBytes));
    }

    [Test]
    public void OpeningAnIdleLimitDropsWhatTheSharedPoolsHoldBeyondIt()
    {
        const int odd = 64 * 1019;   // a size no other test uses
        BufferPool<float>.Shared.Return(BufferPool<float>.Shared.Rent(odd));
        Assert.That(BufferPool<float>.Shared.PooledBytes, Is.GreaterThanOrEqualTo(odd * sizeof(float)));
        using (BufferPool.LimitIdleBytes(0))
            Assert.That(BufferPool<float>.Shared.PooledBytes, Is.Zero);
    }
}
