using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

public class AttentionTests
{
    // ---- fused kernel vs a composition of existing ops --------------------------------------------------------

    /// <summary>softmax(q·kᵀ·scale)·v from MatMul and a naive Exp/Sum/Div softmax (max shift detached).</summary>
    private static Tensor ComposedAttention(Tensor q, Tensor k, Tensor v, float scale)
    {
        var logits = Tensor.MatMul(q, k, transB: true).MulScalar(scale);
        var e = logits.Sub(logits.Max(-1, keepDim: true)).Exp();
        return Tensor.MatMul(e.Div(e.Sum(-1, keepDim: true)), v);
    }

    [TestCase(new[] { 3, 17, 8 })]
    [TestCase(new[] { 2, 1, 8 })]
    [TestCase(new[] { 2, 257, 64 })]
    [TestCase(new[] { 2, 3, 33, 20 })]   // rank 4; head dim 20 runs a 16-wide tile plus scalar columns
    [TestCase(new[] { 1, 1, 40, 5 })]
    public void FusedMatchesComposition(int[] shape) => TestIsas.Each(() => FusedMatchesCompositionOnce(shape));

    private static void FusedMatchesCompositionOnce(int[] shape)
    {
        var rng = new Random(shape.Sum());
        int n = (int)ShapeUtil.Numel(shape);
        float[] Values(double scale) => GradCheck.RandomValues(rng, n, scale).Select(x => (float)x).ToArray();
        // Logit spread of a few units so the softmax is neither uniform nor one-hot.
        float[] qv = Values(2.0), kv = Values(2.0), vv = Values(1.0), r = Values(1.0);
        float scale = 1f / MathF.Sqrt(shape[^1]);

        (float[] y, float[] dq, float[] dk, float[] dv) Run(Func<Tensor, Tensor, Tensor, Tensor> attention)
        {
            var q = Tensor.FromArray(qv, shape).RequiresGrad_();
            var k = Tensor.FromArray(kv, shape).RequiresGrad_();
            var v = Tensor.FromArray(vv, shape).RequiresGrad_();
            var y = attention(q, k, v);
            y.Mul(Tensor.FromArray(r, shape)).Sum().Backward();
            return (y.ToArray(), q.Grad!.ToArray(), k.Grad!.ToArray(), v.Grad!.ToArray());
        }

        var fused = Run((q, k, v) => F.ScaledDotProductAttention(q, k, v));
        var composed = Run((q, k, v) => ComposedAttention(q, k, v, scale));
        Compare.AssertClose(fused.y, composed.y, 2e-5, "output");
        Compare.AssertClose(fused.dq, composed.dq, 2e-5, "dq");
        Compare.AssertClose(fused.dk, composed.dk, 2e-5, "dk");
        Compare.AssertClose(fused.dv, composed.dv, 2e-5, "dv");
    }

    /// <summary>More workers than heads: several workers share one head and hand over partial dK/dV sums.</summary>
    [Test]
    public void BackwardWithAHeadSplitAcrossWorkers()
    {
        int workers = CpuParallel.Workers;
        try
        {
            CpuParallel.Workers = 3;
            FusedMatchesComposition(new[] { 1, 100, 16 });
            FusedMatchesComposition(new[] { 2, 130, 16 });
        }
        finally { CpuParallel.Workers = workers; }
    }

    [Test]
    public void SavedLogSumExpGivesTheProbabilities()
    {
        // Large logits: exp would overflow without the max shift.
        var q = Tensor.FromArray(new float[] { 30, 0, -30, 1 }, 1, 2, 2);
        var k = Tensor.FromArray(new float[] { 20, 1, -20, 2 }, 1, 2, 2);
        var v = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 1, 2, 2);
        var y = F.ScaledDotProductAttention(q, k, v, scale: 1f).ToArray();
        // Row 0: logits 600 vs −600 → all weight on key 0; row 1: logits −600 vs 602 → key 1.
        Assert.That(y, Is.EqualTo(new float[] { 1, 2, 3, 4 }).Within(1e-6));
    }

    // ---- finite differences vs float64 ------------------------------------------------------------------------

    /// <summary>Plain float64 attention over (batchHeads, seq, dim) flattened values, with the probabilities
    /// multiplied by the factors of <paramref name="dropout"/> when given.</summary>
    private static double[] ReferenceAttention(double[] q, double[] k, double[] v, int batchHeads, int seq, int dim, double scale,
        DropoutMask? dropout = null)
    {
        var y = new double[q.Length];
        var logits = new double[seq];
        for (int b = 0; b < batchHeads; b++)
            for (int i = 0; i < seq; i++)
            {
                int head = b * seq * dim;
                double max = double.NegativeInfinity;
                for (int j = 0; j < seq; j++)
                {
                    double s = 0;
                    for (int d = 0; d < dim; d++) s += q[head + i * dim + d] * k[head + j * dim + d];
                    logits[j] = s * scale;
                    max = Math.Max(max, logits[j]);
                }
                double sum = 0;
                for (int j = 0; j < seq; j++) { logits[j] = Math.Exp(logits[j] - max); sum += logits[j]; }
                uint rowKey = dropout?.RowKey(b, i) ?? 0;
                for (int j = 0; j < seq; j++)
                {
                    double weight = logits[j] / sum * (dropout?.Factor(rowKey, j) ?? 1f);
                    for (int d = 0; d < dim; d++) y[head + i * dim + d] += weight * v[head + j * dim + d];
                }
            }
        return y;
    }

    [TestCase(new[] { 3, 5, 3 }, null)]
    [TestCase(new[] { 1, 2, 7, 5 }, null)]
    [TestCase(new[] { 2, 1, 4 }, null)]
    [TestCase(new[] { 2, 9, 17 }, 0.7f)]
    public void GradCheckAgainstFloat64(int[] shape, float? scale)
    {
        var rng = new Random(11);
        int n = (int)ShapeUtil.Numel(shape), seq = shape[^2], dim = shape[^1], bh = n / (seq * dim);
        double s = scale ?? 1.0 / Math.Sqrt(dim);
        var inputs = new[] { (GradCheck.RandomValues(rng, n, 1.5), shape), (GradCheck.RandomValues(rng, n, 1.5), shape), (GradCheck.RandomValues(rng, n), shape) };
        TestIsas.Each(() => GradCheck.Check(inputs,
            t => F.ScaledDotProductAttention(t[0], t[1], t[2], scale),
            x => ReferenceAttention(x[0], x[1], x[2], bh, seq, dim, s)));
    }

    // ---- dropout on the attention weights ---------------------------------------------------------------------

    /// <summary>The mask seed F.ScaledDotProductAttention draws from <c>new Rng(generatorSeed)</c>.</summary>
    private static DropoutMask DropoutOf(float p, ulong generatorSeed) => new(p, new Rng(generatorSeed).NextUInt64());

    // Forward against float64 with the same hash mask, gradients by finite differences (the op runs once, so the
    // mask is fixed). Sequences ≥ 8 run the 8-wide mask path and its scalar tail.
    [TestCase(new[] { 3, 5, 3 }, 0.3f)]
    [TestCase(new[] { 2, 17, 6 }, 0.5f)]
    [TestCase(new[] { 1, 2, 11, 4 }, 0.1f)]
    public void DropoutGradCheckAgainstFloat64WithTheSameMask(int[] shape, float p)
    {
        var rng = new Random(12);
        int n = (int)ShapeUtil.Numel(shape), seq = shape[^2], dim = shape[^1], bh = n / (seq * dim);
        double s = 1.0 / Math.Sqrt(dim);
        GradCheck.Check(
            new[] { (GradCheck.RandomValues(rng, n, 1.5), shape), (GradCheck.RandomValues(rng, n, 1.5), shape), (GradCheck.RandomValues(rng, n), shape) },
            t => F.ScaledDotProductAttention(t[0], t[1], t[2], dropoutP: p, generator: new Rng(21)),
            x => ReferenceAttention(x[0], x[1], x[2], bh, seq, dim, s, DropoutOf(p, 21)));
    }

    [Test]
    public void DropoutDropsAboutPOfTheWeightsAndScalesTheRest()
    {
        // q = k = 0: every weight is 1/seq; v = identity, so the output rows are the dropped weights themselves.
        const int bh = 4, seq = 64;
        const float p = 0.3f;
        var zeros = Tensor.Zeros(bh, seq, seq);
        var identity = Tensor.FromArray(Enumerable.Range(0, bh * seq * seq).Select(i => i / seq % seq == i % seq ? 1f : 0f).ToArray(), bh, seq, seq);
        float[] Weights(ulong seed) => F.ScaledDotProductAttention(zeros, zeros, identity, dropoutP: p, generator: new Rng(seed)).ToArray();

        var w = Weights(1);
        float kept = 1f / (1f - p) / seq;
        Assert.That(w, Has.All.EqualTo(0f).Or.EqualTo(kept).Within(1e-6f));
        Assert.That(w.Count(x => x == 0f) / (double)w.Length, Is.EqualTo(p).Within(0.02));
        // Another seed, and every row and head, draws its own mask.
        Assert.That(Weights(2), Is.Not.EqualTo(w));
        var rows = Enumerable.Range(0, bh * seq).Select(r => string.Concat(w.Skip(r * seq).Take(seq).Select(x => x == 0f ? '0' : '1'))).ToList();
        Assert.That(rows.Distinct().Count(), Is.EqualTo(rows.Count));
    }

    [Test]
    public void DropoutActsInTrainModeOnlyAndZeroProbabilityChangesNothing()
    {
        var x = Tensor.FromArray(GradCheck.RandomValues(new Random(8), Batch * Seq * Embed).Select(v => (float)v).ToArray(), XShape);
        var plain = new MultiheadAttention(Embed, Heads, rng: new Random(6));
        var dropping = new MultiheadAttention(Embed, Heads, dropout: 0.4f, rng: new Random(6)) { Generator = new Rng(3) };
        var expected = plain.Forward(x).ToArray();

        Assert.That(dropping.Forward(x).ToArray(), Is.Not.EqualTo(expected), "train mode drops weights");
        dropping.Eval();
        Assert.That(dropping.Forward(x).ToArray(), Is.EqualTo(expected), "eval mode");
        plain.Generator = new Rng(3);
        Assert.That(plain.Forward(x).ToArray(), Is.EqualTo(expected), "p = 0 in train mode");
        Assert.That(F.ScaledDotProductAttention(x, x, x, dropoutP: 0f).ToArray(), Is.EqualTo(F.ScaledDotProductAttention(x, x, x).ToArray()));

        dropping.Train();
        dropping.Generator = null;
        Assert.Throws<InvalidOperationException>(() => dropping.Forward(x));
    }

    // ---- multi-head attention ---------------------------------------------------------------------------------

    private const int Batch = 2, Seq = 5, Embed = 16, Heads = 4;

    /// <summary>torch's MHA math in float64, batch-first: packed in-projection, per-head softmax(q·kᵀ/√Dh)·v,
    /// out-projection. Inputs: query, key, value (B, S, E), in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias.</summary>
    private static double[] ReferenceMha(double[] query, double[] key, double[] value, double[] w, double[] b, double[] wo, double[] bo,
        int batch, int seq, int embed, int heads, DropoutMask? dropout = null)
    {
        int dh = embed / heads;
        double[] Project(double[] x, int part)
        {
            var y = new double[batch * seq * embed];
            for (int t = 0; t < batch * seq; t++)
                for (int o = 0; o < embed; o++)
                {
                    double acc = b[part * embed + o];
                    for (int i = 0; i < embed; i++) acc += x[t * embed + i] * w[(part * embed + o) * embed + i];
                    y[t * embed + o] = acc;
                }
            return y;
        }
        // (B, S, H, Dh) → (B·H, S, Dh)
        double[] Heads(double[] x)
        {
            var y = new double[x.Length];
            for (int bi = 0; bi < batch; bi++)
                for (int s = 0; s < seq; s++)
                    for (int h = 0; h < heads; h++)
                        for (int d = 0; d < dh; d++)
                            y[((bi * heads + h) * seq + s) * dh + d] = x[(bi * seq + s) * embed + h * dh + d];
            return y;
        }
        var attended = ReferenceAttention(Heads(Project(query, 0)), Heads(Project(key, 1)), Heads(Project(value, 2)),
            batch * heads, seq, dh, 1.0 / Math.Sqrt(dh), dropout);
        var merged = new double[attended.Length];
        for (int bi = 0; bi < batch; bi++)
            for (int s = 0; s < seq; s++)
                for (int h = 0; h < heads; h++)
                    for (int d = 0; d < dh; d++)
                        merged[(bi * seq + s) * embed + h * dh + d] = attended[((bi * heads + h) * seq + s) * dh + d];
        var output = new double[merged.Length];
        for (int t = 0; t < batch * seq; t++)
            for (int o = 0; o < embed; o++)
            {
                double acc = bo[o];
                for (int i = 0; i < embed; i++) acc += merged[t * embed + i] * wo[o * embed + i];
                output[t * embed + o] = acc;
            }
        return output;
    }

    private static readonly int[] XShape = { Batch, Seq, Embed };

    private static (double[], int[])[] MhaParameters(Random rng) => new[]
    {
        (GradCheck.RandomValues(rng, 3 * Embed * Embed, 0.5), new[] { 3 * Embed, Embed }),
        (GradCheck.RandomValues(rng, 3 * Embed, 0.2), new[] { 3 * Embed }),
        (GradCheck.RandomValues(rng, Embed * Embed, 0.3), new[] { Embed, Embed }),
        (GradCheck.RandomValues(rng, Embed, 0.2), new[] { Embed }),
    };

    [Test]
    public void FunctionalSelfAttentionGradCheck()
    {
        var rng = new Random(3);
        GradCheck.Check(
            new[] { (GradCheck.RandomValues(rng, Batch * Seq * Embed), XShape) }.Concat(MhaParameters(rng)).ToArray(),
            t => F.MultiHeadAttention(t[0], t[0], t[0], Heads, t[1], t[2], t[3], t[4]),
            x => ReferenceMha(x[0], x[0], x[0], x[1], x[2], x[3], x[4], Batch, Seq, Embed, Heads));
    }

    [Test]
    public void FunctionalSelfAttentionWithDropoutGradCheck()
    {
        var rng = new Random(13);
        GradCheck.Check(
            new[] { (GradCheck.RandomValues(rng, Batch * Seq * Embed), XShape) }.Concat(MhaParameters(rng)).ToArray(),
            t => F.MultiHeadAttention(t[0], t[0], t[0], Heads, t[1], t[2], t[3], t[4], dropoutP: 0.25f, generator: new Rng(4)),
            x => ReferenceMha(x[0], x[0], x[0], x[1], x[2], x[3], x[4], Batch, Seq, Embed, Heads, DropoutOf(0.25f, 4)));
    }

    [Test]
    public void FunctionalCrossAttentionGradCheck()
    {
        var rng = new Random(4);
        var inputs = Enumerable.Range(0, 3).Select(_ => (GradCheck.RandomValues(rng, Batch * Seq * Embed), XShape));
        GradCheck.Check(
            inputs.Concat(MhaParameters(rng)).ToArray(),
            t => F.MultiHeadAttention(t[0], t[1], t[2], Heads, t[3], t[4], t[5], t[6]),
            x => ReferenceMha(x[0], x[1], x[2], x[3], x[4], x[5], x[6], Batch, Seq, Embed, Heads));
    }

    [Test]
    public void ModuleMatchesFloat64ReferenceWithParameterGradients()
    {
        var rng = new Random(5);
        var mha = new MultiheadAttention(Embed, Heads, rng: rng);
        // Non-zero biases so their gradients and their effect are exercised.
        mha.InProjBias!.CopyFrom_(GradCheck.RandomValues(rng, 3 * Embed, 0.2).Select(v => (float)v).ToArray());
        mha.OutProj.Bias!.CopyFrom_(GradCheck.RandomValues(rng, Embed, 0.2).Select(v => (float)v).ToArray());
        var parameters = mha.NamedParameters().ToList();
        var xs = new[] { GradCheck.RandomValues(rng, Batch * Seq * Embed).Select(v => (double)(float)v).ToArray() }
            .Concat(parameters.Select(p => p.Tensor.ToArray().Select(v => (double)v).ToArray())).ToArray();
        double[] Reference(double[][] a) => ReferenceMha(a[0], a[0], a[0], a[1], a[2], a[3], a[4], Batch, Seq, Embed, Heads);

        var x = Tensor.FromArray(xs[0].Select(v => (float)v).ToArray(), XShape).RequiresGrad_();
        var y = mha.Forward(x);
        var expected = Reference(xs);
        Assert.That(Compare.ScaledError(y.ToArray().Select(v => (double)v).ToArray(), expected), Is.LessThanOrEqualTo(1e-5), "forward");

        var r = GradCheck.RandomValues(new Random(9), expected.Length);
        y.Mul(Tensor.FromArray(r.Select(v => (float)v).ToArray(), y.Shape)).Sum().Backward();
        var analytic = new[] { ("x", x.Grad!) }.Concat(parameters.Select(p => (p.Name, p.Tensor.Grad!))).ToList();
        for (int k = 0; k < xs.Length; k++)
        {
            var numeric = NumericGradient(Reference, xs, r, k);
            double err = Compare.ScaledError(analytic[k].Item2.ToArray().Select(v => (double)v).ToArray(), numeric);
            Assert.That(err, Is.LessThanOrEqualTo(1e-3), $"gradient of {analytic[k].Item1}");
        }
    }

    /// <summary>Central differences of Σ reference(xs)·r with respect to xs[k].</summary>
    private static double[] NumericGradient(Func<double[][], double[]> reference, double[][] xs, double[] r, int k, double h = 1e-4)
    {
        double Objective() { var y = reference(xs); double s = 0; for (int i = 0; i < y.Length; i++) s += y[i] * r[i]; return s; }
        var g = new double[xs[k].Length];
        for (int i = 0; i < g.Length; i++)
        {
            double keep = xs[k][i];
            xs[k][i] = keep + h; double plus = Objective();
            xs[k][i] = keep - h; double minus = Objective();
            xs[k][i] = keep;
            g[i] = (plus - minus) / (2 * h);
        }
        return g;
    }

    [Test]
    public void StateDictKeysAndInitMatchTorch()
    {
        var mha = new MultiheadAttention(Embed, Heads, rng: new Random(1));
        var state = mha.StateDict().ToList();
        Assert.That(state.Select(s => s.Name), Is.EqualTo(new[] { "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias" }));
        Assert.That(state.Select(s => ShapeUtil.Format(s.Tensor.Shape)),
            Is.EqualTo(new[] { "(48, 16)", "(48)", "(16, 16)", "(16)" }));
        float xavier = MathF.Sqrt(6f / (Embed + 3 * Embed));
        var w = mha.InProjWeight.ToArray();
        Assert.That(w.Max(MathF.Abs), Is.LessThanOrEqualTo(xavier).And.GreaterThan(0.8f * xavier));
        Assert.That(mha.InProjBias!.ToArray(), Has.All.EqualTo(0f));
        Assert.That(mha.OutProj.Bias!.ToArray(), Has.All.EqualTo(0f));
        Assert.That(mha.OutProj.Weight.ToArray().Max(MathF.Abs), Is.LessThanOrEqualTo(1f / MathF.Sqrt(Embed)));

        var noBias = new MultiheadAttention(Embed, Heads, bias: false);
        Assert.That(noBias.StateDict().Select(s => s.Name), Is.EqualTo(new[] { "in_proj_weight", "out_proj.weight" }));
    }
}
