using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Tokenizer;

/// <summary>Taming's BatchNorm PatchGAN (model.discriminator.name "Original") against the reference's
/// OriginalNLayerDiscriminator (tests/Fixtures/taming/make_fixture.py: hidden 8, 3 stages, one train-mode step).</summary>
public class PatchGanTests
{
    private static string Dir => Path.Combine(AppContext.BaseDirectory, "Fixtures", "taming");

    private static DiscriminatorConfig Config(int hidden, int stages) =>
        DiscriminatorConfig.From(MaskBitConfig.Parse(
            $"model:\n    discriminator:\n        name: Original\n        num_channels: 3\n        hidden_channels: {hidden}\n        num_stages: {stages}\n", "d.yaml"));

    private static void AssertClose(string name, Tensor actual, NpyArray expected, double tolerance = 1e-4)
    {
        Assert.That(actual.Shape, Is.EqualTo(expected.Shape), name);
        double error = Compare.ScaledError(actual.ToArray(), expected.ToFloat32());
        Assert.That(error, Is.LessThanOrEqualTo(tolerance), $"{name}: scaled error {error:E2}");
    }

    [Test]
    public void TrainStepMatchesTheReference()
    {
        var model = GanDiscriminator.FromConfig(Config(8, 3));
        Assert.That(model, Is.InstanceOf<PatchGanDiscriminator>());
        ModuleCheckpoint.LoadInto(model, Path.Combine(Dir, "discriminator.bin"));
        var io = Npy.ReadNpz(Path.Combine(Dir, "discriminator_io.npz"));
        var input = Tensor.FromArray(io["input"].ToFloat32(), io["input"].Shape).RequiresGrad_();

        model.Train();
        var logits = model.Forward(input);
        AssertClose("logits", logits, io["logits"]);
        logits.Mul(Tensor.FromArray(io["r"].ToFloat32(), io["r"].Shape)).Sum().Backward();
        AssertClose("grad.input", input.Grad!, io["grad.input"], 1e-3);
        foreach (var (name, value) in model.StateDict())
        {
            if (!io.TryGetValue("after." + name, out var after)) continue;
            if (name.EndsWith("num_batches_tracked")) Assert.That(value.ToIntArray(), Is.EqualTo(after.ToInt32()), name);
            else AssertClose(name, value, after, 1e-5);
        }
        Assert.That(model.StateDict().Count(e => io.ContainsKey("after." + e.Name)), Is.EqualTo(9), "three BatchNorms with three buffers each");

        model.Eval();
        using var noGrad = Tape.NoGrad();
        AssertClose("eval_logits", model.Forward(input), io["eval_logits"]);
    }

    [Test]
    public void StateDictKeysFollowTheReferenceSequential()
    {
        using var shapesOnly = Init.ShapesOnly();
        var names = new PatchGanDiscriminator(Config(64, 3)).StateDict().Select(e => e.Name).ToArray();
        Assert.That(names, Is.EqualTo(new[]
        {
            "main.0.weight", "main.0.bias",
            "main.2.weight", "main.3.weight", "main.3.bias", "main.3.running_mean", "main.3.running_var", "main.3.num_batches_tracked",
            "main.5.weight", "main.6.weight", "main.6.bias", "main.6.running_mean", "main.6.running_var", "main.6.num_batches_tracked",
            "main.8.weight", "main.9.weight", "main.9.bias", "main.9.running_mean", "main.9.running_var", "main.9.num_batches_tracked",
            "main.11.weight", "main.11.bias",
        }));
    }

    [Test]
    public void TamingsDefaultSizeHasItsParameterCountAndInitialisation()
    {
        var model = new PatchGanDiscriminator(Config(64, 3), seed: 2);
        Assert.That(model.ParameterCount(), Is.EqualTo(2765633));
        var conv = model.StateDict().First(e => e.Name == "main.5.weight").Tensor.ToArray();
        var bn = model.StateDict().First(e => e.Name == "main.6.weight").Tensor.ToArray();
        Assert.That(Std(conv), Is.EqualTo(0.02).Within(0.001));
        Assert.That(bn.Average(), Is.EqualTo(1.0).Within(0.005));
        Assert.That(Std(bn), Is.EqualTo(0.02).Within(0.003));
        Assert.That(model.StateDict().First(e => e.Name == "main.6.bias").Tensor.ToArray(), Has.All.EqualTo(0f));

        static double Std(float[] v) { double m = v.Average(); return Math.Sqrt(v.Sum(x => (x - m) * (x - m)) / v.Length); }
    }

    [Test]
    public void LossTrainsThePatchGanWhenTheConfigNamesIt()
    {
        var loss = new VqganLoss(Config(8, 2), new VqganLossConfig(1f, "none", 0f, true, 1f, 0, GanLossType.Hinge, 1f, 0.1f, false, 0f, 0.999, 2000, 0f));
        Assert.That(loss.Discriminator, Is.InstanceOf<PatchGanDiscriminator>());
        var real = Tensor.FromArray(GradCheck.RandomValues(new Random(1), 2 * 3 * 16 * 16).Select(v => (float)v).ToArray(), 2, 3, 16, 16);
        var (d, _) = loss.ForwardDiscriminator(real, real.MulScalar(0.5f), globalStep: 1);
        d.Backward();
        Assert.That(loss.Discriminator.Parameters().All(p => p.Grad != null), Is.True);
        Assert.That(loss.StateDict().Select(e => e.Name), Does.Contain("discriminator.main.3.running_mean"));
    }
}
