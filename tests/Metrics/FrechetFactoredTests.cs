using MaskBit.Models.Metrics;

namespace MaskBit.Tests.Metrics;

public class FrechetFactoredTests
{
    private static GaussianStatistics Statistics(Random rng, int rows, int dim, double shift)
    {
        var moments = new FeatureMoments(dim);
        for (int r = 0; r < rows; r++) moments.Add(Enumerable.Range(0, dim).Select(j => rng.NextDouble() * (1 + j % 3) + shift).ToArray());
        return moments.ToStatistics();
    }

    [Test]
    public void FewRowsUseTheFactorAndAgreeWithTheFullComputation()
    {
        var rng = new Random(7);
        const int dim = 24;
        var few = Statistics(rng, 5, dim, 0);          // rank 4: factored
        var otherFew = Statistics(rng, 3, dim, 0.3);
        var many = Statistics(rng, 60, dim, 0.1);      // full rank: no factor
        Assert.That(few.CovarianceFactor, Has.Length.EqualTo(5 * dim));
        Assert.That(many.CovarianceFactor, Is.Null);

        foreach (var (a, b) in new[] { (few, many), (many, few), (few, otherFew) })
        {
            double full = Frechet.Distance(a.Mu, a.Sigma, b.Mu, b.Sigma);
            double factored = Frechet.Distance(a, b);
            Assert.That(factored, Is.EqualTo(full).Within(1e-6 * Math.Abs(full)));
        }
        Assert.That(Frechet.Distance(few, few), Is.EqualTo(0).Within(1e-6), "a distribution is at distance 0 from itself (up to the square root of rounding noise)");
    }
}
