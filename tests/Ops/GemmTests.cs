using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>CpuBackend.Gemm against a float64 reference: odd sizes (edge tiles, K blocks), every transpose
/// combination, batches with broadcast operands, alpha/beta, and beta 0 over a NaN-filled C; on every ISA the CPU
/// supports (AVX-512, AVX2, scalar).</summary>
public class GemmTests
{
    private const double Tolerance = 1e-5;
    private static readonly CpuBackend Cpu = CpuBackend.Instance;

    // (M, N, K): tiny, odd, tile-edge, several K blocks and M blocks, both sides of the small-problem cut, and
    // more columns than Sgemm.InPlaceAMaxColumns (A packed instead of read in place).
    private static readonly (int M, int N, int K)[] Sizes =
    {
        (1, 1, 1), (1, 37, 5), (7, 13, 5), (6, 16, 8), (33, 65, 17), (129, 3, 257), (3, 129, 300),
        (150, 70, 530), (49, 33, 64), (64, 64, 64), (17, 9, 20), (45, 2 * Sgemm.InPlaceAMaxColumns + 37, 33),
    };

    private static IEnumerable<TestCaseData> AllCases()
    {
        foreach (string isa in TestIsas.Names)
            foreach (var (m, n, k) in Sizes)
                foreach (bool ta in new[] { false, true })
                    foreach (bool tb in new[] { false, true })
                        yield return new TestCaseData(isa, m, n, k, ta, tb).SetName($"Gemm_{isa}_{m}x{n}x{k}_{(ta ? "T" : "N")}{(tb ? "T" : "N")}");
    }

    [TestCaseSource(nameof(AllCases))]
    public void MatchesReference(string isa, int m, int n, int k, bool transA, bool transB)
    {
        using var _ = TestIsas.Use(isa);
        Check(new GemmDesc(m, n, k, transA, transB), alpha: 1f, beta: 0f, seed: m * 7919 + n * 31 + k);
    }

    [TestCase(0.5f, 0f)]
    [TestCase(1f, 1f)]
    [TestCase(-1.5f, 0.25f)]
    public void AlphaBeta(float alpha, float beta) => TestIsas.Each(() =>
    {
        Check(new GemmDesc(37, 41, 19), alpha, beta, seed: 1);
        Check(new GemmDesc(130, 70, 600, TransA: true), alpha, beta, seed: 2);
    });

    [Test]
    public void BetaZeroIgnoresNaNInC() => TestIsas.Each(() =>
    {
        Check(new GemmDesc(5, 7, 3), 1f, 0f, seed: 3, nanC: true);
        Check(new GemmDesc(70, 90, 300, TransB: true), 2f, 0f, seed: 4, nanC: true);
    });

    [Test]
    public void ZeroInnerSizeScalesC()
    {
        Check(new GemmDesc(4, 5, 0), 1f, 0.5f, seed: 5);
        Check(new GemmDesc(4, 5, 0), 1f, 0f, seed: 6, nanC: true);
    }

    [TestCase(3, false, false)]
    [TestCase(4, true, false)]
    [TestCase(5, false, true)]
    [TestCase(2, true, true)]
    public void BatchedWithStrides(int batch, bool transA, bool transB) => TestIsas.Each(() =>
    {
        const int m = 23, n = 45, k = 31;
        Check(new GemmDesc(m, n, k, transA, transB, batch, m * k, k * n, m * n), 1f, 0f, seed: 10 + batch);
        // B broadcast over the batch (a shared weight), then A broadcast.
        Check(new GemmDesc(m, n, k, transA, transB, batch, m * k, 0, m * n), 1f, 0.5f, seed: 20 + batch);
        Check(new GemmDesc(m, n, k, transA, transB, batch, 0, k * n, m * n), 0.75f, 0f, seed: 30 + batch);
        // Large enough per item to take the packed path, with padding between items (strides > item size).
        Check(new GemmDesc(70, 66, 90, transA, transB, batch, 70 * 90 + 5, 66 * 90 + 3, 70 * 66 + 11), 1f, 0f, seed: 40 + batch);
    });

    [Test]
    public void LargeSquareAcrossThreads() => TestIsas.Each(() => Check(new GemmDesc(300, 310, 520), 1f, 0f, seed: 50));

    /// <summary>Runs Gemm on buffers placed at a non-zero offset and compares every batch item of C (and the
    /// untouched gaps between them) with the float64 reference.</summary>
    private static void Check(GemmDesc d, float alpha, float beta, int seed, bool nanC = false)
    {
        const int offset = 3;
        var rng = new Random(seed);
        long lenA = (d.Batch - 1) * d.StrideA + (long)d.M * d.K, lenB = (d.Batch - 1) * d.StrideB + (long)d.K * d.N;
        long lenC = (d.Batch - 1) * d.StrideC + (long)d.M * d.N;
        float[] a = Random(rng, offset + lenA), b = Random(rng, offset + lenB);
        float[] c0 = nanC ? Filled(offset + lenC, float.NaN) : Random(rng, offset + lenC);

        using var sa = Cpu.Allocate(a.Length); using var sb = Cpu.Allocate(b.Length); using var sc = Cpu.Allocate(c0.Length);
        Cpu.Upload(a, new Buf(sa, 0)); Cpu.Upload(b, new Buf(sb, 0)); Cpu.Upload(c0, new Buf(sc, 0));
        Cpu.Gemm(d, new Buf(sa, offset), new Buf(sb, offset), new Buf(sc, offset), alpha, beta);
        var actual = new float[c0.Length];
        Cpu.Download(new Buf(sc, 0), actual);

        var expected = c0.Select(v => (double)v).ToArray();
        for (int bt = 0; bt < d.Batch; bt++)
            Reference(d, a, offset + bt * d.StrideA, b, offset + bt * d.StrideB, expected, offset + bt * d.StrideC, alpha, beta);
        var written = new bool[c0.Length];
        for (int bt = 0; bt < d.Batch; bt++)
            for (long i = 0; i < (long)d.M * d.N; i++) written[offset + bt * d.StrideC + i] = true;

        var got = new List<double>(); var want = new List<double>();
        for (int i = 0; i < c0.Length; i++)
        {
            if (written[i]) { got.Add(actual[i]); want.Add(expected[i]); }
            else Assert.That(actual[i], Is.EqualTo(c0[i]).Or.NaN, $"{d}: element {i} outside C was modified");
        }
        double err = Compare.ScaledError(got.ToArray(), want.ToArray());
        Assert.That(err, Is.LessThanOrEqualTo(Tolerance), $"{d} alpha={alpha} beta={beta}: scaled error {err:E2}");
    }

    private static void Reference(GemmDesc d, float[] a, long ao, float[] b, long bo, double[] c, long co, float alpha, float beta)
    {
        for (int i = 0; i < d.M; i++)
            for (int j = 0; j < d.N; j++)
            {
                double s = 0;
                for (int p = 0; p < d.K; p++)
                    s += (double)a[ao + (d.TransA ? (long)p * d.M + i : (long)i * d.K + p)]
                         * b[bo + (d.TransB ? (long)j * d.K + p : (long)p * d.N + j)];
                long ci = co + (long)i * d.N + j;
                c[ci] = alpha * s + (beta == 0f ? 0 : beta * c[ci]);
            }
    }

    private static float[] Random(Random rng, long n)
    {
        var x = new float[n];
        for (long i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    private static float[] Filled(long n, float v)
    {
        var x = new float[n];
        Array.Fill(x, v);
        return x;
    }
}
