using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Training;

namespace MaskBit.Tests.Engine;

public class InitTests
{
    private static string Shipped(string file) => Path.Combine(AppContext.BaseDirectory, "models", "fashion_mnist", file);

    [Test]
    public void InitialisersDrawInElementOrderAcrossChunks()
    {
        const int n = 40_000;   // more than one chunk
        var t = Init.Uniform_(Tensor.Empty(new[] { n }), 0.5f, new Random(3));
        var rng = new Random(3);
        var expected = Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * 0.5f)).ToArray();
        Assert.That(t.ToArray(), Is.EqualTo(expected));
    }

    [Test]
    public void ShapesOnlyDrawsNothing()
    {
        long before = Init.ValuesDrawn;
        using (Init.ShapesOnly()) _ = new Linear(64, 32, rng: new Random(1));
        Assert.That(Init.ValuesDrawn, Is.EqualTo(before));
        _ = new Linear(64, 32, rng: new Random(1));
        Assert.That(Init.ValuesDrawn, Is.EqualTo(before + 64 * 32 + 32));
    }

    [Test]
    public void LoadingACheckpointStrictlySkipsTheRandomInit()
    {
        var config = MaskBitConfig.Load(Shipped("generator.yaml"));
        long before = Init.ValuesDrawn;
        var generator = PretrainedModels.Generator(config, Shipped("generator.safetensors"));
        Assert.That(Init.ValuesDrawn, Is.EqualTo(before), "a strict load overwrites every parameter: nothing to draw");

        var file = CheckpointFile.Load(Shipped("generator.safetensors"));
        var posEmb = file.Single(r => r.Name.EndsWith("pos_emb", StringComparison.Ordinal)).ToTensor();
        Assert.That(generator.PosEmb.ToArray(), Is.EqualTo(posEmb.ToArray()));

        PretrainedModels.Generator(config, Shipped("generator.safetensors"), warn: _ => { });
        Assert.That(Init.ValuesDrawn, Is.GreaterThan(before), "a non-strict load keeps the init of what the file lacks");
    }

    [Test]
    public void NoGradTransformerReleasesEachLayersActivationsAndComputesTheSame()
    {
        var encoder = new TransformerEncoder(dim: 32, depth: 3, heads: 4, mlpDim: 64, dropout: 0f, usePrenorm: false, new Random(5));
        encoder.Eval();
        var rng = new Random(6);
        var x = Tensor.FromArray(Enumerable.Range(0, 2 * 9 * 32).Select(_ => (float)rng.NextDouble()).ToArray(), 2, 9, 32);
        var withTape = encoder.Forward(x).ToArray();

        using var noGrad = Tape.NoGrad();
        using var scope = TensorScope.Begin();
        var y = encoder.Forward(x);
        Assert.That(y.ToArray(), Is.EqualTo(withTape));
        Assert.That(scope.OwnedCount, Is.EqualTo(1), "only the last layer's output outlives the forward");
    }
}
