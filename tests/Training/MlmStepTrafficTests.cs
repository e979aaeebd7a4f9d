using MaskBit.Autograd;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Training;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Training;

/// <summary>A training step's inputs (<see cref="MlmStep.MaskedInputs"/>, what <see cref="MlmStep.Loss"/> feeds the
/// generator) on an ILGPU device (the CPU accelerator stands in for CUDA) are masked on the device: the batch reaches
/// it in one upload (tokens, the labels as the model reads them, the samples' mask thresholds) and nothing comes back
/// or is waited for — the groups' draws, the factorization and the masks are made there. (The step later downloads
/// its logged values once, for the NaN stop.)</summary>
[NonParallelizable]
public class MlmStepTrafficTests
{
    private const int Samples = 2, TokensPerSample = 64;

    private static TokenBatch Batch(int seed)
    {
        var random = new Random(seed);
        return new TokenBatch(Enumerable.Range(0, Samples * TokensPerSample).Select(_ => random.Next(256)).ToArray(),
            Enumerable.Range(0, Samples).Select(_ => random.Next(10)).ToArray(), 0, seed);
    }

    [Test]
    public void AStepsInputsUploadTheBatchOnceAndAreMaskedOnTheDevice()
    {
        var backend = (IlgpuBackend)TestDevices.GetForModels(TestDevices.IlgpuCpu);
        var previous = Device.Default;
        Device.Default = backend;
        try
        {
            var config = MaskBitConfig.Parse(GeneratorTrainerTests.TinyConfig, "tiny.yaml");
            var step = new MlmStep(GeneratorConfig.From(config), GeneratorTrainingSettings.From(config) with { BatchSize = Samples });
            var random = new RngRandomSource(step.Rng);
            step.MaskedInputs(Batch(0), random);
            var before = backend.Traffic;
            var (masked, labels) = step.MaskedInputs(Batch(1), random);
            var perStep = backend.Traffic - before;
            TestContext.Out.WriteLine($"one step's masked inputs: {perStep}");
            Assert.Multiple(() =>
            {
                Assert.That((perStep.Uploads, perStep.UploadBytes), Is.EqualTo((1L, 4L * (Samples * TokensPerSample + 2 * Samples))),
                    "the batch's tokens, labels and thresholds in one upload; no masks or groups from the host");
                Assert.That((perStep.Downloads, perStep.Synchronizations), Is.EqualTo((0L, 0L)));
            });
            Assert.That(masked.Tokens.Shape, Is.EqualTo(new[] { Samples, TokensPerSample, 2 }));
            Assert.That(labels.Shape, Is.EqualTo(new[] { Samples }));
            int[] mask = masked.Mask.ToIntArray(), tokens = masked.Tokens.ToIntArray(), targets = masked.Targets.ToIntArray();
            Assert.That(mask.Distinct().Count(), Is.EqualTo(2), "some groups masked, some not");
            for (int i = 0; i < mask.Length; i++)
                Assert.That(tokens[i], Is.EqualTo(mask[i] != 0 ? step.Generator.Config.MaskToken : targets[i]), $"group {i}");
        }
        finally { Device.Default = previous; }
    }
}
