using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>
/// Base of the kernel parity tests: runs one op on the CPU reference and on a test device with the same inputs
/// and hands back both results. Buffers sit at a non-zero offset with spare room behind the data (so offsets are
/// exercised and a stray access stays inside the allocation), are disposed after each test, and a device-side
/// assertion (out-of-bounds access on the CPU accelerator) fails the test that caused it.
/// </summary>
[NonParallelizable]
public abstract class DeviceTestBase
{
    protected const int Lead = 3, Spare = 5;
    private readonly List<Storage> _storages = [];
    private int _assertionsBefore;

    protected static IBackend Reference => CpuBackend.Instance;

    [SetUp]
    public void RememberAssertions() => _assertionsBefore = DeviceAssertions.Failures;

    [TearDown]
    public void ReleaseAndCheckAssertions()
    {
        foreach (var s in _storages) s.Dispose();
        _storages.Clear();
        Assert.That(DeviceAssertions.Failures, Is.EqualTo(_assertionsBefore), $"device assertion failed: {DeviceAssertions.LastMessage}");
    }

    protected Buf Put(IBackend device, float[] data)
    {
        var storage = device.Allocate(Lead + data.Length + Spare);
        _storages.Add(storage);
        var buf = new Buf(storage, Lead);
        device.Upload(data, buf);
        return buf;
    }

    protected Buf PutInts(IBackend device, int[] data)
    {
        var storage = device.Allocate(Lead + data.Length + Spare, DType.Int32);
        _storages.Add(storage);
        var buf = new Buf(storage, Lead);
        device.Upload(data, buf);
        return buf;
    }

    protected static float[] Read(IBackend device, Buf b, int n)
    {
        var r = new float[n];
        device.Download(b, r);
        return r;
    }

    /// <summary>Runs <paramref name="op"/>(device, inputs, output) on the reference and on <paramref name="deviceName"/>;
    /// the output starts as <paramref name="initialOutput"/> (NaN when null, so unwritten elements show).</summary>
    protected (float[] Expected, float[] Actual) RunBoth(string deviceName, float[][] inputs, int outputLength,
        Action<IBackend, Buf[], Buf> op, float[]? initialOutput = null)
    {
        var init = initialOutput ?? Enumerable.Repeat(float.NaN, outputLength).ToArray();
        return (Run(Reference), Run(TestDevices.Get(deviceName)));

        float[] Run(IBackend device)
        {
            var ins = inputs.Select(x => Put(device, x)).ToArray();
            var output = Put(device, init);
            op(device, ins, output);
            return Read(device, output, outputLength);
        }
    }

    protected static float[] RandomValues(int n, int seed, float lo = -3f, float hi = 3f)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * rng.NextSingle()).ToArray();
    }

    protected static void AssertScaled(float[] actual, float[] expected, double tolerance, string what) =>
        Compare.AssertClose(actual, expected, tolerance, what);

    protected static void AssertAbsolute(float[] actual, float[] expected, double tolerance, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        double worst = 0;
        for (int i = 0; i < actual.Length; i++) worst = Math.Max(worst, Math.Abs((double)actual[i] - expected[i]));
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance), $"{what}: max abs error {worst:E2}");
    }

    /// <summary>Test cases over device names × extra arguments.</summary>
    protected static IEnumerable<TestCaseData> OnDevices(IEnumerable<object[]> cases) =>
        from d in TestDevices.Names from c in cases select new TestCaseData([d, .. c]);
}
