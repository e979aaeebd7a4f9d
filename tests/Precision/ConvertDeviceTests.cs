using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Tests.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Precision;

/// <summary>The backends' Convert (and 16-bit storage: copy, upload, download) on every test device against
/// <see cref="HalfBits"/>, whose CPU paths <see cref="HalfConversionTests"/> check.</summary>
public sealed class ConvertDeviceTests : DeviceTestBase
{
    private static IEnumerable<TestCaseData> Cases() =>
        OnDevices([[DType.BFloat16], [DType.Float16]]);

    [TestCaseSource(nameof(Cases))]
    public void NarrowWidenAndRecast(string device, DType dtype)
    {
        var backend = TestDevices.Get(device);
        var x = HalfConversionTests.Inputs();
        var t = Tensor.FromArray(x, [x.Length], backend);
        var lowered = t.To(dtype);
        Assert.That(lowered.DType, Is.EqualTo(dtype));
        var bits = lowered.ToHalfBits();
        for (int i = 0; i < x.Length; i++)
        {
            ushort expected = HalfBits.FromFloat(x[i], dtype);
            Assert.That(bits[i] == expected || (float.IsNaN(x[i]) && float.IsNaN(HalfBits.ToFloat(bits[i], dtype))),
                $"{dtype} of {x[i]:R}: got 0x{bits[i]:X4}, expected 0x{expected:X4}");
        }

        var widened = lowered.Clone().To(DType.Float32).ToArray();
        for (int i = 0; i < x.Length; i++)
            Assert.That(widened[i], Is.EqualTo(HalfBits.Round(x[i], dtype)), $"{dtype} widen of {x[i]:R}");

        var other = dtype == DType.BFloat16 ? DType.Float16 : DType.BFloat16;
        var recast = lowered.To(other).ToHalfBits();
        for (int i = 0; i < x.Length; i++)
            if (!float.IsNaN(x[i]))
                Assert.That(recast[i], Is.EqualTo(HalfBits.FromFloat(HalfBits.ToFloat(bits[i], dtype), other)), $"{dtype} → {other} of {x[i]:R}");

        var uploaded = Tensor.FromHalfBits(bits, [bits.Length], dtype, backend);
        Assert.That(uploaded.ToHalfBits(), Is.EqualTo(bits));
    }

    [TestCaseSource(nameof(Cases))]
    public void GradientFlowsBackThroughConversion(string device, DType dtype)
    {
        var backend = TestDevices.Get(device);
        var x = Tensor.FromArray(new[] { 1.5f, -2.25f, 3f }, [3], backend).RequiresGrad_();
        x.To(dtype).To(DType.Float32).Mul(Tensor.FromArray(new[] { 2f, 3f, 4f }, [3], backend)).Sum().Backward();
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(new[] { 2f, 3f, 4f }));
    }
}
