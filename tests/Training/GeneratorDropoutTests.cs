using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Tests.Training;

/// <summary>The generator's dropout (F.Dropout / Nn.Dropout): inverted scaling, seeded masks, gradient g·mask,
/// identity in eval mode or at p = 0.</summary>
public class GeneratorDropoutTests
{
    [Test]
    public void TrainingDropoutZeroesAboutPAndScalesTheRestAndRepeatsForASeed()
    {
        var x = Tensor.FromArray(Enumerable.Range(0, 4001).Select(i => 1f + i % 7).ToArray(), 4001);
        var y = F.Dropout(x, 0.25f, training: true, new Rng(5)).ToArray();
        var again = F.Dropout(x, 0.25f, training: true, new Rng(5)).ToArray();
        Assert.That(again, Is.EqualTo(y));
        var xs = x.ToArray();
        int dropped = 0;
        for (int i = 0; i < y.Length; i++)
        {
            if (y[i] == 0f) dropped++;
            else Assert.That(y[i], Is.EqualTo(xs[i] * (1f / 0.75f)), $"element {i}");   // torch multiplies by 1/(1 − p)
        }
        Assert.That(dropped / 4001.0, Is.EqualTo(0.25).Within(0.03));
    }

    [Test]
    public void GradientIsTheUpstreamGradientThroughTheSameMask()
    {
        var x = Tensor.FromArray(Enumerable.Range(0, 37).Select(i => 0.1f * i - 1f).ToArray(), 37);
        x.RequiresGrad = true;
        var y = F.Dropout(x, 0.5f, training: true, new Rng(9));
        var upstream = Enumerable.Range(0, 37).Select(i => (float)Math.Sin(i)).ToArray();
        y.Backward(Tensor.FromArray(upstream, 37));
        var yv = y.ToArray();
        var xv = x.ToArray();
        var grad = x.Grad!.ToArray();
        for (int i = 0; i < 37; i++)
        {
            // Reference in float64: mask·scale recovered from y / x where x ≠ 0.
            double keep = xv[i] == 0 ? (grad[i] == 0 ? 0 : 2) : yv[i] / (double)xv[i];
            Assert.That(grad[i], Is.EqualTo(upstream[i] * keep).Within(1e-6), $"element {i}");
        }
    }

    [Test]
    public void EvalModeAndZeroProbabilityPassTheInputThrough()
    {
        var x = Tensor.FromArray(new[] { 1f, 2f, 3f }, 3);
        var module = new Dropout(0.3f) { Generator = new Rng(1) };
        module.Eval();
        Assert.That(module.Forward(x).ToArray(), Is.EqualTo(x.ToArray()));
        Assert.That(F.Dropout(x, 0f, training: true, null).ToArray(), Is.EqualTo(x.ToArray()));
        Assert.Throws<InvalidOperationException>(() => F.Dropout(x, 0.3f, training: true, null));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(1f));
    }
}
