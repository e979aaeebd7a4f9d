using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>GroupNorm (plain and with fused SiLU) and LayerNorm, forward and backward, on every test device against
/// the CPU backend: odd sizes, a group of one channel, more rows than one LayerNorm γ/β chunk, data far from 0.</summary>
public sealed class NormDeviceTests : DeviceTestBase
{
    private const double Tolerance = 2e-5;

    private static readonly GroupNormDesc[] GroupNorms =
    [
        new(N: 2, C: 6, HW: 7, Groups: 3, Eps: 1e-6f),
        new(N: 1, C: 4, HW: 33, Groups: 2, Eps: 1e-5f),
        new(N: 3, C: 5, HW: 4, Groups: 5, Eps: 1e-6f),   // one channel per group
    ];

    private static IEnumerable<TestCaseData> GroupNormCases() => OnDevices([[false], [true]]);

    [TestCaseSource(nameof(GroupNormCases))]
    public void GroupNorm(string device, bool silu)
    {
        foreach (var shape in GroupNorms) CheckGroupNorm(TestDevices.Get(device), shape with { FuseSilu = silu }, device);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void LayerNorm(string device)
    {
        foreach (var (rows, cols) in new[] { (5, 37), (70, 9), (1, 300) }) CheckLayerNorm(TestDevices.Get(device), rows, cols, device);
    }

    [Test]
    public void TwoWarpGroups()
    {
        CheckGroupNorm(TwoWarpBackend.Instance, GroupNorms[1] with { FuseSilu = true }, "two-warp groups");
        CheckLayerNorm(TwoWarpBackend.Instance, 3, 150, "two-warp groups");
    }

    private void CheckGroupNorm(IBackend device, GroupNormDesc d, string where)
    {
        int n = d.N * d.C * d.HW, runs = d.N * d.Groups;
        float[] x = RandomValues(n, n, lo: 4f, hi: 6f), gamma = RandomValues(d.C, 1), beta = RandomValues(d.C, 2), dy = RandomValues(n, 3);
        float[][] Run(IBackend dev)
        {
            Buf xb = Put(dev, x), gb = Put(dev, gamma), bb = Put(dev, beta), y = Put(dev, Unset(n)), mean = Put(dev, Unset(runs)), rstd = Put(dev, Unset(runs));
            dev.GroupNormForward(d, xb, gb, bb, y, mean, rstd);
            Buf dx = Put(dev, Unset(n)), dgamma = Put(dev, Unset(d.C)), dbeta = Put(dev, Unset(d.C));
            dev.GroupNormBackward(d, xb, gb, bb, mean, rstd, Put(dev, dy), dx, dgamma, dbeta);
            return [Read(dev, y, n), Read(dev, mean, runs), Read(dev, rstd, runs), Read(dev, dx, n), Read(dev, dgamma, d.C), Read(dev, dbeta, d.C)];
        }
        AssertAll(Run(Reference), Run(device), $"{d} on {where}", "y", "mean", "rstd", "dx", "dgamma", "dbeta");
    }

    private void CheckLayerNorm(IBackend device, int rows, int cols, string where)
    {
        int n = rows * cols;
        float[] x = RandomValues(n, n, lo: -50f, hi: -48f), gamma = RandomValues(cols, 1), beta = RandomValues(cols, 2), dy = RandomValues(n, 3);
        float[][] Run(IBackend dev)
        {
            Buf xb = Put(dev, x), gb = Put(dev, gamma), y = Put(dev, Unset(n)), mean = Put(dev, Unset(rows)), rstd = Put(dev, Unset(rows));
            dev.LayerNormForward(rows, cols, 1e-12f, xb, gb, Put(dev, beta), y, mean, rstd);
            Buf dx = Put(dev, Unset(n)), dgamma = Put(dev, Unset(cols)), dbeta = Put(dev, Unset(cols));
            dev.LayerNormBackward(rows, cols, xb, gb, mean, rstd, Put(dev, dy), dx, dgamma, dbeta);
            return [Read(dev, y, n), Read(dev, mean, rows), Read(dev, rstd, rows), Read(dev, dx, n), Read(dev, dgamma, cols), Read(dev, dbeta, cols)];
        }
        AssertAll(Run(Reference), Run(device), $"LayerNorm ({rows}, {cols}) on {where}", "y", "mean", "rstd", "dx", "dgamma", "dbeta");
    }

    private static float[] Unset(int n) => Enumerable.Repeat(float.NaN, n).ToArray();

    private static void AssertAll(float[][] expected, float[][] actual, string what, params string[] names)
    {
        for (int i = 0; i < names.Length; i++) AssertScaled(actual[i], expected[i], Tolerance, $"{what}: {names[i]}");
    }
}
