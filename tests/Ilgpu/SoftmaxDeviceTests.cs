using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Softmax / log-softmax and label-smoothed cross-entropy, forward and backward, on every test device
/// against the CPU backend: odd row lengths, rows shorter and longer than a group, large logits.</summary>
public sealed class SoftmaxDeviceTests : DeviceTestBase
{
    private const double Tolerance = 2e-5;
    private static readonly (int Rows, int Cols)[] Shapes = [(3, 5), (4, 77), (1, 1000)];

    private static IEnumerable<TestCaseData> SoftmaxCases() => OnDevices([[false], [true]]);

    [TestCaseSource(nameof(SoftmaxCases))]
    public void Softmax(string device, bool log)
    {
        foreach (var (rows, cols) in Shapes) CheckSoftmax(TestDevices.Get(device), rows, cols, log, device);
    }

    private static IEnumerable<TestCaseData> CrossEntropyCases() => OnDevices([[0f], [0.1f]]);

    [TestCaseSource(nameof(CrossEntropyCases))]
    public void CrossEntropy(string device, float labelSmoothing)
    {
        foreach (var (rows, cols) in Shapes) CheckCrossEntropy(TestDevices.Get(device), rows, cols, labelSmoothing, device);
    }

    [Test]
    public void TwoWarpGroups()
    {
        CheckSoftmax(TwoWarpBackend.Instance, 2, 150, log: false, "two-warp groups");
        CheckSoftmax(TwoWarpBackend.Instance, 2, 150, log: true, "two-warp groups");
        CheckCrossEntropy(TwoWarpBackend.Instance, 2, 150, 0.1f, "two-warp groups");
    }

    private void CheckSoftmax(IBackend device, int rows, int cols, bool log, string where)
    {
        int n = rows * cols;
        float[] x = RandomValues(n, n, lo: 20f, hi: 28f), dy = RandomValues(n, 2);
        float[][] Run(IBackend dev)
        {
            Buf y = Put(dev, Unset(n)), dx = Put(dev, Unset(n));
            dev.SoftmaxForward(rows, cols, Put(dev, x), y, log);
            dev.SoftmaxBackward(rows, cols, y, Put(dev, dy), dx, log);
            return [Read(dev, y, n), Read(dev, dx, n)];
        }
        var (expected, actual) = (Run(Reference), Run(device));
        string what = $"{(log ? "log-softmax" : "softmax")} ({rows}, {cols}) on {where}";
        AssertScaled(actual[0], expected[0], Tolerance, $"{what}: y");
        AssertScaled(actual[1], expected[1], Tolerance, $"{what}: dx");
    }

    private void CheckCrossEntropy(IBackend device, int rows, int cols, float labelSmoothing, string where)
    {
        int n = rows * cols;
        float[] logits = RandomValues(n, n, lo: -8f, hi: 8f), dloss = RandomValues(rows, 2);
        int[] targets = Enumerable.Range(0, rows).Select(r => (r * 7 + 3) % cols).ToArray();
        float[][] Run(IBackend dev)
        {
            Buf x = Put(dev, logits), t = PutInts(dev, targets), loss = Put(dev, Unset(rows)), lse = Put(dev, Unset(rows)), dx = Put(dev, Unset(n));
            dev.CrossEntropyForward(rows, cols, x, t, labelSmoothing, loss, lse);
            dev.CrossEntropyBackward(rows, cols, x, t, labelSmoothing, lse, Put(dev, dloss), dx);
            return [Read(dev, loss, rows), Read(dev, lse, rows), Read(dev, dx, n)];
        }
        var (expected, actual) = (Run(Reference), Run(device));
        string what = $"cross-entropy ε = {labelSmoothing} ({rows}, {cols}) on {where}";
        AssertScaled(actual[0], expected[0], Tolerance, $"{what}: loss");
        AssertScaled(actual[1], expected[1], Tolerance, $"{what}: lse");
        AssertScaled(actual[2], expected[2], Tolerance, $"{what}: dlogits");
    }

    private static float[] Unset(int n) => Enumerable.Repeat(float.NaN, n).ToArray();
}
