using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>LFQ quantization and the streamed entropy terms, AdamW and EMA on every test device against the CPU
/// backend. Bit counts cover a code space smaller than a group, one that spans several code blocks, and both
/// sides of the clamp (soft and saturated distributions).</summary>
public sealed class LfqOptimDeviceTests : DeviceTestBase
{
    private const double Tolerance = 2e-5;
    private const int Batch = 2, Hw = 5;

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void Quantize(string device)
    {
        const int bits = 5, n = Batch * bits * Hw;
        var z = RandomValues(n, 1, -1f, 1f);
        z[3] = 0f;   // z = 0 maps to −1
        var expected = Run(Reference);
        var actual = Run(TestDevices.Get(device));
        Assert.That(actual.Zq, Is.EqualTo(expected.Zq), $"zq on {device}");
        Assert.That(actual.Indices, Is.EqualTo(expected.Indices), $"indices on {device}");
        AssertScaled(actual.Commitment, expected.Commitment, Tolerance, $"commitment on {device}");

        (float[] Zq, int[] Indices, float[] Commitment) Run(IBackend d)
        {
            Buf zq = Put(d, new float[n]), idx = PutInts(d, new int[Batch * Hw]), sum = Put(d, [float.NaN]);
            d.ModelOps.LfqQuantize(Batch, bits, Hw, Put(d, z), zq, idx, sum);
            var indices = new int[Batch * Hw];
            d.Download(idx, indices);
            return (Read(d, zq, n), indices, Read(d, sum, 1));
        }
    }

    private static IEnumerable<TestCaseData> EntropyCases() => OnDevices(
    [
        [3, 1.5f, 1f],      // fewer codes than threads in a group
        [6, 1.5f, 1f],
        [11, 1.5f, 0.5f],   // several blocks of high-half codes; most codes under the clamp
        [6, 100f, 0.02f],   // temperature 0.01: saturated bits
    ]);

    [TestCaseSource(nameof(EntropyCases))]
    public void Entropy(string device, int bits, float invTemperature, float scale) =>
        AssertEntropyMatches(TestDevices.Get(device), bits, invTemperature, scale, device);

    [Test]
    public void GpuLaunchSizesOnTheCpuAccelerator()
    {
        // The 256-thread LFQ tile CUDA launches, on a CPU accelerator of its own.
        using var device = IlgpuBackend.CreateCpu(TestDevices.SharedIlgpuCpu.Sizes with { ReduceGroup = 256 });
        AssertEntropyMatches(device, 10, 1.5f, 0.5f, "256-thread groups");
    }

    [Test]
    public void GroupsOfMoreWarpsThanLanes()
    {
        // The 32-thread LFQ tile on 4-lane warps (the model-test accelerator): 8 warp partials per group reduction,
        // more than one warp's lanes can combine in one step.
        var device = (IlgpuBackend)TestDevices.GetForModels(TestDevices.IlgpuCpu);
        Assert.That(device.Accelerator.WarpSize, Is.EqualTo(4));
        AssertEntropyMatches(device, 10, 1.5f, 0.5f, "4-lane warps");
    }

    private void AssertEntropyMatches(IBackend device, int bits, float invTemperature, float scale, string what)
    {
        int n = Batch * bits * Hw, codes = 1 << bits;
        var z = RandomValues(n, bits, -scale, scale);
        float[] upstream = [0.7f, -1.3f];
        var expected = Run(Reference);
        var actual = Run(device);
        AssertScaled(actual.Result, expected.Result, Tolerance, $"entropy terms, {bits} bits on {what}");
        AssertScaled(actual.Avg, expected.Avg, Tolerance, $"mean distribution, {bits} bits on {what}");
        AssertScaled(actual.Dz, expected.Dz, Tolerance, $"dz, {bits} bits on {what}");

        (float[] Result, float[] Avg, float[] Dz) Run(IBackend d)
        {
            Buf zb = Put(d, z), avg = Put(d, new float[codes]), result = Put(d, [float.NaN, float.NaN]), dz = Put(d, new float[n]);
            d.ModelOps.LfqEntropyForward(Batch, bits, Hw, invTemperature, zb, avg, result);
            d.ModelOps.LfqEntropyBackward(Batch, bits, Hw, invTemperature, zb, avg, Put(d, upstream), dz);
            return (Read(d, result, 2), Read(d, avg, codes), Read(d, dz, n));
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void AdamWAndEma(string device)
    {
        const int n = 1013;
        var s = new AdamWScalars(Decay: 0.999f, Beta1: 0.9f, OneMinusBeta1: 0.1f, Beta2: 0.99f, OneMinusBeta2: 0.01f,
            StepSize: 1e-3f, Bc2Sqrt: 0.3f, Eps: 1e-8f);
        float[] p = RandomValues(n, 1), g = RandomValues(n, 2), m = RandomValues(n, 3), v = RandomValues(n, 4, 0f, 2f);
        var expected = Run(Reference);
        var actual = Run(TestDevices.Get(device));
        string[] names = ["param", "exp_avg", "exp_avg_sq", "ema"];
        for (int i = 0; i < names.Length; i++) AssertScaled(actual[i], expected[i], Tolerance, $"{names[i]} on {device}");

        float[][] Run(IBackend d)
        {
            Buf pb = Put(d, p), mb = Put(d, m), vb = Put(d, v), shadow = Put(d, g);
            d.AdamWUpdate(pb, Put(d, g), mb, vb, n, s);
            d.EmaUpdate(shadow, pb, n, 0.05f);
            return [Read(d, pb, n), Read(d, mb, n), Read(d, vb, n), Read(d, shadow, n)];
        }
    }
}
