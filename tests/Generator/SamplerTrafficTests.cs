using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Models.Generator;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Generator;

/// <summary>A sampling run on an ILGPU device (the CPU accelerator stands in for CUDA) keeps every step on the
/// device: a step makes no host ↔ device copy at all — its random draws are made on the device from the seeded
/// stream, the labels were uploaded once — and the run gives the same tokens and images as the CPU backend.</summary>
[NonParallelizable]
public class SamplerTrafficTests
{
    private static string SamplerCase => Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", "sampler");

    [Test]
    public void GuidedStepsCopyNothing()
    {
        var backend = (IlgpuBackend)TestDevices.GetForModels(TestDevices.IlgpuCpu);
        int[] labels = { 3, 8 };
        static SamplerOptions Steps(int n) => new() { NumSteps = n, GuidanceScale = 2.0 };
        var onCpu = SamplerGolden.Load(SamplerCase).Sampler.Sample(labels, Steps(3), new SeededRandomSource(5));

        var previous = Device.Default;
        Device.Default = backend;
        try
        {
            var (sampler, _) = SamplerGolden.Load(SamplerCase);
            SampleResult? result = null;
            DeviceTraffic Run(int steps)
            {
                var before = backend.Traffic;
                result = sampler.Sample(labels, Steps(steps), new SeededRandomSource(5));
                return backend.Traffic - before;
            }
            var two = Run(2);
            var three = Run(3);
            var perStep = three - two;
            TestContext.Out.WriteLine($"3 steps: {three}; one step more: {perStep}");
            Assert.Multiple(() =>
            {
                Assert.That((perStep.Uploads, perStep.UploadBytes, perStep.Downloads, perStep.DownloadBytes, perStep.Synchronizations),
                    Is.EqualTo((0L, 0L, 0L, 0L, 0L)), "a guided step copies nothing between host and device");
                // Once per run: the labels (the user's input) and the fully masked start's tokens and mask.
                Assert.That(three.Uploads, Is.EqualTo(3));
                Assert.That(three.Downloads, Is.Zero, "the tokens and images stay on the device until read");
                Assert.That(three.Synchronizations, Is.Zero);
            });
            var before = backend.Traffic;
            var images = result!.Images.ToArray();
            Assert.That((backend.Traffic - before).Downloads, Is.EqualTo(1), "the image download");
            Assert.That(result.Tokens.ToIntArray(), Is.EqualTo(onCpu.Tokens.ToIntArray()), "the same draws and tokens as on the CPU");
            Assert.That(result.CombinedTokens.ToIntArray(), Is.EqualTo(onCpu.CombinedTokens.ToIntArray()));
            Compare.AssertClose(images, onCpu.Images.ToArray(), 1e-4, "decoded images");
        }
        finally { Device.Default = previous; }
    }
}
