using MaskBit.Models.Interop;
using MaskBit.Models.Metrics;

namespace MaskBit.Tests.Metrics;

public class SymmetricEigenTests
{
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(7)]
    [TestCase(33)]
    public void DecompositionReconstructsRandomSpdMatrix(int n)
    {
        var a = RandomSpd(n, new Random(n));
        var (values, vectors) = SymmetricEigen.Decompose(a, n);
        var v = vectors!;
        double norm = Math.Sqrt(a.Sum(x => x * x));
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double rebuilt = 0, gram = 0;
                for (int k = 0; k < n; k++)
                {
                    rebuilt += values[k] * v[k * n + i] * v[k * n + j];
                    gram += v[i * n + k] * v[j * n + k];
                }
                Assert.That(rebuilt, Is.EqualTo(a[i * n + j]).Within(1e-13 * norm), $"A[{i},{j}]");
                Assert.That(gram, Is.EqualTo(i == j ? 1.0 : 0.0).Within(1e-13), $"VVᵀ[{i},{j}]");
            }
        Assert.That(values.All(x => x > 0), "SPD eigenvalues are positive");
    }

    [Test]
    public void DiagonalAndRepeatedEigenvalues()
    {
        var (diag, _) = SymmetricEigen.Decompose([3, 0, 0, 0, -1, 0, 0, 0, 2], 3, computeVectors: false);
        Assert.That(diag, Is.EqualTo(new[] { -1.0, 2.0, 3.0 }), "ascending");

        // 2·I + 𝟙𝟙ᵀ (n = 5): eigenvalue 7 once and 2 four times.
        const int n = 5;
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) a[i * n + j] = (i == j ? 2 : 0) + 1;
        var (values, _) = SymmetricEigen.Decompose(a, n, computeVectors: false);
        Array.Sort(values);
        Assert.That(values, Is.EqualTo(new[] { 2.0, 2, 2, 2, 7 }).Within(1e-14));
    }

    [Test]
    public void SymmetricSqrtSquaresBack()
    {
        const int n = 20;
        var a = RandomSpd(n, new Random(5));
        var s = Frechet.SymmetricSqrt(a, n);
        var ss = MatMul(s, s, n);
        double norm = a.Max(Math.Abs);
        for (int i = 0; i < n * n; i++) Assert.That(ss[i], Is.EqualTo(a[i]).Within(1e-12 * norm));
    }

    internal static double[] RandomSpd(int n, Random rng, int rank = -1)
    {
        if (rank < 0) rank = n + 3;
        var g = new double[n * rank];
        for (int i = 0; i < g.Length; i++) g[i] = rng.NextDouble() * 2 - 1;
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < rank; k++) a[i * n + j] += g[i * rank + k] * g[j * rank + k] / rank;
        return a;
    }

    internal static double[] MatMul(double[] x, double[] y, int n)
    {
        var r = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++)
                for (int j = 0; j < n; j++) r[i * n + j] += x[i * n + k] * y[k * n + j];
        return r;
    }
}

public class FrechetTests
{
    [TestCase(4, 4)]
    [TestCase(17, 17)]
    [TestCase(12, 5)] // both covariances singular (rank 5)
    public void TraceSqrtmMatchesDenmanBeaversOnTheProduct(int n, int rank)
    {
        var rng = new Random(n * 31 + rank);
        var a = SymmetricEigenTests.RandomSpd(n, rng, rank);
        var b = SymmetricEigenTests.RandomSpd(n, rng, rank);
        double trace = Frechet.TraceSqrtmProduct(a, b, n);
        if (rank == n)
        {
            // The general (non-symmetric) principal square root of A·B, as scipy's sqrtm computes it.
            var root = DenmanBeaversSqrt(SymmetricEigenTests.MatMul(a, b, n), n);
            double expected = 0;
            for (int i = 0; i < n; i++) expected += root[i * n + i];
            Assert.That(trace, Is.EqualTo(expected).Within(1e-10 * Math.Abs(expected)));
        }
        else
        {
            // Rank-deficient: no iteration converges reliably, but √·√ of the symmetric form must be finite and
            // bounded by Cauchy–Schwarz: tr sqrtm(AB) ≤ sqrt(tr A · tr B).
            double trA = 0, trB = 0;
            for (int i = 0; i < n; i++) { trA += a[i * n + i]; trB += b[i * n + i]; }
            Assert.That(double.IsFinite(trace) && trace > 0 && trace <= Math.Sqrt(trA * trB) * (1 + 1e-12), $"trace {trace}");
        }
    }

    [Test]
    public void CommutingDiagonalCovariances()
    {
        double[] a = [4, 0, 0, 0, 9, 0, 0, 0, 0.25], b = [1, 0, 0, 0, 4, 0, 0, 0, 16];
        Assert.That(Frechet.TraceSqrtmProduct(a, b, 3), Is.EqualTo(2 + 6 + 2).Within(1e-14));
        // FID = ‖Δμ‖² + Σ (√a − √b)² for commuting covariances.
        double fid = Frechet.Distance([0, 0, 0], a, [1, 2, 0], b);
        Assert.That(fid, Is.EqualTo(5 + 1 + 1 + 3.5 * 3.5).Within(1e-12));
    }

    [Test]
    public void IdenticalStatisticsGiveZero()
    {
        const int n = 40;
        var rng = new Random(3);
        var sigma = SymmetricEigenTests.RandomSpd(n, rng);
        var mu = Enumerable.Range(0, n).Select(_ => rng.NextDouble()).ToArray();
        double trace = Enumerable.Range(0, n).Sum(i => sigma[i * n + i]);
        Assert.That(Math.Abs(Frechet.Distance(mu, sigma, mu, sigma)), Is.LessThan(1e-12 * trace));

        var singular = SymmetricEigenTests.RandomSpd(n, rng, rank: 10);
        double traceSingular = Enumerable.Range(0, n).Sum(i => singular[i * n + i]);
        Assert.That(Math.Abs(Frechet.Distance(mu, singular, mu, singular)), Is.LessThan(1e-6 * traceSingular));
    }

    [Test]
    public void FeatureMomentsMatchTwoPassCovariance()
    {
        const int dim = 6, rows = 25;
        var rng = new Random(11);
        var data = Enumerable.Range(0, rows).Select(_ => Enumerable.Range(0, dim).Select(_ => rng.NextDouble() * 3 + 5).ToArray()).ToArray();
        var moments = new FeatureMoments(dim);
        foreach (var row in data) moments.Add(row);
        var stats = moments.ToStatistics();
        for (int i = 0; i < dim; i++)
        {
            double mi = data.Average(r => r[i]);
            Assert.That(stats.Mu[i], Is.EqualTo(mi).Within(1e-13));
            for (int j = 0; j < dim; j++)
            {
                double mj = data.Average(r => r[j]);
                double cov = data.Sum(r => (r[i] - mi) * (r[j] - mj)) / (rows - 1);
                Assert.That(stats.Sigma[i * dim + j], Is.EqualTo(cov).Within(1e-12));
            }
        }
    }

    [Test]
    public void LoadsReferenceStatisticsFromNpz()
    {
        string path = Path.Combine(Path.GetTempPath(), $"fid_stats_{Guid.NewGuid():N}.npz");
        try
        {
            double[] mu = [1, 2], sigma = [2, 0.5, 0.5, 1];
            Npy.WriteNpz(path, [new("mu", Float64(mu, 2)), new("sigma", Float64(sigma, 2, 2))]);
            var stats = ReferenceStatistics.Load(path, network: null);
            Assert.That(stats.Dim, Is.EqualTo(2));
            Assert.That(stats.Mu, Is.EqualTo(mu));
            Assert.That(stats.Sigma, Is.EqualTo(sigma));

            Npy.WriteNpz(path, [new("mu", Float64(mu, 2))]);
            Assert.That(Assert.Throws<InvalidDataException>(() => ReferenceStatistics.Load(path, network: null))!.Message, Does.Contain(path).And.Contain("'mu' and 'sigma'"));
        }
        finally { File.Delete(path); }
    }

    private static NpyArray Float64(double[] values, params int[] shape) =>
        new(NpyType.Float64, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    private static double[] DenmanBeaversSqrt(double[] m, int n)
    {
        var y = (double[])m.Clone();
        var z = new double[n * n];
        for (int i = 0; i < n; i++) z[i * n + i] = 1;
        for (int iter = 0; iter < 100; iter++)
        {
            var yInv = Inverse(y, n);
            var zInv = Inverse(z, n);
            double change = 0;
            for (int i = 0; i < n * n; i++)
            {
                double ny = 0.5 * (y[i] + zInv[i]);
                change = Math.Max(change, Math.Abs(ny - y[i]));
                y[i] = ny;
                z[i] = 0.5 * (z[i] + yInv[i]);
            }
            if (change < 1e-15 * y.Max(Math.Abs)) break;
        }
        return y;
    }

    /// <summary>Gauss–Jordan with partial pivoting.</summary>
    private static double[] Inverse(double[] m, int n)
    {
        var a = (double[])m.Clone();
        var inv = new double[n * n];
        for (int i = 0; i < n; i++) inv[i * n + i] = 1;
        for (int col = 0; col < n; col++)
        {
            int pivot = col;
            for (int r = col + 1; r < n; r++) if (Math.Abs(a[r * n + col]) > Math.Abs(a[pivot * n + col])) pivot = r;
            for (int k = 0; k < n; k++)
            {
                (a[col * n + k], a[pivot * n + k]) = (a[pivot * n + k], a[col * n + k]);
                (inv[col * n + k], inv[pivot * n + k]) = (inv[pivot * n + k], inv[col * n + k]);
            }
            double d = a[col * n + col];
            for (int k = 0; k < n; k++) { a[col * n + k] /= d; inv[col * n + k] /= d; }
            for (int r = 0; r < n; r++)
            {
                if (r == col) continue;
                double f = a[r * n + col];
                for (int k = 0; k < n; k++) { a[r * n + k] -= f * a[col * n + k]; inv[r * n + k] -= f * inv[col * n + k]; }
            }
        }
        return inv;
    }
}

public class TokenizerEvaluatorTests
{
    [Test]
    public void IdenticalImagesAndUniformCodebook()
    {
        var rng = new Random(1);
        var data = Enumerable.Range(0, 2 * 3 * 8 * 7).Select(_ => (float)rng.NextDouble()).ToArray();
        var images = new ImageBatch(data, 2, 3, 8, 7);
        var ev = new TokenizerEvaluator(TokenizerMetric.Mae | TokenizerMetric.Mse | TokenizerMetric.Psnr | TokenizerMetric.Ssim
                                        | TokenizerMetric.CodebookUsage | TokenizerMetric.CodebookEntropy, numCodebookEntries: 8);
        ev.Update(images, images, [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]);
        var r = ev.Result();
        Assert.That(r["MAE"], Is.Zero);
        Assert.That(r["MSE"], Is.Zero);
        Assert.That(r["PSNR"], Is.EqualTo(100).Within(1e-12));
        Assert.That(r["SSIM"], Is.EqualTo(1).Within(1e-12));
        Assert.That(r["CodebookUsage"], Is.EqualTo(1));
        Assert.That(r["CodebookEntropy"], Is.EqualTo(3).Within(1e-6));
    }

    [Test]
    public void PsnrIsAveragedPerImage()
    {
        // Image 0 off by 0.1 everywhere, image 1 by 0.01: PSNR 20 and 40 → mean 30 (not the PSNR of the mean MSE).
        var real = new ImageBatch(new float[2 * 3 * 6 * 6], 2, 3, 6, 6);
        var fakeData = new float[real.Data.Length];
        for (int i = 0; i < fakeData.Length; i++) fakeData[i] = i < fakeData.Length / 2 ? 0.1f : 0.01f;
        var ev = new TokenizerEvaluator(TokenizerMetric.Psnr);
        ev.Update(real, real with { Data = fakeData });
        Assert.That(ev.Result()["PSNR"], Is.EqualTo(30).Within(1e-5));
    }

    [Test]
    public void InceptionScoreBounds()
    {
        const int classes = 10, n = 4;
        var uniform = new InceptionScoreAccumulator(classes);
        for (int i = 0; i < n; i++) uniform.Add(new double[classes]);
        Assert.That(uniform.Result(), Is.EqualTo(1).Within(1e-12));

        var confident = new InceptionScoreAccumulator(classes);
        for (int i = 0; i < n; i++)
        {
            var logits = new double[classes];
            logits[i] = 1000; // softmax is one-hot, with no overflow
            confident.Add(logits);
        }
        Assert.That(confident.Result(), Is.EqualTo(n).Within(1e-9));
    }

    [Test]
    public void ExtractorSeesTruncatedUInt8AndMatchesPrecomputedOutputs()
    {
        var rng = new Random(2);
        const int n = 5;
        float[] Random() => Enumerable.Range(0, n * 3 * 6 * 6).Select(_ => (float)rng.NextDouble()).ToArray();
        var real = new ImageBatch(Random(), n, 3, 6, 6);
        var fake = new ImageBatch(Random(), n, 3, 6, 6);
        fake.Data[0] = 0.999f;
        fake.Data[1] = 1f;
        var extractor = new PixelStatsExtractor();
        var metrics = TokenizerMetric.InceptionScore | TokenizerMetric.Rfid;
        var viaNet = new TokenizerEvaluator(metrics, inception: extractor);
        viaNet.Update(real, fake);
        Assert.That(extractor.Seen[0][0], Is.EqualTo(254));
        Assert.That(extractor.Seen[0][1], Is.EqualTo(255));

        var precomputed = new TokenizerEvaluator(metrics);
        var fakeBytes = fake.ToUInt8();
        var realBytes = real.ToUInt8();
        precomputed.Update(real, fake, default,
            extractor.Extract(realBytes, n, 6, 6), extractor.Extract(fakeBytes, n, 6, 6));
        Assert.That(viaNet.Result(), Is.EqualTo(precomputed.Result()));
    }

    /// <summary>A stand-in network: features and logits are per-channel pixel statistics.</summary>
    /// <summary>Two evaluators of the first and last images (as two ranks), one merged into the other through
    /// PackSums / MergePacked, give every metric of one evaluator of all the images: the Inception Score in 3 splits
    /// that straddle the shares, rFID from the kept rows (fewer rows than features) and the codebook counts.</summary>
    [Test]
    public void SharesMergedFromPackedSumsGiveTheMetricsOfOneEvaluator()
    {
        var rng = new Random(3);
        const int n = 7, first = 3;
        float[] Random(int count) => Enumerable.Range(0, count * 3 * 6 * 6).Select(_ => (float)rng.NextDouble()).ToArray();
        var (real, fake) = (Random(n), Random(n));
        var tokens = Enumerable.Range(0, n * 4).Select(_ => rng.Next(16)).ToArray();
        int size = 3 * 6 * 6;
        ImageBatch Part(float[] data, int from, int count) => new(data.AsSpan(from * size, count * size).ToArray(), count, 3, 6, 6);
        var metrics = TokenizerMetric.All;
        TokenizerEvaluator New(long firstExample) => new(metrics, 16, new PixelStatsExtractor(), inceptionScoreSplits: 3, totalExamples: n, firstExample: firstExample);

        var whole = New(0);
        whole.Update(Part(real, 0, n), Part(fake, 0, n), tokens);
        var (head, tail) = (New(0), New(first));
        head.Update(Part(real, 0, first), Part(fake, 0, first), tokens.AsSpan(0, first * 4));
        tail.Update(Part(real, first, n - first), Part(fake, first, n - first), tokens.AsSpan(first * 4));
        head.MergePacked(tail.PackSums());

        var (expected, actual) = (whole.Result(), head.Result());
        Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
        foreach (var (key, value) in expected)
            Assert.That(actual[key], Is.EqualTo(value).Within(1e-12 * Math.Max(1, Math.Abs(value))), key);
        Assert.That(head.NumExamples, Is.EqualTo(n));
    }

    private sealed class PixelStatsExtractor : IFeatureExtractor
    {
        public List<byte[]> Seen { get; } = [];
        public int FeatureDim => 3;
        public int LogitsDim => 3;

        public InceptionOutputs Extract(ReadOnlySpan<byte> images, int count, int height, int width)
        {
            Seen.Add(images.ToArray());
            int plane = height * width;
            var features = new double[count * 3];
            for (int i = 0; i < count; i++)
                for (int c = 0; c < 3; c++)
                {
                    double sum = 0;
                    foreach (byte b in images.Slice((i * 3 + c) * plane, plane)) sum += b;
                    features[i * 3 + c] = sum / plane / 255;
                }
            return new InceptionOutputs(count, features, features.Select(f => 4 * f).ToArray());
        }
    }
}
