using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Pooling and nearest upsampling, forward and backward, on every test device against the CPU backend
/// (odd sizes; ties and a NaN for the max pools' first-maximum rule).</summary>
public sealed class PoolDeviceTests : DeviceTestBase
{
    private const double Tolerance = 2e-5;
    private const int Planes = 3;

    /// <summary>Values on a coarse grid, so windows hold ties; one NaN.</summary>
    private static float[] TiedValues(int n, int seed)
    {
        var rng = new Random(seed);
        var v = Enumerable.Range(0, n).Select(_ => (float)rng.Next(-4, 5)).ToArray();
        v[n / 2] = float.NaN;
        return v;
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void AvgPool2x2(string device)
    {
        const int h = 7, w = 5, outLen = Planes * (h / 2) * (w / 2);
        var (expected, actual) = RunBoth(device, [RandomValues(Planes * h * w, 1)], outLen, (d, i, y) => d.AvgPool2x2Forward(Planes, h, w, i[0], y));
        AssertScaled(actual, expected, Tolerance, $"forward on {device}");
        (expected, actual) = RunBoth(device, [RandomValues(outLen, 2)], Planes * h * w, (d, i, dx) => d.AvgPool2x2Backward(Planes, h, w, i[0], dx));
        AssertScaled(actual, expected, Tolerance, $"backward on {device}");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void UpsampleNearest2x(string device)
    {
        const int h = 3, w = 5, outLen = Planes * 4 * h * w;
        var (expected, actual) = RunBoth(device, [RandomValues(Planes * h * w, 1)], outLen, (d, i, y) => d.UpsampleNearest2xForward(Planes, h, w, i[0], y));
        AssertScaled(actual, expected, Tolerance, $"forward on {device}");
        (expected, actual) = RunBoth(device, [RandomValues(outLen, 2)], Planes * h * w, (d, i, dx) => d.UpsampleNearest2xBackward(Planes, h, w, i[0], dx));
        AssertScaled(actual, expected, Tolerance, $"backward on {device}");
    }

    private static IEnumerable<TestCaseData> AdaptiveCases() => OnDevices(
    [
        [7, 9, 3, 4],   // pooling, uneven bins
        [3, 2, 5, 7],   // upsampling: an input lies in several bins
    ]);

    [TestCaseSource(nameof(AdaptiveCases))]
    public void AdaptiveMaxPool(string device, int h, int w, int oh, int ow) =>
        AssertMaxPool(device, h, w, oh, ow,
            (d, x, y, arg) => d.AdaptiveMaxPoolForward(Planes, h, w, oh, ow, x, y, arg),
            (d, dy, arg, dx) => d.AdaptiveMaxPoolBackward(Planes, h, w, oh, ow, dy, arg, dx));

    private static IEnumerable<TestCaseData> WindowCases() => OnDevices(
    [
        [7, 8, 3, 2, 1],   // overlapping windows with padding
        [6, 7, 2, 2, 0],   // tiling windows, odd width dropped
        [5, 5, 3, 1, 1],
    ]);

    [TestCaseSource(nameof(WindowCases))]
    public void MaxPool2d(string device, int h, int w, int kernel, int stride, int padding)
    {
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
        AssertMaxPool(device, h, w, oh, ow,
            (d, x, y, arg) => d.MaxPool2dForward(Planes, h, w, kernel, stride, padding, oh, ow, x, y, arg),
            (d, dy, arg, dx) => d.MaxPool2dBackward(Planes, h, w, kernel, stride, padding, oh, ow, dy, arg, dx));
    }

    [TestCaseSource(nameof(WindowCases))]
    public void AvgPool2d(string device, int h, int w, int kernel, int stride, int padding)
    {
        int oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1, outLen = Planes * oh * ow;
        foreach (bool includePad in new[] { true, false })
        {
            var (expected, actual) = RunBoth(device, [RandomValues(Planes * h * w, 1)], outLen,
                (d, i, y) => d.AvgPool2dForward(Planes, h, w, kernel, stride, padding, oh, ow, includePad, i[0], y));
            AssertScaled(actual, expected, Tolerance, $"forward count_include_pad={includePad} on {device}");
            (expected, actual) = RunBoth(device, [RandomValues(outLen, 2)], Planes * h * w,
                (d, i, dx) => d.AvgPool2dBackward(Planes, h, w, kernel, stride, padding, oh, ow, includePad, i[0], dx));
            AssertScaled(actual, expected, Tolerance, $"backward count_include_pad={includePad} on {device}");
        }
    }

    private void AssertMaxPool(string device, int h, int w, int oh, int ow, Action<IBackend, Buf, Buf, Buf> forward, Action<IBackend, Buf, Buf, Buf> backward)
    {
        int inLen = Planes * h * w, outLen = Planes * oh * ow;
        var x = TiedValues(inLen, 1);
        var dy = RandomValues(outLen, 2);
        var expected = Run(Reference);
        var actual = Run(TestDevices.Get(device));
        Assert.That(actual.Y, Is.EqualTo(expected.Y), $"forward on {device}");
        Assert.That(actual.Argmax, Is.EqualTo(expected.Argmax), $"argmax on {device}");
        // Every input gathers its outputs in ascending order, as the CPU scatters them: the same bits, no atomics.
        Assert.That(actual.Dx, Is.EqualTo(expected.Dx), $"backward on {device} (bit for bit)");

        (float[] Y, int[] Argmax, float[] Dx) Run(IBackend d)
        {
            Buf xb = Put(d, x), y = Put(d, new float[outLen]), arg = PutInts(d, new int[outLen]), dx = Put(d, new float[inLen]);
            forward(d, xb, y, arg);
            backward(d, Put(d, dy), arg, dx);
            var argmax = new int[outLen];
            d.Download(arg, argmax);
            return (Read(d, y, outLen), argmax, Read(d, dx, inLen));
        }
    }
}
