using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels.Cpu;
using MaskBit.Models.Benchmarks;
using MaskBit.Models.Config;
using MaskBit.Models.Training;
using MaskBit.Tests.Support;
using static MaskBit.Tests.Engine.TinyModelGradients;

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

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void SyntheticBlockGradientsEqualThePlainOnesWithDropoutReplayed(string device)
    {
        (List<float[]> Grads, float[] Output, string RngState) Run(bool checkpointed) => OnDevice(device, () =>
        {
            var generator = new Rng(7);
            var block = new Block(generator);
            var x = Gaussian([5, 8], seed: 1).RequiresGrad_();
            var y = checkpointed ? Checkpoint.Run(block.Forward, x, block.Parameters()) : block.Forward(x);
            var h = checkpointed ? Checkpoint.Run(block.Forward, y, block.Parameters()) : block.Forward(y);   // two blocks in a row
            h.Mul(Gaussian([5, 8], seed: 2)).Sum().Backward();
            return (Gradients(block.Parameters(), x), h.ToArray(), generator.State);
        });
        var plain = Run(false);
        var checkpointed = Run(true);
        Assert.That(checkpointed.Output, Is.EqualTo(plain.Output));
        AssertSameGradients(plain.Grads, checkpointed.Grads);
        Assert.That(checkpointed.RngState, Is.EqualTo(plain.RngState), "the recomputation draws nothing new");
    }

    [Test]
    public void CheckpointedNodeKeepsNoActivationsAndRunsPlainWithoutATape()
    {
        var block = new Block(new Rng(1));
        var x = Gaussian([5, 8], seed: 1).RequiresGrad_();
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
            var x = Gaussian([5, 8], seed: 1).Mul(scale);
            var y = checkpointed ? Checkpoint.Run(b.Forward, x, b.Parameters()) : b.Forward(x);
            return Tape.Grad(y.Square().Sum(), [scale])[0].ToArray();
        }
        var plain = Run(false, out _);
        Assert.That(Run(true, out var block), Is.EqualTo(plain));
        Assert.That(block.Parameters().Select(p => p.Grad), Is.All.Null);
    }

    private static MaskBitConfig Tiny(bool checkpointing) => TinyModelGradients.Tiny($"training.activation_checkpointing={checkpointing}");

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void GeneratorGradientsEqualThePlainOnes(string device)
    {
        List<float[]> Run(bool checkpointed) => OnDevice(device, () =>
        {
            var generator = TinyGenerator(Tiny(false), depth: 2, out var loss);
            generator.Transformer.ActivationCheckpointing = checkpointed;
            loss().Backward();
            return Gradients(generator.Parameters());
        });
        AssertSameGradients(Run(false), Run(true));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void TokenizerGradientsEqualThePlainOnes(string device)
    {
        List<float[]> Run(bool checkpointed) => OnDevice(device, () =>
        {
            var model = TinyTokenizer(Tiny(false), out var loss);
            model.ActivationCheckpointing = checkpointed;
            loss().Backward();
            return Gradients(model.Parameters());
        });
        AssertSameGradients(Run(false), Run(true));
    }

    [Test]
    public void ConfigKeyReachesBothStages()
    {
        Assert.That(MlmStep.From(Tiny(true)).Generator.Transformer.ActivationCheckpointing, Is.True);
        Assert.That(MlmStep.From(Tiny(false)).Generator.Transformer.ActivationCheckpointing, Is.False);
        var tokenizer = MaskBitConfig.Load(RepositoryFiles.Find("configs/fashion_mnist_tokenizer.yaml"), ["training.activation_checkpointing=true"]);
        Assert.That(TokenizerStep.From(tokenizer).Model.ActivationCheckpointing, Is.True);
    }

    /// <summary>training.activation_checkpointing lowers the CPU pools' idle mark for each step it runs, and the mark is
    /// back when the step returns: what the process runs after it (evaluation, other steps, later tests) is unaffected.</summary>
    [Test]
    public void CheckpointingLimitsThePoolsIdleMemoryDuringEachStepOnly()
    {
        var generator = MlmStep.From(Tiny(true));
        var batch = new TokenBatch(new int[2 * generator.Generator.Config.SeqLen], [0, 1], 0, 0);
        long during = 0;
        using (TensorScope.Begin())
            generator.Run(() => { during = BufferPool.IdleLimitBytes; return batch; }, 0);
        Assert.That(during, Is.EqualTo(StageTrainingSettings.CheckpointingIdlePoolBytes));
        Assert.That(BufferPool.IdleLimitBytes, Is.EqualTo(long.MaxValue), "restored after the generator's step");

        var tokenizerConfig = MaskBitConfig.Load(RepositoryFiles.Find(ModelWorkloads.SmallTokenizerConfig), ["training.activation_checkpointing=true"]);
        var tokenizer = TokenizerStep.From(tokenizerConfig, batchSize: 1);
        int resolution = TrainingData.Transform(tokenizerConfig).Resolution;
        var images = Tensor.Zeros(1, tokenizer.Model.Config.NumChannels, resolution, resolution);
        using (TensorScope.Begin())
            tokenizer.Run(() => { during = BufferPool.IdleLimitBytes; return images; }, 0);
        Assert.That(during, Is.EqualTo(StageTrainingSettings.CheckpointingIdlePoolBytes));
        Assert.That(BufferPool.IdleLimitBytes, Is.EqualTo(long.MaxValue), "restored after the tokenizer's step");

        long withoutCheckpointing = 0;
        using (TensorScope.Begin())
            MlmStep.From(Tiny(false)).Run(() => { withoutCheckpointing = BufferPool.IdleLimitBytes; return batch; }, 0);
        Assert.That(withoutCheckpointing, Is.EqualTo(long.MaxValue), "no limit without checkpointing");
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
