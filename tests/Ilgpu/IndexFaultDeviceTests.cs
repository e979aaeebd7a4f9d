using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Kernels that read tables at tensor-given indices check them where they run: the CPU backend throws at
/// the op, an ILGPU device at its next read (without waiting for the device at the op), naming the op, value,
/// position and table size; afterwards the device works normally. Also the bit expansion of token groups against
/// the CPU backend.</summary>
public sealed class IndexFaultDeviceTests : DeviceTestBase
{
    private static readonly (string Name, Action<IBackend> Op, string Expected)[] BadOps =
    [
        ("embedding", dev => F.Embedding(Tensor.FromInts(new[] { 0, 4, 10, 9 }, new[] { 4 }, dev), Tensor.Zeros(new[] { 10, 3 }, dev)),
            "index 10 at flat position 2 is out of range for a table of 10 rows"),
        ("cross_entropy", dev => F.CrossEntropy(Tensor.Zeros(new[] { 2, 4 }, dev), Tensor.FromInts(new[] { 1, -1 }, new[] { 2 }, dev)),
            "target -1 at flat position 1 is out of range for 4 classes"),
        ("bit tokens", dev => F.TokenBits(Tensor.FromInts(new[] { 3, 16, 17 }, new[] { 3, 1 }, dev), 4, 16),
            "value 17 at flat position 2 is outside 0…16"),
        ("split token groups", dev => F.SplitTokenGroups(Tensor.FromInts(new[] { 5, 64, 63 }, new[] { 3 }, dev), 2, 3),
            "token groups: value 64 at flat position 1 is outside 0…63"),
        ("combine token groups", dev => F.CombineTokenGroups(Tensor.FromInts(new[] { 7, 0, 8, 1 }, new[] { 2, 2 }, dev), 2, 3),
            "token groups: value 8 at flat position 2 is outside 0…7"),
    ];

    private static IEnumerable<TestCaseData> Cases() => OnDevices(BadOps.Select(o => new object[] { o.Name }));

    [TestCaseSource(nameof(Cases))]
    public void BadIndexIsReportedAndTheDeviceStaysUsable(string device, string op)
    {
        var (_, run, expected) = BadOps.Single(o => o.Name == op);
        var dev = TestDevices.Get(device);
        ArgumentOutOfRangeException? error;
        if (dev is IlgpuBackend ilgpu)
        {
            var before = ilgpu.Traffic;
            Assert.DoesNotThrow(() => run(dev), "the op only enqueues its kernel");
            Assert.That((ilgpu.Traffic - before).Downloads, Is.EqualTo(0), "no read from the device to check the indices");
            error = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Zeros(new[] { 2 }, dev).ToArray(), "reported at the next read");
            Assert.That(error!.Message, Does.Contain("found on the device"));
        }
        else error = Assert.Throws<ArgumentOutOfRangeException>(() => run(dev));
        Assert.That(error!.Message, Does.Contain(expected));
        Assert.That(Tensor.Full(new[] { 2 }, 5f, dev).ToArray(), Is.EqualTo(new[] { 5f, 5f }), "the next read succeeds");
    }

    private static IEnumerable<TestCaseData> TokenBitsCases() => OnDevices([[true], [false]]);

    [TestCaseSource(nameof(TokenBitsCases))]
    public void TokenBitsMatchTheCpu(string device, bool withMaskToken)
    {
        const int bits = 5, count = 41;
        int maskToken = withMaskToken ? 1 << bits : -1;
        var tokens = Enumerable.Range(0, count).Select(i => withMaskToken && i % 7 == 0 ? maskToken : i * 13 % (1 << bits)).ToArray();
        float[] Run(IBackend dev)
        {
            var y = Put(dev, Enumerable.Repeat(float.NaN, count * bits).ToArray());
            dev.ModelOps.TokenBits(count, bits, maskToken, PutInts(dev, tokens), y);
            return Read(dev, y, count * bits);
        }
        var expected = Run(Reference);
        Assert.That(Run(TestDevices.Get(device)), Is.EqualTo(expected));
        Assert.That(expected.AsSpan(0, bits).ToArray(), Is.All.EqualTo(withMaskToken ? 0f : -1f), "the mask token is all zeros; 0 is all −1");
        Assert.That(expected.AsSpan(bits, bits).ToArray(), Is.EqualTo(new[] { 1f, -1f, 1f, 1f, -1f }), "13 = 0b01101, least significant first");
    }
}
