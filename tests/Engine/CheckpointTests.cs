using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Models.Benchmarks;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;
using MaskBit.Tests.Support;
using MaskBit.Tests.Training;

namespace MaskBit.Tests.Engine;

/// <summary>Activation checkpointing (<see cref="Checkpoint"/>, training.activation_checkpointing): the gradients of
/// a checkpointed block equal the plain block's (dropout masks replayed), on a small synthetic block and on the
/// generator's and the tokenizer's checkpointed stages, on every test device; training steps give the same losses.</summary>
[NonParallelizable]
public class CheckpointTests
{
    /// <summary>A residual MLP with dropout: x + Dropout(W₂·GELU(W₁·x)).</summary>
    private sealed class Block : Module
    {
        public Linear Fc1 { get; }
        public Linear Fc2 { get; }
        public Dropout Dropout { get; }

        public Block(Rng dropoutGenerator)
        {
            var rng = new Random(4);
            Fc1 = Register("fc1", new Linear(8, 16, rng: rng));
            Fc2 = Register("fc2", new Linear(16, 8, rng: rng));
            Dropout = Register("dropout", new Dropout(0.3f) { Generator = dropoutGenerator });
        }

        public Tensor Forward(Tensor x) => Dropout.Forward(Fc2.Forward(Fc1.Forward(x).Gelu())).Add(x);
    }

    private static T OnDevice<T>(string device, Func<T> body)
    {
        var previous = Device.Default;
        Device.Default = TestDevices.GetForModels(device);
        try { return body(); }
        finally { Device.Default = previous; }
    }

    private static Tensor Input(int[] shape, int seed)
    {
        var rng = new Rng((ulong)seed);
        var values = new float[shape.Aggregate(1, (a, b) => a * b)];
        for (int i = 0; i < values.Length; i++) values[i] = (float)rng.NextGaussian();
        return Tensor.FromArray(values, shape);
    }

    /// <summary>Every parameter's gradient (and the input's, when it wants one) after one backward.</summary>
    private static List<float[]> Gradients(IEnumerable<Tensor> parameters, Tensor? input = null) =>
        [.. parameters.Select(p => p.Grad!.ToArray()), .. input == null ? [] : new[] { input.Grad!.ToArray() }];

    private static void AssertSame(List<float[]> plain, List<float[]> checkpointed)
    {
        Assert.That(checkpointed, Has.Count.EqualTo(plain.Count));
        for (int i = 0; i < plain.Count; i++) Assert.That(checkpointed[i], Is.EqualTo(plain[i]), $"gradient {i}");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void SyntheticBlockGradientsEqualThePlainOnesWithDropoutReplayed(string device)
    {
        (List<float[]> Grads, float[] Output, string RngState) Run(bool checkpointed) => OnDevice(device, () =>
        {
            var generator = new Rng(7);
            var block = new Block(generator);
            var x = Input([5, 8], seed: 1).RequiresGrad_();
            var y = checkpointed ? Checkpoint.Run(block.Forward, x, block.Parameters()) : block.Forward(x);
            var h = checkpointed ? Checkpoint.Run(block.Forward, y, block.Parameters()) : block.Forward(y);   // two blocks in a row
            h.Mul(Input([5, 8], seed: 2)).Sum().Backward();
            return (Gradients(block.Parameters(), x), h.ToArray(), generator.State);
        });
        var plain = Run(false);
        var checkpointed = Run(true);
        Assert.That(checkpointed.Output, Is.EqualTo(plain.Output));
        AssertSame(plain.Grads, checkpointed.Grads);
        Assert.That(checkpointed.RngState, Is.EqualTo(plain.RngState), "the recomputation draws nothing new");
    }

    [Test]
    public void CheckpointedNodeKeepsNoActivationsAndRunsPlainWithoutATape()
    {
        var block = new Block(new Rng(1));
        var x = Input([5, 8], seed: 1).RequiresGrad_();
        using (var scope = TensorScope.Begin())
        {
            var y = Checkpoint.Run(block.Forward, x, block.Parameters());
            Assert.That(scope.OwnedCount, Is.EqualTo(1), "only the block's output outlives its forward");
            Assert.That(y.RequiresGrad, Is.True);
        }
        using (Tape.NoGrad()) Assert.That(Checkpoint.Run(block.Forward, x, block.Parameters()).RequiresGrad, Is.False);
    }

    [Test]
    public void GradTowardsATensorBeforeTheBlockEqualsThePlainOneAndLeavesParametersAlone()
    {
        // As the adaptive GAN weight's torch.autograd.grad towards one layer: only what is asked for is computed.
        float[] Run(bool checkpointed, out Block block)
        {
            var b = block = new Block(new Rng(1));
            var scale = Tensor.Full([1], 3f).RequiresGrad_();
            var x = Input([5, 8], seed: 1).Mul(scale);
            var y = checkpointed ? Checkpoint.Run(b.Forward, x, b.Parameters()) : b.Forward(x);
            return Tape.Grad(y.Square().Sum(), [scale])[0].ToArray();
        }
        var plain = Run(false, out _);
        Assert.That(Run(true, out var block), Is.EqualTo(plain));
        Assert.That(block.Parameters().Select(p => p.Grad), Is.All.Null);
    }

    private static MaskBitConfig Tiny(bool checkpointing) =>
        MaskBitConfig.Parse(GeneratorTrainerTests.TinyConfig, "tiny.yaml", [$"training.activation_checkpointing={checkpointing}"]);

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void GeneratorGradientsEqualThePlainOnes(string device)
    {
        List<float[]> Run(bool checkpointed) => OnDevice(device, () =>
        {
            var config = GeneratorConfig.From(Tiny(false)) with { Depth = 2 };
            var generator = new MaskedGenerator(config, seed: 5);
            generator.Transformer.ActivationCheckpointing = checkpointed;
            generator.Train();
            var tokenRng = new Random(3);
            int batch = 2;
            var tokens = Tensor.FromInts(Enumerable.Range(0, batch * config.SeqLen * config.Splits).Select(_ => tokenRng.Next(config.EffectiveCodebookSize)).ToArray(),
                [batch, config.SeqLen, config.Splits]);
            var logits = generator.Forward(tokens, [1, 4], new bool[batch]);
            logits.Mul(Input(logits.Shape, seed: 6)).Sum().Backward();
            return Gradients(generator.Parameters());
        });
        AssertSame(Run(false), Run(true));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void TokenizerGradientsEqualThePlainOnes(string device)
    {
        List<float[]> Run(bool checkpointed) => OnDevice(device, () =>
        {
            var model = new ConvVQModel(TokenizerConfig.From(Tiny(false)), seed: 2) { ActivationCheckpointing = checkpointed };
            var images = Input([1, 3, 16, 16], seed: 8);
            var (decoded, result) = model.Forward(images);
            decoded.Sub(images).Square().Mean().Add(result.QuantizerLoss).Backward();
            return Gradients(model.Parameters());
        });
        AssertSame(Run(false), Run(true));
    }

    [Test]
    public void ConfigKeyReachesBothStages()
    {
        Assert.That(MlmStep.From(Tiny(true)).Generator.Transformer.ActivationCheckpointing, Is.True);
        Assert.That(MlmStep.From(Tiny(false)).Generator.Transformer.ActivationCheckpointing, Is.False);
        var tokenizer = MaskBitConfig.Load(RepositoryFiles.Find("configs/fashion_mnist_tokenizer.yaml"), ["training.activation_checkpointing=true"]);
        Assert.That(TokenizerStep.From(tokenizer).Model.ActivationCheckpointing, Is.True);
    }

    /// <summary>Three training steps of each stage (the generator with dropout, the tokenizer with its discriminator
    /// and adaptive GAN weight) give the same losses with checkpointing on.</summary>
    [Test]
    public void TrainingStepsGiveTheSameLosses()
    {
        double[] Losses(Func<IModelStep> create)
        {
            var step = create();
            return [step.Run(), step.Run(), step.Run()];
        }
        MaskBitConfig Config(string file, bool on) =>
            MaskBitConfig.Load(RepositoryFiles.Find(file), [$"training.activation_checkpointing={on}"]);
        foreach (var file in new[] { ModelWorkloads.SmallGeneratorConfig, ModelWorkloads.SmallTokenizerConfig })
        {
            IModelStep Step(bool on) => file == ModelWorkloads.SmallGeneratorConfig
                ? new MlmStepWorkload(Config(file, on), batchSize: 4)
                : new TokenizerStepWorkload(Config(file, on), batchSize: 2);
            Assert.That(Losses(() => Step(true)), Is.EqualTo(Losses(() => Step(false))), file);
        }
    }
}
