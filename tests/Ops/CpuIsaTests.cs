using MaskBit.Kernels.Cpu;

namespace MaskBit.Tests.Ops;

/// <summary>MASKBIT_ISA parsing, the scoped override, and the cache blocking derived from cache sizes.</summary>
public class CpuIsaTests
{
    [Test]
    public void ParseNamesTheVariableAndValueOnBadInput()
    {
        Assert.That(CpuIsa.Parse(null), Is.EqualTo(CpuIsa.Best));
        Assert.That(CpuIsa.Parse(" "), Is.EqualTo(CpuIsa.Best));
        Assert.That(CpuIsa.Parse("Scalar"), Is.EqualTo(Isa.Scalar));
        var e = Assert.Throws<NotSupportedException>(() => CpuIsa.Parse("sse9"))!;
        Assert.That(e.Message, Is.EqualTo("MASKBIT_ISA=sse9: expected avx512, avx2 or scalar"));
        if (CpuIsa.Best != Isa.Avx512)
            Assert.That(() => CpuIsa.Parse("avx512"), Throws.TypeOf<NotSupportedException>().With.Message.StartsWith("MASKBIT_ISA=avx512: this CPU"));
    }

    [Test]
    public void UseOverridesForTheScopeAndFlowsIntoWorkers()
    {
        var outer = CpuIsa.Current;
        using (CpuIsa.Use(Isa.Scalar))
        {
            Assert.That(CpuIsa.Current, Is.EqualTo(Isa.Scalar));
            var seen = new Isa[4];
            Parallel.For(0, seen.Length, i => seen[i] = CpuIsa.Current);
            Assert.That(seen, Is.All.EqualTo(Isa.Scalar));
            Assert.That(Sgemm.Vectorized, Is.False);
        }
        Assert.That(CpuIsa.Current, Is.EqualTo(outer));
        Assert.That(CpuIsa.Supported, Does.Contain(Isa.Scalar).And.Contain(CpuIsa.Best));
    }

    [Test]
    public void BlockingFitsTheCaches()
    {
        foreach (var caches in new[] { CpuCaches.Zen3, new CpuCaches(48 << 10, 1 << 20, 32 << 20, "Zen 5"), new CpuCaches(32 << 10, 256 << 10, 8 << 20, "Haswell") })
            foreach (int nr in new[] { 16, 32 })
            {
                var b = GemmBlocking.For(nr, caches);
                Assert.That((Sgemm.MR + nr) * b.KC * sizeof(float), Is.LessThanOrEqualTo(caches.L1), $"{caches} NR {nr}: micro-panels exceed L1");
                Assert.That(b.MC * b.KC * sizeof(float), Is.LessThanOrEqualTo(caches.L2 / 2), $"{caches} NR {nr}: A block exceeds half of L2");
                Assert.That(b.MC % Sgemm.MR, Is.Zero);
                Assert.That(b.NC % nr, Is.Zero);
            }
        Assert.That(GemmBlocking.For(16, CpuCaches.Zen3), Is.EqualTo(new GemmBlocking(16, 256, 252, 4096, 512)));
    }
}
