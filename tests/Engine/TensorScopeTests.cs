using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Autograd.Optim;

namespace MaskBit.Tests.Engine;

public class TensorScopeTests
{
    [Test]
    public void ReleasesIntermediatesKeepsParametersGradsAndKeptTensors()
    {
        var lin = new Linear(8, 4, rng: new Random(1));
        var opt = new AdamW(lin.Parameters(), lr: 1e-3);
        Tensor kept, dropped;
        using (var scope = TensorScope.Begin())
        {
            var x = Tensor.Ones(3, 8);
            var y = lin.Forward(x).Silu();
            var loss = y.Mean();
            loss.Backward();
            opt.Step();
            dropped = y;
            kept = scope.Keep(loss);
            // The forward's intermediates; the backward's gradients went back to the pool as it ran.
            Assert.That(scope.OwnedCount, Is.GreaterThanOrEqualTo(3));
        }
        Assert.Throws<InvalidOperationException>(() => dropped.ToArray());
        Assert.DoesNotThrow(() => kept.Item());
        Assert.DoesNotThrow(() => lin.Weight.ToArray());
        Assert.That(lin.Weight.Grad!.ToArray(), Has.Length.EqualTo(32));
        Assert.That(opt.ExpAvgOf(lin.Weight)!.ToArray(), Has.Length.EqualTo(32));
    }

    [Test]
    public void SteadyStateStepsReuseBuffersInsteadOfAllocating()
    {
        var conv = new Conv2d(8, 8, 3, padding: 1, rng: new Random(2));
        var norm = new GroupNorm(4, 8, 1e-6f);
        var x = Tensor.FromArray(Enumerable.Range(0, 2 * 8 * 32 * 32).Select(i => (float)Math.Sin(i)).ToArray(), 2, 8, 32, 32);
        long Step()
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            using (TensorScope.Begin())
            {
                var y = norm.ForwardSilu(conv.Forward(x));
                y.Square().Mean().Backward();
            }
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        Step(); Step();
        long steady = Step();
        long tensorBytes = 2L * 8 * 32 * 32 * sizeof(float);
        // A step creates well over ten map-sized tensors; with pooled reuse only bookkeeping objects are new.
        Assert.That(steady, Is.LessThan(3 * tensorBytes), $"a steady-state step allocated {steady} bytes");
    }

    [Test]
    public void ScopesNestAndMustCloseInOrder()
    {
        using var outer = TensorScope.Begin();
        Tensor moved;
        using (var inner = TensorScope.Begin())
        {
            moved = inner.Keep(Tensor.Ones(2));
        }
        Assert.That(moved.ToArray(), Is.EqualTo(new[] { 1f, 1f }), "kept tensors move to the enclosing scope");
        Assert.That(outer.OwnedCount, Is.EqualTo(1));
    }
}
