using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>GEMM on every test device against the CPU backend: tiny and odd sizes (tile edges), every transpose,
/// batches with shared (stride 0) operands, alpha/beta.</summary>
public sealed class GemmDeviceTests : DeviceTestBase
{
    private const double Tolerance = 1e-5;

    private static readonly (int M, int N, int K)[] Sizes = [(1, 1, 1), (5, 7, 3), (33, 17, 40), (31, 45, 29), (64, 64, 64), (9, 6, 300)];

    private static IEnumerable<TestCaseData> TransposeCases() =>
        OnDevices(from ta in new[] { false, true } from tb in new[] { false, true } select new object[] { ta, tb });

    [TestCaseSource(nameof(TransposeCases))]
    public void Transposes(string device, bool transA, bool transB)
    {
        foreach (var (m, n, k) in Sizes)
        {
            var desc = new GemmDesc(m, n, k, transA, transB);
            var (expected, actual) = RunBoth(device, [RandomValues(m * k, m), RandomValues(k * n, n)], m * n,
                (d, i, c) => d.Gemm(desc, i[0], i[1], c));
            AssertScaled(actual, expected, Tolerance, $"{desc} on {device}");
        }
    }

    private static IEnumerable<TestCaseData> BatchCases() => OnDevices(
    [
        [false, false, false], // every operand per batch item
        [true, false, true],   // B shared by the batch (stride 0), transposed A
        [false, true, false],  // A shared by the batch
    ]);

    [TestCaseSource(nameof(BatchCases))]
    public void Batched(string device, bool transA, bool shareA, bool shareB)
    {
        const int batch = 3, m = 9, n = 14, k = 11;
        var desc = new GemmDesc(m, n, k, transA, TransB: false, batch,
            StrideA: shareA ? 0 : m * k, StrideB: shareB ? 0 : k * n, StrideC: m * n);
        var a = RandomValues((shareA ? 1 : batch) * m * k, 1);
        var b = RandomValues((shareB ? 1 : batch) * k * n, 2);
        var (expected, actual) = RunBoth(device, [a, b], batch * m * n, (d, i, c) => d.Gemm(desc, i[0], i[1], c));
        AssertScaled(actual, expected, Tolerance, $"{desc} on {device}");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void AlphaBeta(string device)
    {
        const int m = 13, n = 6, k = 35;
        var desc = new GemmDesc(m, n, k, TransB: true, Batch: 2, StrideA: m * k, StrideB: n * k, StrideC: m * n);
        float[][] inputs = [RandomValues(2 * m * k, 3), RandomValues(2 * n * k, 4)];
        var (expected, actual) = RunBoth(device, inputs, 2 * m * n,
            (d, i, c) => d.Gemm(desc, i[0], i[1], c, alpha: 0.7f, beta: 0.3f), RandomValues(2 * m * n, 5));
        AssertScaled(actual, expected, Tolerance, $"alpha/beta on {device}");

        // beta = 0 must not read C: NaN there stays out of the result.
        (expected, actual) = RunBoth(device, inputs, 2 * m * n, (d, i, c) => d.Gemm(desc, i[0], i[1], c, alpha: -1.5f));
        AssertScaled(actual, expected, Tolerance, $"beta = 0 over NaN on {device}");
    }

    [Test]
    public void GpuTileOnTheCpuAccelerator()
    {
        // The 64×64 tile (K depth 16 < tile size) that CUDA launches, run on a CPU accelerator of its own: a
        // 256-thread group would slow every later launch on the shared one.
        var shared = TestDevices.SharedIlgpuCpu;
        using var device = IlgpuBackend.CreateCpu(shared.Sizes with { LargeGemmTile = true });
        foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
        {
            const int m = 70, n = 65, k = 40;
            var desc = new GemmDesc(m, n, k, ta, tb);
            float[] a = RandomValues(m * k, 11), b = RandomValues(k * n, 12);
            var expected = Read(Reference, Gemm(Reference, desc, a, b, m * n), m * n);
            var actual = Read(device, Gemm(device, desc, a, b, m * n), m * n);
            AssertScaled(actual, expected, Tolerance, $"{desc} with 64×64 tiles");
        }
    }

    private Buf Gemm(IBackend device, GemmDesc desc, float[] a, float[] b, int outputLength)
    {
        var c = Put(device, new float[outputLength]);
        device.Gemm(desc, Put(device, a), Put(device, b), c);
        return c;
    }
}
