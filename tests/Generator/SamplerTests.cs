using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Generator;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Generator;

public class SamplerTests
{
    private static string SamplerCase => Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", "sampler");

    private static float[] Draw(IRandomSource source)
    {
        var v = new float[300];
        source.Uniform(v.AsSpan(0, 100));
        source.CategoricalUniform(v.AsSpan(100, 100));
        source.Gumbel(v.AsSpan(200, 100));
        return v;
    }

    [Test]
    public void SeededSourceRepeatsItsDrawsForASeedAndOnlyForIt()
    {
        var a = Draw(new SeededRandomSource(42));
        Assert.That(Draw(new SeededRandomSource(42)), Is.EqualTo(a));
        Assert.That(Draw(new SeededRandomSource(43)), Is.Not.EqualTo(a));
        Assert.That(a.Take(200), Has.All.InRange(0f, 0.99999995f), "uniforms lie in [0, 1)");
        Assert.That(a.Skip(200), Has.All.Matches<float>(float.IsFinite), "Gumbel values are finite");
    }

    [Test]
    public void SeededSamplingReproducesAnImageAndAnotherSeedChangesIt()
    {
        var (sampler, _) = SamplerGolden.Load(SamplerCase);
        var options = new SamplerOptions { NumSteps = 4, GuidanceScale = 2.0, MaskSchedule = MaskSchedule.Arccos };
        int[] labels = { 3, 8 };
        var first = sampler.Sample(labels, options, new SeededRandomSource(7));
        var again = sampler.Sample(labels, options, new SeededRandomSource(7));
        var other = sampler.Sample(labels, options, new SeededRandomSource(8));
        Assert.That(first.Tokens.Shape, Is.EqualTo(new[] { 2, 16, 2 }));
        Assert.That(first.CombinedTokens.Shape, Is.EqualTo(new[] { 2, 16 }));
        Assert.That(first.Images.Shape, Is.EqualTo(new[] { 2, 3, 32, 32 }));
        Assert.That(again.Tokens.ToIntArray(), Is.EqualTo(first.Tokens.ToIntArray()));
        Assert.That(again.Images.ToArray(), Is.EqualTo(first.Images.ToArray()));
        Assert.That(other.Tokens.ToIntArray(), Is.Not.EqualTo(first.Tokens.ToIntArray()));
        Assert.That(first.Tokens.ToIntArray(), Has.All.InRange(0, 15), "every group is filled after the last step");
    }

    [Test]
    public void StepsReleaseTheirTensorsToTheEnclosingScope()
    {
        var (sampler, _) = SamplerGolden.Load(SamplerCase);
        using var scope = TensorScope.Begin();
        var result = sampler.Sample(new[] { 1 }, new SamplerOptions { NumSteps = 3 }, new SeededRandomSource(1));
        // Only the three returned tensors outlive the sampler's own scopes.
        Assert.That(scope.OwnedCount, Is.EqualTo(3));
        Assert.That(result.Images.ToArray(), Has.All.Matches<float>(float.IsFinite));
    }

    [Test]
    public void InverseCdfPicksTheFirstCategoryWhoseCumulativeMassExceedsTheDraw()
    {
        float[] p = { 0.25f, 0f, 0.5f, 0.25f };
        Assert.That(SamplerMath.InverseCdf(p, 0f), Is.EqualTo(0));
        Assert.That(SamplerMath.InverseCdf(p, 0.2499f), Is.EqualTo(0));
        Assert.That(SamplerMath.InverseCdf(p, 0.25f), Is.EqualTo(2), "a zero-probability category is never drawn");
        Assert.That(SamplerMath.InverseCdf(p, 0.76f), Is.EqualTo(3));
        Assert.That(SamplerMath.InverseCdf(new[] { 2f, 2f }, 0.6f), Is.EqualTo(1), "the CDF is normalised by the total");
    }

    [Test]
    public void GuidanceAnnealingStartsWithoutGuidance()
    {
        foreach (var annealing in new[] { GuidanceAnnealing.Linear, GuidanceAnnealing.Cosine })
            Assert.That(Sampler.GuidanceScale(new SamplerOptions { GuidanceScale = 3, GuidanceAnnealing = annealing, NumSteps = 6 }, 0), Is.EqualTo(0f));
        Assert.That(Sampler.GuidanceScale(new SamplerOptions { GuidanceScale = 3, NumSteps = 6 }, 0), Is.EqualTo(3f));
        Assert.That(Sampler.GuidanceScale(new SamplerOptions { GuidanceScale = 3, GuidanceAnnealing = GuidanceAnnealing.Linear, NumSteps = 6 }, 3), Is.EqualTo(1.5f));
    }

    [Test]
    public void FactorizationRejectsUnevenSplitsAndOutOfRangeValues()
    {
        Assert.Throws<ArgumentException>(() => Factorization.Split(new[] { 1 }, 1024, 3));
        Assert.Throws<ArgumentException>(() => Factorization.Split(new[] { 1024 }, 1024, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Factorization.Combine(Tensor.FromInts(new[] { 32, 0 }, 1, 2), 1024, 2));
        Assert.That(Factorization.Combine(Tensor.FromInts(Factorization.Split(new[] { 1023, 37 }, 1024, 2), 2, 2), 1024, 2).ToIntArray(), Is.EqualTo(new[] { 1023, 37 }));
    }

    [Test]
    public void MaskCountFollowsTorchClampWhenTheBoundsCross()
    {
        Assert.That(Masking.TokensToMask(0.5f, 32, 32), Is.EqualTo((16f, 16)));
        Assert.That(Masking.TokensToMask(1e-6f, 32, 5), Is.EqualTo((0f, 1)));
        Assert.That(Masking.TokensToMask(1e-6f, 32, 1).Count, Is.EqualTo(0), "torch.clamp lets the upper bound win");
        Assert.That(Masking.GetMaskingRatio(2 / 3.0, MaskSchedule.Cosine), Is.EqualTo(0.49999997f), "float32 evaluation (README trap 13)");
    }
}
