using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Models.Generator;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Generator;

/// <summary>A sampling run on an ILGPU device (the CPU accelerator stands in for CUDA) keeps every step on the
/// device: it uploads only its random draws and labels, never reads logits or probabilities back, and gives the
/// same tokens as the CPU backend.</summary>
[NonParallelizable]
public class SamplerTrafficTests
{
    private static string SamplerCase => Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", "sampler");

    [Test]
    public void StepsDownloadNothing()
    {
        var backend = (IlgpuBackend)TestDevices.GetForModels(TestDevices.IlgpuCpu);
        var options = new SamplerOptions { NumSteps = 3, GuidanceScale = 2.0 };
        int[] labels = { 3, 8 };
        var onCpu = SamplerGolden.Load(SamplerCase).Sampler.Sample(labels, options, new SeededRandomSource(5));

        var previous = Device.Default;
        Device.Default = backend;
        try
        {
            var (sampler, _) = SamplerGolden.Load(SamplerCase);
            var before = backend.Traffic;
            var result = sampler.Sample(labels, options, new SeededRandomSource(5));
            var run = backend.Traffic - before;
            TestContext.Out.WriteLine($"3 steps: {run}");
            Assert.Multiple(() =>
            {
                // The start's masked tokens and mask (2); per step the uniforms, the Gumbel values and the labels (3 × 3);
                // after the last step, once per run, combining the groups into tokens (Factorization.Combine) runs on
                // the host (1 up, 1 down).
                Assert.That(run.Uploads, Is.EqualTo(2 + 3 * 3 + 1));
                Assert.That(run.Downloads, Is.EqualTo(1), "only the final tokens, after the steps");
                Assert.That(run.Synchronizations, Is.Zero);
                Assert.That(result.Tokens.ToIntArray(), Is.EqualTo(onCpu.Tokens.ToIntArray()), "the same draws as on the CPU");
            });
        }
        finally { Device.Default = previous; }
    }
}
