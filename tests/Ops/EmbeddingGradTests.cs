using MaskBit.Autograd;
using MaskBit.Tests.Support;
using Nn = MaskBit.Autograd.Nn;

namespace MaskBit.Tests.Ops;

/// <summary>Embedding lookup against a float64 gather: values and finite-difference weight gradients with
/// repeated indices, plus index validation.</summary>
public class EmbeddingGradTests
{
    [TestCase(6, 5, new[] { 2, 4 })]       // narrow rows
    [TestCase(9, 70, new[] { 11 })]        // wide enough that the backward splits the dim across threads
    public void EmbeddingMatchesReference(int num, int dim, int[] indexShape)
    {
        var rng = new Random(num + dim);
        int count = (int)ShapeUtil.Numel(indexShape);
        // Every index repeats: row 1 appears at least twice, and the others come from a short range.
        var indices = Enumerable.Range(0, count).Select(i => i % 3 == 0 ? 1 : rng.Next(num)).ToArray();
        var idx = Tensor.FromInts(indices, indexShape);
        var w = GradCheck.RandomValues(rng, num * dim);
        GradCheck.Check(
            new[] { (w, new[] { num, dim }) },
            t =>
            {
                var y = F.Embedding(idx, t[0]);
                Assert.That(y.Shape, Is.EqualTo(indexShape.Append(dim).ToArray()));
                return y;
            },
            r => indices.SelectMany(i => r[0].Skip(i * dim).Take(dim)).ToArray());
    }

    [TestCase(-1)]
    [TestCase(10)]
    public void BadIndexThrowsNamingIndexAndTableSize(int bad)
    {
        var w = Tensor.Zeros(10, 3);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => F.Embedding(Tensor.FromInts(new[] { 0, 4, bad, 9 }, 2, 2), w));
        Assert.That(e!.Message, Does.Contain($"index {bad}").And.Contain("position 2").And.Contain("10 rows"));
    }

    [Test]
    public void ModuleHasTorchNameAndStandardNormalInit()
    {
        var emb = new Nn.Embedding(200, 50, new Random(1));
        Assert.That(emb.NamedParameters().Select(p => p.Name), Is.EqualTo(new[] { "weight" }));
        var values = emb.Weight.ToArray();
        double mean = values.Average(), std = Math.Sqrt(values.Select(v => (v - mean) * (v - mean)).Average());
        Assert.That(mean, Is.EqualTo(0).Within(0.03));
        Assert.That(std, Is.EqualTo(1).Within(0.03));
        Assert.That(emb.Forward(Tensor.FromInts(new[] { 3, 199 }, 2)).Shape, Is.EqualTo(new[] { 2, 50 }));
    }
}
