using MaskBit.Models.Metrics;

namespace MaskBit.Tests.Metrics;

public class InceptionScoreSplitTests
{
    /// <summary>Logits whose softmax over two classes is (p, 1 − p).</summary>
    private static double[] Logits(double p) => p switch
    {
        1 => new double[] { 1000, 0 },
        _ => new[] { Math.Log(p), Math.Log(1 - p) },
    };

    [Test]
    public void TwoSplitsOfAHandComputedExample()
    {
        // Split 0: p = (¾, ¼) and (¼, ¾), marginal (½, ½): KL of each = ¾·ln(3/2) + ¼·ln(1/2).
        // Split 1: p = (½, ½) and (1, 0), marginal (¾, ¼): KLs ½·ln(2/3) + ½·ln 2 and ln(4/3).
        double first = Math.Exp(0.75 * Math.Log(1.5) + 0.25 * Math.Log(0.5));
        double second = Math.Exp((0.5 * Math.Log(2.0 / 3) + 0.5 * Math.Log(2) + Math.Log(4.0 / 3)) / 2);
        var score = new InceptionScoreAccumulator(classes: 2, splits: 2, totalImages: 4);
        foreach (double p in new[] { 0.75, 0.25, 0.5, 1 }) score.Add(Logits(p));

        Assert.That(score.SplitScores(), Is.EqualTo(new[] { first, second }).Within(1e-12));
        var (mean, std) = score.MeanAndStd();
        Assert.That(mean, Is.EqualTo((first + second) / 2).Within(1e-12));
        Assert.That(std, Is.EqualTo(Math.Abs(first - second) / 2).Within(1e-12), "population standard deviation (np.std)");
        Assert.That(first, Is.EqualTo(1.139754).Within(1e-6));
        Assert.That(second, Is.EqualTo(1.240806).Within(1e-6));
    }

    [Test]
    public void SplitBoundariesAreNumpys()
    {
        // N = 5, K = 2: preds[0:2] and preds[2:5]. Two confident, different images score 2; identical ones 1.
        var score = new InceptionScoreAccumulator(classes: 2, splits: 2, totalImages: 5);
        foreach (double p in new[] { 1, 0.0 + 1e-300, 0.5, 0.5, 0.5 }) score.Add(Logits(p));
        Assert.That(score.SplitScores(), Is.EqualTo(new[] { 2.0, 1.0 }).Within(1e-9));
    }

    [Test]
    public void OneSplitIsTheReferenceScoreAndNeedsNoCount()
    {
        var single = new InceptionScoreAccumulator(classes: 2);
        var split = new InceptionScoreAccumulator(classes: 2, splits: 1, totalImages: 4);
        foreach (double p in new[] { 0.75, 0.25, 0.5, 1 })
        {
            single.Add(Logits(p));
            split.Add(Logits(p));
        }
        Assert.That(single.Result(), Is.EqualTo(split.Result()));
        Assert.That(single.MeanAndStd().Std, Is.Zero);
    }

    [Test]
    public void FewerSplitsWhenThereAreFewImages()
    {
        Assert.That(InceptionScoreAccumulator.EffectiveSplits(50_000, 10), Is.EqualTo(10));
        Assert.That(InceptionScoreAccumulator.EffectiveSplits(4, 10), Is.EqualTo(2));
        Assert.That(InceptionScoreAccumulator.EffectiveSplits(3, 10), Is.EqualTo(1));
        Assert.That(InceptionScoreAccumulator.EffectiveSplits(1, 10), Is.EqualTo(1));
        Assert.That(InceptionScoreAccumulator.EffectiveSplits(100, 1), Is.EqualTo(1));
    }

    [Test]
    public void SplitsNeedTheCountAndExactlyThatManyImages()
    {
        Assert.Throws<ArgumentException>(() => _ = new InceptionScoreAccumulator(2, splits: 3, totalImages: 2));
        var score = new InceptionScoreAccumulator(2, splits: 2, totalImages: 3);
        score.Add(Logits(0.5));
        score.Add(Logits(0.5));
        Assert.That(Assert.Throws<InvalidOperationException>(() => score.SplitScores())!.Message, Does.Contain("3 images"));
        score.Add(Logits(0.5));
        Assert.Throws<InvalidOperationException>(() => score.Add(Logits(0.5)));
    }

    [Test]
    public void EvaluatorReportsSpreadAndSplitsWhenAskedForSplits()
    {
        var real = new ImageBatch(new float[4 * 3], 4, 3, 1, 1);
        var outputs = new InceptionOutputs(4, new double[4 * 2], new[] { 0.75, 0.25, 0.5, 1 }.SelectMany(Logits).ToArray());
        var evaluator = new TokenizerEvaluator(TokenizerMetric.InceptionScore, inceptionScoreSplits: 2, totalExamples: 4);
        evaluator.Update(real, real, default, null, outputs);
        var result = evaluator.Result();
        Assert.That(result["InceptionScoreSplits"], Is.EqualTo(2));
        Assert.That(result["InceptionScore"], Is.EqualTo((1.139754 + 1.240806) / 2).Within(1e-5));
        Assert.That(result["InceptionScoreStd"], Is.GreaterThan(0));

        var reference = new TokenizerEvaluator(TokenizerMetric.InceptionScore);
        reference.Update(real, real, default, null, outputs);
        Assert.That(reference.Result().Keys, Is.EqualTo(new[] { "InceptionScore" }), "the reference's single split adds no keys");
    }
}
