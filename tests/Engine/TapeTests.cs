using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Tests.Engine;

public class TapeTests
{
    private static Tensor T(params float[] v) => Tensor.FromArray(v, v.Length);

    [Test]
    public void BackwardAccumulatesIntoLeavesAcrossCalls()
    {
        var x = T(1, 2, 3).RequiresGrad_();
        x.Mul(x).Sum().Backward();
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(new[] { 2f, 4f, 6f }));
        x.MulScalar(3).Sum().Backward();
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(new[] { 5f, 7f, 9f }));
        x.ZeroGrad();
        Assert.That(x.Grad, Is.Null);
    }

    [Test]
    public void ReusedTensorGetsSummedGradient()
    {
        var x = T(2).RequiresGrad_();
        var y = x.Mul(x).Add(x).Mul(x); // x³ + x² → 3x² + 2x = 16
        y.Sum().Backward();
        Assert.That(x.Grad!.Item(), Is.EqualTo(16f));
    }

    [Test]
    public void GradAccumulatedHookSeesEachLeafOnceWithItsFinalGradientBeforeTheBackwardEnds()
    {
        // y = (a·x)·b + a: a is used twice (first by the last op), b once near the end, x once at the start.
        var a = T(2).RequiresGrad_();
        var b = T(3).RequiresGrad_();
        var x = T(5).RequiresGrad_();
        a.Grad = T(100);   // an earlier backward's gradient: the hook sees the sum
        var seen = new List<(Tensor Leaf, float Grad)>();
        var y = a.Mul(x).Mul(b).Add(a);
        using (Tape.OnGradAccumulated(leaf => seen.Add((leaf, leaf.Grad!.Item()))))
            y.Sum().Backward();
        Assert.That(seen.Select(s => s.Leaf), Is.EquivalentTo(new[] { a, b, x }), "every leaf once");
        Assert.That(seen.IndexOf((b, 10f)), Is.LessThan(seen.IndexOf((a, 100 + 15 + 1f))), "b is final before the first op is undone");
        Assert.That(seen, Does.Contain((x, 6f)));
        // Outside the scope no hook runs.
        seen.Clear();
        a.Mul(b).Sum().Backward();
        Assert.That(seen, Is.Empty);
    }

    [Test]
    public void NoGradScopeRecordsNothing()
    {
        var x = T(1, 2).RequiresGrad_();
        Tensor y;
        using (Tape.NoGrad()) y = x.MulScalar(2);
        Assert.That(y.RequiresGrad, Is.False);
        Assert.That(Tape.IsGradEnabled, Is.True);
        Assert.Throws<InvalidOperationException>(() => y.Sum().Backward());
    }

    [Test]
    public void DetachCutsTheGraphAndStraightThroughPassesGradient()
    {
        var x = T(0.3f, -2f).RequiresGrad_();
        var q = x.Sign();
        var st = x.StraightThrough(q);            // forward: sign(x); backward: identity
        Assert.That(st.ToArray(), Is.EqualTo(new[] { 1f, -1f }));
        st.Mul(T(5, 7)).Sum().Backward();
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(new[] { 5f, 7f }));
        Assert.That(x.Detach().RequiresGrad, Is.False);
    }

    [Test]
    public void GradOfTwoLossesWithRespectToOneParameterInOneStep()
    {
        // The tokenizer's adaptive GAN weight: ‖∂nll/∂W‖ / ‖∂g/∂W‖ with both losses built on one forward.
        var w = T(1, -2, 3).RequiresGrad_();
        var h = w.Mul(T(2, 2, 2));
        var nll = h.Square().Sum();
        var g = h.Sum().Neg();
        var gNll = Tape.Grad(nll, new[] { w })[0];
        var gG = Tape.Grad(g, new[] { w })[0];
        Assert.That(gNll.ToArray(), Is.EqualTo(new[] { 8f, -16f, 24f }));
        Assert.That(gG.ToArray(), Is.EqualTo(new[] { -2f, -2f, -2f }));
        Assert.That(w.Grad, Is.Null, "Tape.Grad leaves Grad untouched");
        // And the graph is still usable for the real backward afterwards.
        nll.Add(g).Backward();
        Assert.That(w.Grad!.ToArray(), Is.EqualTo(new[] { 6f, -18f, 22f }));
    }

    [Test]
    public void GradOfUnrelatedInputIsZero()
    {
        var a = T(1, 2).RequiresGrad_();
        var b = T(3).RequiresGrad_();
        var gb = Tape.Grad(a.Sum(), new[] { b })[0];
        Assert.That(gb.ToArray(), Is.EqualTo(new[] { 0f }));
    }

    [Test]
    public void GradRunsOnlyTheOpsOnPathsToTheWantedInputs()
    {
        // The adaptive GAN weight's case: a gradient w.r.t. the last layer's weight needs that layer's backward
        // alone (and from it the weight gradient only), not a backward through the layers before it.
        var x = Tensor.FromArray(new[] { 1f, -2f, 3f, 0.5f }, 2, 2);
        var first = Tensor.FromArray(new[] { 0.5f, 1f, -1f, 2f }, 2, 2).RequiresGrad_();
        var last = Tensor.FromArray(new[] { 1f, 0.25f, -0.5f, 1f }, 2, 2).RequiresGrad_();
        var hidden = Tensor.MatMul(x, first).Gelu();
        var loss = Tensor.MatMul(hidden, last).Square().Sum();
        var listener = new BackwardNames();
        Tape.Listener = listener;
        Tensor gradLast;
        try { gradLast = Tape.Grad(loss, new[] { last })[0]; }
        finally { Tape.Listener = null; }
        Assert.That(listener.Names, Does.Not.Contain("gelu"), "gelu is off the path");
        Assert.That(listener.Names.Count(name => name == "matmul"), Is.EqualTo(1), "the first matmul is off the path");

        loss.Backward();
        Assert.That(gradLast.ToArray(), Is.EqualTo(last.Grad!.ToArray()).Within(1e-6f), "the pruned gradient equals the full backward's");
        Assert.That(first.Grad, Is.Not.Null);
    }

    private sealed class BackwardNames : ITapeListener
    {
        public List<string> Names { get; } = new();
        public void OnForward(string op) { }
        public IDisposable? OnBackward(string op) { Names.Add(op); return null; }
    }

    [Test]
    public void LeafGradsDoNotAliasEachOther()
    {
        var a = T(1, 2).RequiresGrad_();
        var b = T(3, 4).RequiresGrad_();
        a.Add(b).Sum().Backward();
        a.Grad!.Mul_(10);
        Assert.That(b.Grad!.ToArray(), Is.EqualTo(new[] { 1f, 1f }));
    }

    private sealed class Block : Module
    {
        public Linear Conv1 { get; }
        public ModuleList<Linear> Layers { get; }
        public Tensor Running { get; }
        public Block()
        {
            Running = Buffer("running_mean", Tensor.Zeros(2));
            Conv1 = Register("conv1", new Linear(2, 3));
            Layers = Register("layers", new ModuleList<Linear>(new[] { new Linear(3, 3, bias: false), new Linear(3, 1) }));
        }
    }

    [Test]
    public void StateDictUsesReferenceNamesAndOrder()
    {
        var m = new Block();
        var keys = m.StateDict().Select(k => k.Name).ToArray();
        Assert.That(keys, Is.EqualTo(new[] { "running_mean", "conv1.weight", "conv1.bias", "layers.0.weight", "layers.1.weight", "layers.1.bias" }));
        Assert.That(m.NamedParameters().Count(), Is.EqualTo(5));
        Assert.That(m.ParameterCount(), Is.EqualTo(6 + 3 + 9 + 3 + 1));
    }

    [Test]
    public void LoadStateDictIsStrictAndListsEveryProblem()
    {
        var m = new Block();
        var sd = m.StateDict().ToDictionary(k => k.Name, k => k.Tensor.CloneNoGradForTest());
        sd.Remove("conv1.bias");
        sd["layers.0.weight"] = Tensor.Zeros(4, 4);
        sd["extra.key"] = Tensor.Zeros(1);
        var e = Assert.Throws<InvalidDataException>(() => m.LoadStateDict(sd))!;
        Assert.That(e.Message, Does.Contain("missing key 'conv1.bias'"));
        Assert.That(e.Message, Does.Contain("shape mismatch for 'layers.0.weight'"));
        Assert.That(e.Message, Does.Contain("unexpected key 'extra.key'"));
        var problems = m.LoadStateDict(sd, strict: false);
        Assert.That(problems, Has.Count.EqualTo(3));
    }

    [Test]
    public void LoadStateDictCopiesInPlace()
    {
        var m = new Block();
        var w = m.Conv1.Weight;
        var sd = m.StateDict().ToDictionary(k => k.Name, k => Tensor.Full(k.Tensor.Shape, 0.5f));
        m.LoadStateDict(sd);
        Assert.That(m.Conv1.Weight, Is.SameAs(w));
        Assert.That(w.ToArray(), Is.All.EqualTo(0.5f));
    }

    [Test]
    public void TrainEvalPropagatesToChildren()
    {
        var m = new Block();
        m.Eval();
        Assert.That(m.Layers[1].Training, Is.False);
        m.Train();
        Assert.That(m.Conv1.Training, Is.True);
    }
}

internal static class TensorTestExtensions
{
    public static Tensor CloneNoGradForTest(this Tensor t) => Tensor.FromArray(t.ToArray(), t.Shape);
}
