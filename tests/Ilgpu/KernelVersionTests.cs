using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>What the kernel lab's validation (KernelLabTests: one sum, one normalised output) leaves out of the
/// reduce and groupnorm versions: max with NaN, scale and accumulate at every launch shape, and the mean and rstd
/// of runs split into uneven chunks, against the CPU backend on each ILGPU test device.</summary>
public sealed class KernelVersionTests : DeviceTestBase
{
    private const double Tolerance = 2e-5;

    private static IEnumerable<TestCaseData> Versions() =>
        from d in TestDevices.IlgpuNames from v in new[] { 1, 2 } select new TestCaseData(d, v);

    /// <summary>(outer, mid, inner): short rows, warp-sized and long contiguous rows, strided short and long.</summary>
    private static readonly (int Outer, int Mid, int Inner)[] ReduceShapes =
        [(3, 5, 1), (2, 16, 3), (4, 100, 1), (2, 5000, 1), (2, 20, 9), (3, 300, 7), (1, 1, 1)];

    [TestCaseSource(nameof(Versions))]
    public void Reduce(string device, int version)
    {
        var dev = (IlgpuBackend)TestDevices.Get(device);
        foreach (var (outer, mid, inner) in ReduceShapes)
        {
            int outputs = outer * inner, inputs = outputs * mid;
            var x = RandomValues(inputs, inputs);
            if (inputs > 10) x[7] = float.NaN;   // max propagates NaN, as on the CPU
            var previous = RandomValues(outputs, 5);
            foreach (bool max in new[] { false, true })
            {
                var args = new IlgpuBackend.ReduceArgs { Outer = outer, Mid = mid, Inner = inner, Scale = max ? 1f : 0.5f, Accumulate = max ? 0 : 1 };
                var (expected, actual) = RunBoth(device, [x], outputs, (d, ins, y) =>
                {
                    if (d is IlgpuBackend ilgpu) ilgpu.Reduce(version, ins[0], y, args, max);
                    else if (max) d.ReduceMax(ins[0], y, outer, mid, inner);
                    else d.ReduceSum(ins[0], y, outer, mid, inner, 0.5f, accumulate: true);
                }, previous);
                string what = $"{(max ? "max" : "sum")} ({outer}, {mid}, {inner}) v{version} ({dev.Shape(version, args, outputs)}) on {device}";
                Assert.That(actual.Select(float.IsNaN), Is.EqualTo(expected.Select(float.IsNaN)), what);
                AssertScaled(actual.Select(v => float.IsNaN(v) ? 0f : v).ToArray(), expected.Select(v => float.IsNaN(v) ? 0f : v).ToArray(), Tolerance, what);
            }
        }
    }

    private static readonly GroupNormDesc[] NormShapes =
    [
        new(N: 1, C: 4, HW: 301, Groups: 2, Eps: 1e-5f),
        new(N: 1, C: 3, HW: 171, Groups: 1, Eps: 1e-6f, FuseSilu: true),
        new(N: 2, C: 6, HW: 5, Groups: 3, Eps: 1e-5f),
    ];

    [TestCaseSource(nameof(Versions))]
    public void NormForward(string device, int version)
    {
        var dev = (IlgpuBackend)TestDevices.Get(device);
        if (version == 2)
            Assert.That(dev.NormChunking(IlgpuBackend.GroupNormArgs(NormShapes[1])).Count, Is.GreaterThan(1), "v2 splits the single run");
        foreach (var d in NormShapes)
        {
            int n = d.N * d.C * d.HW, runs = d.N * d.Groups;
            // An offset mean makes the corrected two-pass statistics matter.
            var x = RandomValues(n, n, 2f, 5f);
            float[] gamma = RandomValues(d.C, 1), beta = RandomValues(d.C, 2);
            float[][] Run(IBackend b)
            {
                Buf y = Put(b, new float[n]), mean = Put(b, new float[runs]), rstd = Put(b, new float[runs]);
                if (b is IlgpuBackend ilgpu) ilgpu.NormForward(version, IlgpuBackend.GroupNormArgs(d), Put(b, x), Put(b, gamma), Put(b, beta), y, mean, rstd);
                else b.GroupNormForward(d, Put(b, x), Put(b, gamma), Put(b, beta), y, mean, rstd);
                return [Read(b, y, n), Read(b, mean, runs), Read(b, rstd, runs)];
            }
            var expected = Run(Reference);
            var actual = Run(dev);
            string[] names = ["y", "mean", "rstd"];
            for (int i = 0; i < 3; i++) AssertScaled(actual[i], expected[i], Tolerance, $"{names[i]} of {d} v{version} on {device}");
        }
    }
}
