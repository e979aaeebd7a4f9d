using MaskBit.Autograd;
using MaskBit.Models.Perceptual;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Perceptual;

/// <summary>ConvNeXt's pieces — the CNBlock (depthwise 7×7, channels-last LayerNorm, GELU MLP, layer scale,
/// residual) and LayerNorm2d — forward and input gradient on every test device against the CPU backend (the full
/// ConvNeXt-Small runs against the reference in <see cref="PerceptualNetsGolden"/>, on the CPU).</summary>
[NonParallelizable]
public sealed class ConvNeXtBlockDeviceTests
{
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void BlockAndLayerNorm2dMatchTheCpu(string device)
    {
        var (cpuOut, cpuGrad) = Run(Autograd.Device.Cpu);
        var (out_, grad) = Run(TestDevices.GetForModels(device));
        Assert.That(Compare.ScaledError(out_, cpuOut), Is.LessThanOrEqualTo(2e-5), "forward");
        Assert.That(Compare.ScaledError(grad, cpuGrad), Is.LessThanOrEqualTo(2e-5), "input gradient");
    }

    private static (float[] Output, float[] Grad) Run(Kernels.IBackend device)
    {
        const int channels = 8;
        var saved = Autograd.Device.Default;
        Autograd.Device.Default = device;
        try
        {
            using var scope = TensorScope.Begin();
            var block = new ConvNeXtBlock(channels);
            var norm = new LayerNorm2d(channels);
            var rng = new Random(11);
            foreach (var module in new Autograd.Nn.Module[] { block, norm })
                module.LoadStateDict(module.StateDict().ToDictionary(e => e.Name, e => Tensor.FromArray(
                    Enumerable.Range(0, (int)e.Tensor.Numel).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray(), e.Tensor.Shape)));
            var x = Tensor.FromArray(Enumerable.Range(0, 2 * channels * 9 * 10).Select(i => MathF.Sin(0.37f * i)).ToArray(), 2, channels, 9, 10)
                .RequiresGrad_();
            var y = norm.Forward(block.Forward(x));
            y.Square().Sum().Backward();
            return (y.ToArray(), x.Grad!.ToArray());
        }
        finally { Autograd.Device.Default = saved; }
    }
}
