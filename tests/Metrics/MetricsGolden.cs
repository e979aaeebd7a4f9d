using MaskBit.Models.Metrics;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Metrics;

/// <summary>Golden `metrics`: the reference TokenizerEvaluator over two batches with stored Inception outputs,
/// per-image metrics of batch 0, the accumulated feature statistics and the Frechet distance (README:
/// relative ≤ 1e-5, rFID ≤ 1e-4).</summary>
public static class MetricsGolden
{
    private const double Tol = 1e-5, RfidTol = 1e-4;

    [GoldenKind("metrics")]
    public static void Run(GoldenCase c)
    {
        int codebookEntries = c.Meta.GetProperty("num_codebook_entries").GetInt32();
        int batches = c.Meta.GetProperty("batches").GetArrayLength();
        var failures = new List<string>();
        // Scalars and per-image values are compared element-wise; the statistics arrays (entries near zero by
        // cancellation) by the scaled error max|a − b| / max|b|.
        void CheckRelative(string name, ReadOnlySpan<double> actual, double tol = Tol)
        {
            var expected = c.Array(name).ToFloat64();
            if (actual.Length != expected.Length) { failures.Add($"{name}: {actual.Length} values, expected {expected.Length}"); return; }
            double worst = 0;
            for (int i = 0; i < expected.Length; i++)
                worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]) / Math.Max(Math.Abs(expected[i]), 1e-30));
            if (!(worst <= tol)) failures.Add($"{name}: relative error {worst:E2}");
        }
        void CheckScaled(string name, ReadOnlySpan<double> actual)
        {
            double e = Compare.ScaledError(actual, c.Array(name).ToFloat64());
            if (!(e <= Tol)) failures.Add($"{name}: scaled error {e:E2}");
        }

        var evaluator = new TokenizerEvaluator(TokenizerMetric.All, codebookEntries);
        for (int b = 0; b < batches; b++)
        {
            string p = $"batch{b}";
            var (real, fake) = (Images(c, $"{p}.real"), Images(c, $"{p}.fake"));
            var realOut = new InceptionOutputs(real.N, c.Array($"{p}.features_real").ToFloat64());
            var fakeOut = new InceptionOutputs(real.N, c.Array($"{p}.features_fake").ToFloat64(), c.Array($"{p}.logits_fake").ToFloat64());
            evaluator.Update(real, fake, c.Array($"{p}.codebook_indices").ToInt32(), realOut, fakeOut);
        }
        var result = evaluator.Result();
        foreach (var (key, value) in result)
            CheckRelative($"evaluator.{key}", [value], key == "rFID" ? RfidTol : Tol);
        Assert.That(result.Keys, Has.Count.EqualTo(c.Io.Keys.Count(k => k.StartsWith("evaluator."))), "metric set");

        var (realStats, fakeStats) = evaluator.FeatureStatistics();
        CheckScaled("stats.mu_real", realStats.Mu);
        CheckScaled("stats.sigma_real", realStats.Sigma);
        CheckScaled("stats.mu_fake", fakeStats.Mu);
        CheckScaled("stats.sigma_fake", fakeStats.Sigma);

        // One evaluator per image pair of batch 0.
        var real0 = Images(c, "batch0.real");
        var fake0 = Images(c, "batch0.fake");
        var perImage = new Dictionary<string, double[]>();
        foreach (var key in new[] { "PSNR", "SSIM", "MSE", "MAE" }) perImage[key] = new double[real0.N];
        for (int i = 0; i < real0.N; i++)
        {
            var single = new TokenizerEvaluator(TokenizerMetric.Mae | TokenizerMetric.Mse | TokenizerMetric.Psnr | TokenizerMetric.Ssim);
            single.Update(Slice(real0, i), Slice(fake0, i));
            foreach (var (key, value) in single.Result()) perImage[key][i] = value;
        }
        foreach (var (key, values) in perImage) CheckRelative($"per_image_batch0.{key}", values);

        double distance = Frechet.Distance(c.Array("frechet.mu1").ToFloat64(), c.Array("frechet.sigma1").ToFloat64(),
            c.Array("frechet.mu2").ToFloat64(), c.Array("frechet.sigma2").ToFloat64());
        CheckRelative("frechet.distance", [distance], RfidTol);

        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }

    private static ImageBatch Images(GoldenCase c, string name)
    {
        var a = c.Array(name);
        return new ImageBatch(a.ToFloat32(), a.Shape[0], a.Shape[1], a.Shape[2], a.Shape[3]);
    }

    private static ImageBatch Slice(ImageBatch batch, int i) =>
        batch with { Data = batch.Image(i).ToArray(), N = 1 };
}
