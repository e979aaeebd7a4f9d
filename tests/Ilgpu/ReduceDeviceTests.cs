using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>ReduceSum / ReduceMax over (outer, mid, inner) on every test device against the CPU backend. The
/// shapes cover both ILGPU strategies: a group per output (inner = 1, or few outputs) and a thread per output.</summary>
public sealed class ReduceDeviceTests : DeviceTestBase
{
    private static readonly (int Outer, int Mid, int Inner)[] Shapes =
    [
        (1, 1000, 1), (7, 33, 1), (4, 1, 9), (2, 50, 3), (3, 5, 70), (1, 3, 300),
    ];

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void ReduceSum(string device)
    {
        foreach (var (outer, mid, inner) in Shapes)
        {
            var x = RandomValues(outer * mid * inner, outer + mid + inner);
            int outputs = outer * inner;
            var (expected, actual) = RunBoth(device, [x], outputs, (d, i, y) => d.ReduceSum(i[0], y, outer, mid, inner));
            AssertScaled(actual, expected, 1e-5, $"sum ({outer}, {mid}, {inner}) on {device}");

            // Scaled and accumulated into an existing output (the mean-gradient path).
            (expected, actual) = RunBoth(device, [x], outputs,
                (d, i, y) => d.ReduceSum(i[0], y, outer, mid, inner, scale: 0.5f, accumulate: true), RandomValues(outputs, 99));
            AssertScaled(actual, expected, 1e-5, $"scaled accumulated sum ({outer}, {mid}, {inner}) on {device}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void ReduceMax(string device)
    {
        foreach (var (outer, mid, inner) in Shapes)
        {
            var x = RandomValues(outer * mid * inner, 7 * outer + mid + inner, lo: -10f, hi: -1f);   // all negative: 0 is no identity
            var (expected, actual) = RunBoth(device, [x], outer * inner, (d, i, y) => d.ReduceMax(i[0], y, outer, mid, inner));
            AssertScaled(actual, expected, 0, $"max ({outer}, {mid}, {inner}) on {device}");
        }
    }
}
