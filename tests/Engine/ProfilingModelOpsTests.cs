using MaskBit.Autograd;
using MaskBit.Autograd.Profiling;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Tests.Engine;

/// <summary>The model ops sit behind <see cref="MaskBit.Kernels.IBackend.ModelOps"/>; the profiling decorator still
/// times them and hands back the inner backend's results.</summary>
public class ProfilingModelOpsTests
{
    [Test]
    public void ModelOpsAreTimedAndPassedThrough()
    {
        var z = new float[] { 0.5f, -1f, 2f, -0.25f, 1f, 1f, -3f, 0f };
        var profiler = new Profiler();
        float[] bits, quantized;
        using (profiler.Install(CpuBackend.Instance))
        {
            bits = F.TokenBits(Tensor.FromInts([2, 1], 2, 1), bits: 2, maskToken: -1).ToArray();
            quantized = F.LfqQuantize(Tensor.FromArray(z, 1, 2, 2, 2)).Quantized.ToArray();
        }
        Assert.That(bits, Is.EqualTo(new[] { -1f, 1f, 1f, -1f }));
        Assert.That(quantized, Is.EqualTo(z.Select(v => v > 0 ? 1f : -1f)));
        Assert.That(profiler.Summary().Select(r => r.Name), Does.Contain("TokenBits").And.Contain("LfqQuantize"));
    }
}
