using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Element-wise dropout on every test device drops exactly the CPU backend's elements (the mask is a hash
/// of seed and index, <see cref="DropoutMask"/>), including a tail that is not a multiple of the vector width.</summary>
public sealed class DropoutDeviceTests : DeviceTestBase
{
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void SameMaskAsTheCpu(string device)
    {
        const int n = 1003;
        var mask = new DropoutMask(0.3f, 0x1234_5678_9ABC_DEF0UL);
        var (expected, actual) = RunBoth(device, [RandomValues(n, 4)], n, (dev, ins, y) => dev.Dropout(ins[0], y, n, mask));
        Assert.That(actual, Is.EqualTo(expected));
        int dropped = expected.Count(v => v == 0f);
        Assert.That(dropped / (double)n, Is.EqualTo(0.3).Within(0.05));
    }
}
