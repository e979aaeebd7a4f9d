using MaskBit.Autograd;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>Softmax, log-softmax and cross-entropy against float64 references: forward values and
/// finite-difference gradients, odd sizes, non-last axes, label smoothing, every reduction, wide rows.</summary>
public class SoftmaxGradTests
{
    [TestCase(new[] { 3, 4, 11 }, -1, false)]
    [TestCase(new[] { 3, 4, 11 }, -1, true)]
    [TestCase(new[] { 3, 5, 7 }, 1, false)]
    [TestCase(new[] { 3, 5, 7 }, 0, true)]
    public void SoftmaxMatchesReference(int[] shape, int dim, bool log)
    {
        var rng = new Random(shape.Sum() + dim);
        var x = GradCheck.RandomValues(rng, (int)ShapeUtil.Numel(shape), 4);
        GradCheck.Check(
            new[] { (x, shape) },
            t => log ? t[0].LogSoftmax(dim) : t[0].Softmax(dim),
            r => SoftmaxReference(r[0], shape, ShapeUtil.Axis(dim, shape.Length), log));
    }

    private static double[] SoftmaxReference(double[] x, int[] shape, int axis, bool log)
    {
        int size = shape[axis], inner = (int)ShapeUtil.Numel(shape[(axis + 1)..]), outer = x.Length / (size * inner);
        var y = new double[x.Length];
        for (int o = 0; o < outer; o++)
            for (int i = 0; i < inner; i++)
            {
                int at(int k) => (o * size + k) * inner + i;
                double max = double.NegativeInfinity, sum = 0;
                for (int k = 0; k < size; k++) max = Math.Max(max, x[at(k)]);
                for (int k = 0; k < size; k++) sum += Math.Exp(x[at(k)] - max);
                for (int k = 0; k < size; k++)
                    y[at(k)] = log ? x[at(k)] - max - Math.Log(sum) : Math.Exp(x[at(k)] - max) / sum;
            }
        return y;
    }

    [TestCase(false)]
    [TestCase(true)]
    public void SoftmaxIsPreciseOnWideRows(bool log)
    {
        // Several summation blocks and a vector tail per row; gradient of sum(y·R) against float64 formulas.
        int[] shape = { 3, 20003 };
        int cols = shape[1];
        var rng = new Random(9);
        var x = GradCheck.RandomValues(rng, shape[0] * cols, 6).Select(v => (double)(float)v).ToArray();
        var r = GradCheck.RandomValues(rng, x.Length).Select(v => (double)(float)v).ToArray();
        var input = Tensor.FromArray(x.Select(v => (float)v).ToArray(), shape).RequiresGrad_();
        var y = log ? input.LogSoftmax() : input.Softmax();
        y.Mul(Tensor.FromArray(r.Select(v => (float)v).ToArray(), shape)).Sum().Backward();

        var yRef = SoftmaxReference(x, shape, 1, log);
        var gradRef = new double[x.Length];
        for (int row = 0; row < shape[0]; row++)
        {
            double dot = 0, sum = 0;
            for (int c = row * cols; c < (row + 1) * cols; c++)
            {
                double p = log ? Math.Exp(yRef[c]) : yRef[c];
                dot += r[c] * p; sum += r[c];
            }
            for (int c = row * cols; c < (row + 1) * cols; c++)
                gradRef[c] = log ? r[c] - Math.Exp(yRef[c]) * sum : yRef[c] * (r[c] - dot);
        }
        Assert.That(Compare.ScaledError(y.ToArray().Select(v => (double)v).ToArray(), yRef), Is.LessThan(1e-6), "forward");
        Assert.That(Compare.ScaledError(input.Grad!.ToArray().Select(v => (double)v).ToArray(), gradRef), Is.LessThan(1e-5), "gradient");
    }

    [Test]
    public void CrossEntropyMatchesReference(
        [Values(0.0, 0.1, 0.3)] double smoothing,
        [Values(Reduction.Mean, Reduction.Sum, Reduction.None)] Reduction reduction)
    {
        const int n = 5, classes = 13;
        var rng = new Random(11);
        var x = GradCheck.RandomValues(rng, n * classes, 5);
        var targets = new[] { 3, 0, 12, 3, 7 };
        var t = Tensor.FromInts(targets, n);
        GradCheck.Check(
            new[] { (x, new[] { n, classes }) },
            l => F.CrossEntropy(l[0], t, (float)smoothing, reduction),
            r =>
            {
                var losses = CrossEntropyReference(r[0], targets, classes, smoothing);
                return reduction switch
                {
                    Reduction.None => losses,
                    Reduction.Sum => new[] { losses.Sum() },
                    _ => new[] { losses.Average() },
                };
            });
    }

    private static double[] CrossEntropyReference(double[] x, int[] targets, int classes, double smoothing)
    {
        var losses = new double[targets.Length];
        for (int r = 0; r < targets.Length; r++)
        {
            var row = x.AsSpan(r * classes, classes);
            double max = double.NegativeInfinity, sum = 0, sumLogp = 0;
            foreach (var v in row) max = Math.Max(max, v);
            foreach (var v in row) sum += Math.Exp(v - max);
            double lse = max + Math.Log(sum);
            foreach (var v in row) sumLogp += v - lse;
            losses[r] = -(1 - smoothing) * (row[targets[r]] - lse) - smoothing / classes * sumLogp;
        }
        return losses;
    }

    [Test]
    public void CrossEntropyIsPreciseOnWideRows()
    {
        // LFQ-sized rows (2^18 codes): loss and gradient against float64, without finite differences.
        const int n = 3, classes = 1 << 18;
        const double smoothing = 0.1;
        var rng = new Random(5);
        var x = GradCheck.RandomValues(rng, n * classes, 8).Select(v => (double)(float)v).ToArray();
        var targets = new[] { 17, classes - 1, 123457 };
        var logits = Tensor.FromArray(x.Select(v => (float)v).ToArray(), n, classes).RequiresGrad_();
        var loss = F.CrossEntropy(logits, Tensor.FromInts(targets, n), (float)smoothing, Reduction.Sum);
        loss.Backward();

        var expectedLoss = CrossEntropyReference(x, targets, classes, smoothing).Sum();
        Assert.That(loss.Item(), Is.EqualTo(expectedLoss).Within(1e-6 * Math.Abs(expectedLoss)));
        var expectedGrad = new double[x.Length];
        for (int r = 0; r < n; r++)
        {
            var row = x.AsSpan(r * classes, classes);
            double max = double.NegativeInfinity, sum = 0;
            foreach (var v in row) max = Math.Max(max, v);
            foreach (var v in row) sum += Math.Exp(v - max);
            for (int c = 0; c < classes; c++)
                expectedGrad[r * classes + c] = Math.Exp(row[c] - max) / sum - smoothing / classes - (c == targets[r] ? 1 - smoothing : 0);
        }
        var grad = logits.Grad!.ToArray().Select(v => (double)v).ToArray();
        Assert.That(Compare.ScaledError(grad, expectedGrad), Is.LessThan(1e-5));
    }

    [Test]
    public void CrossEntropyRejectsTargetsOutOfRange()
    {
        var logits = Tensor.Zeros(2, 4);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => F.CrossEntropy(logits, Tensor.FromInts(new[] { 1, 4 }, 2)));
        Assert.That(e!.Message, Does.Contain("target 4").And.Contain("4 classes"));
    }
}
