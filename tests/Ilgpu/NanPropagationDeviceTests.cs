using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>
/// A NaN in the input comes out where the CPU backend puts it, on every device: element-wise ops (clamp, max/min,
/// ReLU...), both reduction shapes, softmax and the cross-entropy loss. A device that dropped a NaN (as PTX
/// max.f32 does) could turn a NaN loss into a finite one and slip past the training loop's NaN stop; the PTX side
/// of this is checked offline in <see cref="PtxCompileTests"/>.
/// </summary>
public sealed class NanPropagationDeviceTests : DeviceTestBase
{
    private const double Tolerance = 1e-5;

    /// <summary>Random values with NaN at a few positions (first, a middle one, last).</summary>
    private static float[] WithNaN(int n, int seed, params int[] at)
    {
        var x = RandomValues(n, seed, 0.1f, 3f);
        foreach (int i in at) x[i] = float.NaN;
        return x;
    }

    /// <summary>The NaN positions agree exactly and the other values within tolerance.</summary>
    private static void AssertSameNaNs(float[] actual, float[] expected, string what)
    {
        var expectedNaN = Enumerable.Range(0, expected.Length).Where(i => float.IsNaN(expected[i])).ToArray();
        Assert.That(Enumerable.Range(0, actual.Length).Where(i => float.IsNaN(actual[i])), Is.EqualTo(expectedNaN), $"{what}: NaN positions");
        Assert.That(expectedNaN, Is.Not.Empty, $"{what}: the reference propagates no NaN (test input?)");
        AssertScaled(actual.Select(v => float.IsNaN(v) ? 0f : v).ToArray(), expected.Select(v => float.IsNaN(v) ? 0f : v).ToArray(), Tolerance, what);
    }

    private static IEnumerable<TestCaseData> UnaryCases() =>
        OnDevices(Enum.GetValues<UnaryOp>().Where(op => op != UnaryOp.Sign).Select(op => new object[] { op }));

    [TestCaseSource(nameof(UnaryCases))]
    public void UnaryOpsKeepNaN(string device, UnaryOp op)
    {
        const int n = 67;
        var x = WithNaN(n, (int)op, 0, 33, n - 1);
        float alpha = op is UnaryOp.ClampMin or UnaryOp.ClampMax ? 1f : op == UnaryOp.PowScalar ? 2f : 0.5f;
        var (expected, actual) = RunBoth(device, [x], n, (d, i, y) => d.Unary(op, i[0], y, n, alpha));
        AssertSameNaNs(actual, expected, $"{op} on {device}");
    }

    private static IEnumerable<TestCaseData> BinaryCases() =>
        OnDevices(new[] { BinaryOp.Max, BinaryOp.Min, BinaryOp.Add, BinaryOp.Mul }.Select(op => new object[] { op }));

    [TestCaseSource(nameof(BinaryCases))]
    public void MaxAndMinKeepANaNOfEitherOperand(string device, BinaryOp op)
    {
        const int n = 40;
        var a = WithNaN(n, 1, 3, 20);
        var b = WithNaN(n, 2, 7, 20, 39);
        var (expected, actual) = RunBoth(device, [a, b], n, (d, i, y) => d.Binary(op, i[0], [1], i[1], [1], y, [n]));
        AssertSameNaNs(actual, expected, $"{op} on {device}");
        Assert.That(Enumerable.Range(0, n).Count(i => float.IsNaN(actual[i])), Is.EqualTo(4), $"{op} on {device}: a NaN of either side");
    }

    /// <summary>inner = 1 (one group per output) and inner > 1 (one thread per output); the NaN sits in the middle
    /// of the reduced axis, where a max that drops it would return a finite value.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void ReductionsKeepNaN(string device)
    {
        foreach (var (outer, mid, inner) in new[] { (3, 70, 1), (2, 9, 5) })
        {
            int n = outer * mid * inner, outputs = outer * inner;
            var x = WithNaN(n, 5, (mid / 2) * inner);   // output 0 sees one NaN
            var (expected, actual) = RunBoth(device, [x], outputs, (d, i, y) => d.ReduceMax(i[0], y, outer, mid, inner));
            AssertSameNaNs(actual, expected, $"max over ({outer}, {mid}, {inner}) on {device}");
            (expected, actual) = RunBoth(device, [x], outputs, (d, i, y) => d.ReduceSum(i[0], y, outer, mid, inner));
            AssertSameNaNs(actual, expected, $"sum over ({outer}, {mid}, {inner}) on {device}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void SoftmaxAndCrossEntropyKeepANaNRow(string device)
    {
        const int rows = 3, cols = 50;
        var x = WithNaN(rows * cols, 9, cols + 17);   // row 1 has a NaN logit
        foreach (bool log in new[] { false, true })
        {
            var (expected, actual) = RunBoth(device, [x], rows * cols, (d, i, y) => d.SoftmaxForward(rows, cols, i[0], y, log));
            AssertSameNaNs(actual, expected, $"{(log ? "log-" : "")}softmax on {device}");
            Assert.That(actual.Skip(cols).Take(cols).All(float.IsNaN), $"{(log ? "log-" : "")}softmax on {device}: the whole NaN row");
        }
        var (loss, deviceLoss) = RunBoth(device, [x], rows, (d, i, y) =>
        {
            var targets = d.Allocate(rows, DType.Int32);
            var lse = d.Allocate(rows);
            d.Upload(new[] { 4, 0, 49 }, new Buf(targets, 0));
            d.CrossEntropyForward(rows, cols, i[0], new Buf(targets, 0), 0.1f, y, new Buf(lse, 0));
            d.Synchronize();
            targets.Dispose();
            lse.Dispose();
        });
        AssertSameNaNs(deviceLoss, loss, $"cross-entropy on {device}");
    }
}
