using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Support;
using static MaskBit.Tests.Engine.TinyModelGradients;

namespace MaskBit.Tests.Engine;

/// <summary>Save-for-backward (<see cref="SavedTensors"/>): each op keeps only what its backward reads, a layer's
/// other intermediates are released when it returns, and the saved ones when their backward has run. The gradients
/// equal those of a forward that keeps every activation (<see cref="TensorScope.RetainActivations"/>), bit for bit,
/// for both models in float32 and bf16 autocast on every test device; the forward holds less.</summary>
[NonParallelizable]
public class SavedTensorsTests
{
    /// <summary>What one training forward + backward of a model leaves: every parameter's gradient, and the bytes its
    /// step scope owned after the forward and after the backward.</summary>
    private sealed record Step(List<float[]> Gradients, long BytesAfterForward, long BytesAfterBackward);

    private static Step Run(Module model, Func<Tensor> loss, bool retain, DType? precision)
    {
        model.ZeroGrad();
        using var step = TensorScope.Begin();
        using var retained = retain ? TensorScope.RetainActivations() : null;
        Tensor l;
        using (Autocast.Enable(precision)) l = loss();
        long afterForward = step.OwnedBytes;
        l.Backward();
        return new Step([.. model.Parameters().Select(p => p.Grad!.ToArray())], afterForward, step.OwnedBytes);
    }

    public static IEnumerable<TestCaseData> Cases() =>
        from device in TestDevices.Names
        from precision in new DType?[] { null, DType.BFloat16 }
        select new TestCaseData(device, precision).SetArgDisplayNames(device, Autocast.Name(precision));

    [TestCaseSource(nameof(Cases))]
    public void GeneratorGradientsEqualThoseOfAForwardThatKeepsEveryActivation(string device, DType? precision)
    {
        Step Once(bool retain) => OnDevice(device, () => Run(TinyGenerator(Tiny(), depth: 3, out var loss), loss, retain, precision));
        var retained = Once(retain: true);
        var released = Once(retain: false);
        AssertSameGradients(retained.Gradients, released.Gradients);
        Assert.That(released.BytesAfterForward, Is.LessThan(retained.BytesAfterForward * 0.8),
            $"the forward released its unsaved intermediates ({released.BytesAfterForward} of {retained.BytesAfterForward} bytes held)");
        Assert.That(released.BytesAfterBackward, Is.LessThan(released.BytesAfterForward),
            "the backward released the saved activations it had read");
    }

    [TestCaseSource(nameof(Cases))]
    public void TokenizerGradientsEqualThoseOfAForwardThatKeepsEveryActivation(string device, DType? precision)
    {
        Step Once(bool retain) => OnDevice(device, () => Run(TinyTokenizer(Tiny(), out var loss), loss, retain, precision));
        var retained = Once(retain: true);
        var released = Once(retain: false);
        AssertSameGradients(retained.Gradients, released.Gradients);
        // A residual block's backward reads most of its float32 activations (the fused GroupNorm+SiLU keeps its input,
        // each conv its input); under autocast the convs keep 16-bit copies and the float32 originals go.
        double held = precision == null ? 0.9 : 0.8;
        Assert.That(released.BytesAfterForward, Is.LessThan(retained.BytesAfterForward * held),
            $"the forward released its unsaved intermediates ({released.BytesAfterForward} of {retained.BytesAfterForward} bytes held)");
    }

    [TestCaseSource(nameof(Cases))]
    public void DiscriminatorGradientsEqualThoseOfAForwardThatKeepsEveryActivation(string device, DType? precision)
    {
        // Its stem, stages and head run chained: a tokenizer step's three discriminator forwards no longer hold
        // their activations to the end of the step.
        Step Once(bool retain) => OnDevice(device, () =>
        {
            var discriminator = new NLayerDiscriminatorV2(new DiscriminatorConfig(DiscriminatorConfig.VqganPlusName, 3, 32, 2, true, 4), seed: 3);
            var images = Gaussian([1, 3, 16, 16], seed: 4);
            return Run(discriminator, () => discriminator.Forward(images).Square().Sum(), retain, precision);
        });
        var retained = Once(retain: true);
        var released = Once(retain: false);
        AssertSameGradients(retained.Gradients, released.Gradients);
        // Nearly everything a float32 discriminator makes is read by some backward (conv and norm inputs, LeakyReLU
        // inputs), so the gain is after the backward: nothing of the forward is left for the rest of the step.
        Assert.That(released.BytesAfterBackward, Is.LessThan(retained.BytesAfterBackward / 2),
            $"the backward released the activations it read ({released.BytesAfterBackward} of {retained.BytesAfterBackward} bytes held)");
    }

    [Test]
    public void UnaryOpsKeepOnlyTheSideTheirDerivativeReads()
    {
        // Inside a chained layer: y = exp(silu(x) · 3). SiLU keeps its input, the scale nothing, exp its output;
        // the SiLU output (read by no backward) is released when the layer returns.
        var x = Gaussian([64], seed: 1).RequiresGrad_();
        Tensor? siluOutput = null;
        using var step = TensorScope.Begin();
        var y = TensorScope.Chain(x, [h => (siluOutput = h.Silu()).MulScalar(3f).Exp()]);
        Assert.That(() => siluOutput!.ToArray(), Throws.InvalidOperationException, "the SiLU output is released");
        Assert.That(step.OwnedBytes, Is.EqualTo(64 * sizeof(float)), "exp's output stays (x is the caller's); SiLU's and the scale's outputs are released");
        y.Sum().Backward();
        var expected = x.ToArray().Select(v =>
        {
            double s = 1 / (1 + Math.Exp(-v)), silu = v * s;
            return (float)(Math.Exp(3 * silu) * 3 * (s * (1 + v * (1 - s))));
        }).ToArray();
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(expected).Within(1e-4f).Percent);
    }

    [Test]
    public void WeightsStoredInBf16GiveTheSameLogitsAsBf16Autocast()
    {
        // Autocast rounds float32 weights to bf16 for every GEMM; weights stored in bf16 are that rounding made once.
        var config = GeneratorConfig.From(Tiny());
        var tokens = Tensor.FromInts(Enumerable.Range(0, config.SeqLen * config.Splits).Select(i => i * 7 % config.EffectiveCodebookSize).ToArray(),
            [1, config.SeqLen, config.Splits]);
        float[] Logits(MaskedGenerator generator)
        {
            generator.Eval();
            using var noGrad = Tape.NoGrad();
            using var autocast = Autocast.Enable(DType.BFloat16);
            return generator.Forward(tokens, [3], null).ToArray();
        }
        var float32 = new MaskedGenerator(config, seed: 5);
        MaskedGenerator bf16;
        using (Module.StoreWeightsIn(DType.BFloat16)) bf16 = new MaskedGenerator(config, seed: 5);
        Assert.That(bf16.Transformer.Layers[0].FeedForward.Fc1.Weight.DType, Is.EqualTo(DType.BFloat16));
        Assert.That(bf16.Transformer.Layers[0].FeedForward.Norm.Weight.DType, Is.EqualTo(DType.Float32), "norms stay float32");
        Assert.That(Logits(bf16), Is.EqualTo(Logits(float32)));

        // A float32 state dict loads into the bf16 weights, rounded.
        MaskedGenerator loaded;
        using (Module.StoreWeightsIn(DType.BFloat16))
        using (Init.ShapesOnly()) loaded = new MaskedGenerator(config, seed: 9);
        loaded.LoadStateDict(float32.StateDict().ToDictionary(kv => kv.Name, kv => kv.Tensor));
        Assert.That(Logits(loaded), Is.EqualTo(Logits(float32)));
    }
}
