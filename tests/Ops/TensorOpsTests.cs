using MaskBit.Autograd;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>Finite-difference checks (float64 references) for element-wise, broadcast, shape, reduction and
/// matmul ops.</summary>
public class TensorOpsTests
{
    private static readonly Random Rng = new(1234);

    private static (double[], int[]) In(params int[] shape) => (GradCheck.RandomValues(Rng, (int)ShapeUtil.Numel(shape)), shape);
    private static (double[], int[]) InPositive(params int[] shape) =>
        (GradCheck.RandomValues(Rng, (int)ShapeUtil.Numel(shape)).Select(v => 0.2 + Math.Abs(v)).ToArray(), shape);

    public static IEnumerable<TestCaseData> UnaryCases()
    {
        double Sig(double v) => 1 / (1 + Math.Exp(-v));
        yield return new TestCaseData("exp", (Func<Tensor, Tensor>)(x => x.Exp()), (Func<double, double>)Math.Exp, false);
        yield return new TestCaseData("log", (Func<Tensor, Tensor>)(x => x.Log()), (Func<double, double>)Math.Log, true);
        yield return new TestCaseData("sqrt", (Func<Tensor, Tensor>)(x => x.Sqrt()), (Func<double, double>)Math.Sqrt, true);
        yield return new TestCaseData("rsqrt", (Func<Tensor, Tensor>)(x => x.Rsqrt()), (Func<double, double>)(v => 1 / Math.Sqrt(v)), true);
        yield return new TestCaseData("abs", (Func<Tensor, Tensor>)(x => x.Abs()), (Func<double, double>)Math.Abs, false);
        yield return new TestCaseData("square", (Func<Tensor, Tensor>)(x => x.Square()), (Func<double, double>)(v => v * v), false);
        yield return new TestCaseData("relu", (Func<Tensor, Tensor>)(x => x.Relu()), (Func<double, double>)(v => Math.Max(v, 0)), false);
        yield return new TestCaseData("sigmoid", (Func<Tensor, Tensor>)(x => x.Sigmoid()), (Func<double, double>)Sig, false);
        yield return new TestCaseData("tanh", (Func<Tensor, Tensor>)(x => x.Tanh()), (Func<double, double>)Math.Tanh, false);
        yield return new TestCaseData("silu", (Func<Tensor, Tensor>)(x => x.Silu()), (Func<double, double>)(v => v * Sig(v)), false);
        yield return new TestCaseData("gelu", (Func<Tensor, Tensor>)(x => x.Gelu()), (Func<double, double>)(v => 0.5 * v * (1 + ErfRef(v / Math.Sqrt(2)))), false);
        yield return new TestCaseData("leaky_relu", (Func<Tensor, Tensor>)(x => x.LeakyRelu(0.1f)), (Func<double, double>)(v => v > 0 ? v : 0.1 * v), false);
        yield return new TestCaseData("softplus", (Func<Tensor, Tensor>)(x => x.Softplus()), (Func<double, double>)(v => Math.Log(1 + Math.Exp(v))), false);
        yield return new TestCaseData("pow", (Func<Tensor, Tensor>)(x => x.Pow(1.7f)), (Func<double, double>)(v => Math.Pow(v, 1.7)), true);
        yield return new TestCaseData("clamp", (Func<Tensor, Tensor>)(x => x.Clamp(-0.5f, 0.4f)), (Func<double, double>)(v => Math.Min(Math.Max(v, -0.5), 0.4)), false);
        yield return new TestCaseData("scalar_affine", (Func<Tensor, Tensor>)(x => (x * 3f + 1f) / 2f - 0.25f), (Func<double, double>)(v => (v * 3 + 1) / 2 - 0.25), false);
    }

    /// <summary>Reference erf via a high-order series / continued fraction (double accuracy).</summary>
    private static double ErfRef(double x)
    {
        double z = Math.Abs(x);
        if (z < 3)
        {
            double sum = 0, term = z; int n = 0;
            while (Math.Abs(term) > 1e-17 * Math.Abs(sum) || n < 5) { sum += term / (2 * n + 1); n++; term *= -z * z / n; if (n > 200) break; }
            return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * sum;
        }
        return Math.Sign(x) * (1 - Math.Exp(-z * z) / (z * Math.Sqrt(Math.PI)) * (1 - 1 / (2 * z * z)));
    }

    [TestCaseSource(nameof(UnaryCases))]
    public void Unary(string name, Func<Tensor, Tensor> op, Func<double, double> reference, bool positiveOnly)
    {
        var input = positiveOnly ? InPositive(3, 7) : In(3, 7);
        // Keep samples away from kinks so central differences are meaningful.
        var v = input.Item1.Select(x => Math.Abs(x) < 0.02 ? x + 0.05 : x).Select(x => name == "clamp" && (Math.Abs(x + 0.5) < 0.01 || Math.Abs(x - 0.4) < 0.01) ? x + 0.03 : x).ToArray();
        GradCheck.Check(new[] { (v, input.Item2) }, t => op(t[0]), x => x[0].Select(reference).ToArray(), forwardTol: 2e-6, gradTol: 2e-4);
    }

    [Test]
    public void PyTorchDerivativesAtZero()
    {
        var x = Tensor.Zeros(3).RequiresGrad_();
        x.Silu().Add(x.Gelu()).Add(x.LeakyRelu(0.1f)).Add(x.Relu()).Add(x.Abs()).Sum().Backward();
        Assert.That(x.Grad!.ToArray()[0], Is.EqualTo(0.5f + 0.5f + 0.1f + 0f + 0f).Within(1e-6));
    }

    public static IEnumerable<TestCaseData> BroadcastShapes()
    {
        yield return new TestCaseData(new[] { 3, 4 }, new[] { 3, 4 });
        yield return new TestCaseData(new[] { 2, 3, 5 }, new[] { 5 });
        yield return new TestCaseData(new[] { 2, 1, 5 }, new[] { 3, 1 });
        yield return new TestCaseData(new[] { 4, 1 }, new[] { 1, 6 });
        yield return new TestCaseData(new int[0], new[] { 2, 3 });
    }

    [TestCaseSource(nameof(BroadcastShapes))]
    public void BroadcastArithmetic(int[] sa, int[] sb)
    {
        var a = In(sa); var b = InPositive(sb);
        var shape = ShapeUtil.Broadcast(sa, sb, "test");
        double[] Ref(double[][] x, Func<double, double, double> f)
        {
            var ra = ShapeUtil.BroadcastStrides(sa, shape); var rb = ShapeUtil.BroadcastStrides(sb, shape);
            var n = (int)ShapeUtil.Numel(shape); var y = new double[n];
            for (int i = 0; i < n; i++)
            {
                int rem = i, ia = 0, ib = 0;
                for (int d = shape.Length - 1; d >= 0; d--) { int idx = rem % shape[d]; rem /= shape[d]; ia += idx * ra[d]; ib += idx * rb[d]; }
                y[i] = f(x[0][ia], x[1][ib]);
            }
            return y;
        }
        GradCheck.Check(new[] { a, b }, t => t[0] + t[1], x => Ref(x, (p, q) => p + q));
        GradCheck.Check(new[] { a, b }, t => t[0] - t[1], x => Ref(x, (p, q) => p - q));
        GradCheck.Check(new[] { a, b }, t => t[0] * t[1], x => Ref(x, (p, q) => p * q));
        GradCheck.Check(new[] { a, b }, t => t[0] / t[1], x => Ref(x, (p, q) => p / q), forwardTol: 2e-6);
        GradCheck.Check(new[] { a, b }, t => t[0].Maximum(t[1]), x => Ref(x, Math.Max));
    }

    [Test]
    public void SumAndMeanOverAxes()
    {
        var a = In(2, 3, 4);
        GradCheck.Check(new[] { a }, t => t[0].Sum(new[] { 0, 2 }), x =>
        {
            var y = new double[3];
            for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 4; k++) y[j] += x[0][(i * 3 + j) * 4 + k];
            return y;
        });
        GradCheck.Check(new[] { a }, t => t[0].Mean(1, keepDim: true), x =>
        {
            var y = new double[8];
            for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 4; k++) y[i * 4 + k] += x[0][(i * 3 + j) * 4 + k] / 3;
            return y;
        });
        GradCheck.Check(new[] { a }, t => t[0].Mean(), x => new[] { x[0].Average() });
    }

    [Test]
    public void PermuteNarrowCatReshape()
    {
        var a = In(2, 3, 4); var b = In(2, 2, 4);
        GradCheck.Check(new[] { a }, t => t[0].Permute(2, 0, 1), x =>
        {
            var y = new double[24];
            for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 4; k++) y[(k * 2 + i) * 3 + j] = x[0][(i * 3 + j) * 4 + k];
            return y;
        });
        GradCheck.Check(new[] { a }, t => t[0].Narrow(2, 1, 2).Reshape(-1), x =>
        {
            var y = new List<double>();
            for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) for (int k = 1; k < 3; k++) y.Add(x[0][(i * 3 + j) * 4 + k]);
            return y.ToArray();
        });
        GradCheck.Check(new[] { a, b }, t => Tensor.Cat(new[] { t[0], t[1] }, 1), x =>
        {
            var y = new List<double>();
            for (int i = 0; i < 2; i++) { y.AddRange(x[0].Skip(i * 12).Take(12)); y.AddRange(x[1].Skip(i * 8).Take(8)); }
            return y.ToArray();
        });
        GradCheck.Check(new[] { a }, t => t[0].Narrow(0, 1, 1).Mul(t[0].Narrow(0, 0, 1)), x =>
            Enumerable.Range(0, 12).Select(i => x[0][12 + i] * x[0][i]).ToArray());
    }

    [Test]
    public void NarrowOnFirstAxisIsAView()
    {
        var t = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (float)i).ToArray(), 3, 4);
        var row = t.Narrow(0, 1, 1);
        Assert.That(row.Storage, Is.SameAs(t.Storage));
        Assert.That(row.ToArray(), Is.EqualTo(new float[] { 4, 5, 6, 7 }));
        Assert.That(t.Reshape(4, 3).Storage, Is.SameAs(t.Storage));
    }

    [Test]
    public void WhereSelectsAndRoutesGradients()
    {
        var a = In(2, 3); var b = In(2, 3);
        var cond = Tensor.FromArray(new float[] { 1, 0, 1, 0, 0, 1 }, 2, 3);
        GradCheck.Check(new[] { a, b }, t => Tensor.Where(cond, t[0], t[1]),
            x => Enumerable.Range(0, 6).Select(i => cond.ToArray()[i] != 0 ? x[0][i] : x[1][i]).ToArray());
    }

    public static IEnumerable<TestCaseData> MatMulCases()
    {
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
            {
                yield return new TestCaseData(new int[0], 5, 7, 3, ta, tb, false);
                yield return new TestCaseData(new[] { 2, 3 }, 4, 5, 6, ta, tb, false);
                yield return new TestCaseData(new[] { 3 }, 4, 2, 5, ta, tb, true);
            }
    }

    [TestCaseSource(nameof(MatMulCases))]
    public void MatMul(int[] batch, int m, int n, int k, bool transA, bool transB, bool sharedB)
    {
        int nb = (int)ShapeUtil.Numel(batch);
        var aShape = batch.Concat(transA ? new[] { k, m } : new[] { m, k }).ToArray();
        var bShape = (sharedB ? Array.Empty<int>() : batch).Concat(transB ? new[] { n, k } : new[] { k, n }).ToArray();
        GradCheck.Check(new[] { In(aShape), In(bShape) }, t => Tensor.MatMul(t[0], t[1], transA, transB), x =>
        {
            var y = new double[nb * m * n];
            for (int q = 0; q < nb; q++)
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                    {
                        double s = 0;
                        for (int p = 0; p < k; p++)
                        {
                            double av = x[0][q * m * k + (transA ? p * m + i : i * k + p)];
                            int bo = sharedB ? 0 : q * k * n;
                            double bv = x[1][bo + (transB ? j * k + p : p * n + j)];
                            s += av * bv;
                        }
                        y[(q * m + i) * n + j] = s;
                    }
            return y;
        });
    }

    [TestCase(new[] { 5 }, true)]
    [TestCase(new[] { 2, 3 }, true)]
    [TestCase(new[] { 4 }, false)]
    public void Linear(int[] rows, bool bias)
    {
        const int inFeatures = 6, outFeatures = 4;
        int n = (int)ShapeUtil.Numel(rows);
        var inputs = new List<(double[], int[])> { In(rows.Append(inFeatures).ToArray()), In(outFeatures, inFeatures) };
        if (bias) inputs.Add(In(outFeatures));
        GradCheck.Check(inputs, t => Tensor.Linear(t[0], t[1], bias ? t[2] : null), x =>
        {
            var y = new double[n * outFeatures];
            for (int r = 0; r < n; r++)
                for (int o = 0; o < outFeatures; o++)
                {
                    double s = bias ? x[2][o] : 0;
                    for (int i = 0; i < inFeatures; i++) s += x[0][r * inFeatures + i] * x[1][o * inFeatures + i];
                    y[r * outFeatures + o] = s;
                }
            return y;
        });
    }

    [Test]
    public void ShapeErrorsNameTheShapes()
    {
        var e = Assert.Throws<ArgumentException>(() => _ = Tensor.Zeros(2, 3) + Tensor.Zeros(4, 3))!;
        Assert.That(e.Message, Does.Contain("(2, 3)"));
        Assert.That(e.Message, Does.Contain("(4, 3)"));
        var m = Assert.Throws<ArgumentException>(() => Tensor.MatMul(Tensor.Zeros(2, 3), Tensor.Zeros(4, 5)))!;
        Assert.That(m.Message, Does.Contain("inner sizes differ"));
    }
}
