using MaskBit.Autograd;
using MaskBit.Tests.Support;
using Nn = MaskBit.Autograd.Nn;

namespace MaskBit.Tests.Ops;

/// <summary>GroupNorm (plain and fused with SiLU) and LayerNorm against float64 references: forward values and
/// finite-difference gradients for x, γ and β at odd sizes.</summary>
public class NormGradTests
{
    // (shape, groups): odd channel groups and spatial sizes; a group longer than one statistics block (2048);
    // rank 3 and rank 2 inputs (any trailing dims, including none).
    private static readonly object[] GroupNormShapes =
    {
        new object[] { new[] { 2, 6, 7, 5 }, 3 },
        new object[] { new[] { 1, 2, 37, 29 }, 1 },
        new object[] { new[] { 3, 8, 9 }, 4 },
        new object[] { new[] { 5, 6 }, 2 },
    };

    [TestCaseSource(nameof(GroupNormShapes))]
    public void GroupNormMatchesReference(int[] shape, int groups)
    {
        foreach (bool silu in new[] { false, true }) CheckGroupNorm(shape, groups, silu, offset: 0, scale: 1, eps: 1e-5);
    }

    [Test]
    public void GroupNormKeepsEpsSizedVariancesExact()
    {
        // x ≈ 0.3 ± 0.01: the variance (≈1e-4/3) is comparable to eps, and |mean| ≫ std.
        foreach (bool silu in new[] { false, true })
            CheckGroupNorm(new[] { 2, 6, 5, 7 }, 3, silu, offset: 0.3, scale: 0.01, eps: 1e-5, h: 1e-6);
    }

    private static void CheckGroupNorm(int[] shape, int groups, bool silu, double offset, double scale, double eps, double h = 1e-4)
    {
        var rng = new Random(shape.Sum() + groups + (silu ? 100 : 0));
        int channels = shape[1];
        var x = GradCheck.RandomValues(rng, (int)ShapeUtil.Numel(shape), scale).Select(v => v + offset).ToArray();
        var w = GradCheck.RandomValues(rng, channels, 0.3).Select(v => 1 + v).ToArray();
        var b = GradCheck.RandomValues(rng, channels, 0.3);
        GradCheck.Check(
            new[] { (x, shape), (w, new[] { channels }), (b, new[] { channels }) },
            t => F.GroupNorm(t[0], groups, t[1], t[2], (float)eps, fuseSilu: silu),
            r => GroupNormReference(r[0], r[1], r[2], shape, groups, eps, silu),
            forwardTol: 2e-6, h: h);
    }

    private static double[] GroupNormReference(double[] x, double[] w, double[] b, int[] shape, int groups, double eps, bool silu)
    {
        int n = shape[0], channels = shape[1], hw = (int)ShapeUtil.Numel(shape[2..]), groupLen = channels / groups * hw;
        var y = new double[x.Length];
        for (int i = 0; i < n * groups; i++)
        {
            var xs = x.AsSpan(i * groupLen, groupLen);
            double mean = 0, variance = 0;
            foreach (var v in xs) mean += v;
            mean /= groupLen;
            foreach (var v in xs) variance += (v - mean) * (v - mean);
            double rstd = 1 / Math.Sqrt(variance / groupLen + eps);
            for (int k = 0; k < groupLen; k++)
            {
                int ch = i % groups * (channels / groups) + k / hw;
                double v = (xs[k] - mean) * rstd * w[ch] + b[ch];
                y[i * groupLen + k] = silu ? v / (1 + Math.Exp(-v)) : v;
            }
        }
        return y;
    }

    [TestCase(new[] { 3, 5, 13 })]
    [TestCase(new[] { 4, 37 })]
    [TestCase(new[] { 7 })]
    public void LayerNormMatchesReference(int[] shape)
    {
        var rng = new Random(shape.Sum());
        int cols = shape[^1];
        var x = GradCheck.RandomValues(rng, (int)ShapeUtil.Numel(shape), 2).Select(v => v + 0.5).ToArray();
        var w = GradCheck.RandomValues(rng, cols, 0.3).Select(v => 1 + v).ToArray();
        var b = GradCheck.RandomValues(rng, cols, 0.3);
        const double eps = 1e-5;
        GradCheck.Check(
            new[] { (x, shape), (w, new[] { cols }), (b, new[] { cols }) },
            t => F.LayerNorm(t[0], t[1], t[2], (float)eps),
            r =>
            {
                var y = new double[r[0].Length];
                for (int row = 0; row < y.Length / cols; row++)
                {
                    var xs = r[0].AsSpan(row * cols, cols);
                    double mean = 0, variance = 0;
                    foreach (var v in xs) mean += v;
                    mean /= cols;
                    foreach (var v in xs) variance += (v - mean) * (v - mean);
                    double rstd = 1 / Math.Sqrt(variance / cols + eps);
                    for (int j = 0; j < cols; j++) y[row * cols + j] = (xs[j] - mean) * rstd * r[1][j] + r[2][j];
                }
                return y;
            },
            forwardTol: 2e-6);
    }

    [Test]
    public void NullAffineParametersMeanIdentity()
    {
        var x = Tensor.FromArray(GradCheck.RandomValues(new Random(3), 2 * 4 * 6).Select(v => (float)v).ToArray(), 2, 4, 6);
        var ones = Tensor.Ones(4); var zeros = Tensor.Zeros(4);
        Assert.That(F.GroupNorm(x, 2, null, null).ToArray(), Is.EqualTo(F.GroupNorm(x, 2, ones, zeros).ToArray()));
        var ones6 = Tensor.Ones(6); var zeros6 = Tensor.Zeros(6);
        Assert.That(F.LayerNorm(x, null, null).ToArray(), Is.EqualTo(F.LayerNorm(x, ones6, zeros6).ToArray()));
    }

    [Test]
    public void ModulesRegisterTorchParameterNames()
    {
        var gn = new Nn.GroupNorm(2, 6, eps: 1e-6f);
        Assert.That(gn.NamedParameters().Select(p => p.Name), Is.EqualTo(new[] { "weight", "bias" }));
        Assert.That(gn.Weight!.ToArray(), Is.All.EqualTo(1f));
        Assert.That(gn.Bias!.ToArray(), Is.All.EqualTo(0f));
        Assert.That(new Nn.GroupNorm(2, 6, affine: false).NamedParameters(), Is.Empty);
        var x = Tensor.FromArray(GradCheck.RandomValues(new Random(5), 2 * 6 * 3).Select(v => (float)v).ToArray(), 2, 6, 3);
        Assert.That(gn.ForwardSilu(x).ToArray(), Is.EqualTo(gn.Forward(x).Silu().ToArray()).Within(1e-6f));

        var ln = new Nn.LayerNorm(3);
        Assert.That(ln.NamedParameters().Select(p => p.Name), Is.EqualTo(new[] { "weight", "bias" }));
        Assert.That(ln.Forward(x).Shape, Is.EqualTo(x.Shape));
    }

    [Test]
    public void GroupNormRejectsIndivisibleChannels()
    {
        var x = Tensor.Zeros(1, 6, 2);
        var e = Assert.Throws<ArgumentException>(() => F.GroupNorm(x, 4, null, null));
        Assert.That(e!.Message, Does.Contain("6 channels").And.Contain("4 groups"));
    }
}
