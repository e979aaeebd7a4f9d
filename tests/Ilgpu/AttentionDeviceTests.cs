using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Fused attention, forward (output, log-sum-exp) and backward (dq, dk, dv), on every test device against
/// the CPU backend, with and without dropout on the attention weights (both backends hash the same mask, so the
/// results agree to rounding). Shapes: a sequence within one tile, sequences spanning two tiles with a partial
/// last one, a head dim over two warps' worth of columns.</summary>
public sealed class AttentionDeviceTests : DeviceTestBase
{
    private const double Tolerance = 2e-5;
    private static readonly (int BatchHeads, int Seq, int Dim)[] Shapes = [(1, 5, 3), (2, 37, 16), (1, 33, 67)];

    private static IEnumerable<TestCaseData> DropoutCases() => OnDevices([[0f], [0.3f]]);

    [TestCaseSource(nameof(DropoutCases))]
    public void ForwardAndBackward(string device, float dropout)
    {
        foreach (var shape in Shapes) Check(TestDevices.Get(device), shape, dropout, $"attention {shape} p = {dropout} on {device}");
    }

    /// <summary>The multi-warp groups that CUDA launches (one query or key row per warp), on a CPU accelerator of
    /// their own: two warps keep the emulator fast and exercise the per-warp shared memory.</summary>
    [Test]
    public void TwoWarpGroupsOnTheCpuAccelerator()
    {
        var shared = TestDevices.SharedIlgpuCpu;
        using var device = IlgpuBackend.CreateCpu(shared.Sizes with { ReduceGroup = 2 * shared.Accelerator.WarpSize });
        Check(device, (2, 37, 16), 0.3f, "attention with two-warp groups");
    }

    private void Check(IBackend device, (int BatchHeads, int Seq, int Dim) shape, float dropout, string what)
    {
        var (bh, seq, dim) = shape;
        int n = bh * seq * dim, rows = bh * seq;
        float scale = 1f / MathF.Sqrt(dim);
        float[] q = RandomValues(n, 1, -2f, 2f), k = RandomValues(n, 2, -2f, 2f), v = RandomValues(n, 3), dOut = RandomValues(n, 4);
        const ulong seed = 0x5EED_1234_ABCDUL;
        float[][] Run(IBackend dev)
        {
            Buf qb = Put(dev, q), kb = Put(dev, k), vb = Put(dev, v), o = Put(dev, Unset(n)), lse = Put(dev, Unset(rows));
            dev.AttentionForward(bh, seq, dim, scale, dropout, seed, qb, kb, vb, o, lse);
            Buf dq = Put(dev, Unset(n)), dk = Put(dev, Unset(n)), dv = Put(dev, Unset(n));
            dev.AttentionBackward(bh, seq, dim, scale, dropout, seed, qb, kb, vb, o, lse, Put(dev, dOut), dq, dk, dv);
            return [Read(dev, o, n), Read(dev, lse, rows), Read(dev, dq, n), Read(dev, dk, n), Read(dev, dv, n)];
        }
        var expected = Run(Reference);
        var actual = Run(device);
        string[] names = ["output", "lse", "dq", "dk", "dv"];
        for (int i = 0; i < names.Length; i++) AssertScaled(actual[i], expected[i], Tolerance, $"{what}: {names[i]}");
    }

    private static float[] Unset(int n) => Enumerable.Repeat(float.NaN, n).ToArray();
}
