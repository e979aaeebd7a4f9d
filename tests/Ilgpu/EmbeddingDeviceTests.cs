using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Embedding gather and scatter-add on every test device against the CPU backend. Indices repeat (the
/// scatter must sum them) and there are more weight rows than groups; the scatter-add must also be bitwise
/// repeatable (it sums each row in index order).</summary>
public sealed class EmbeddingDeviceTests : DeviceTestBase
{
    private const int Rows = 11, Dim = 37, Count = 29;
    private static readonly int[] Indices = Enumerable.Range(0, Count).Select(i => i * i % Rows).ToArray();

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void GatherAndScatterAdd(string device)
    {
        float[] weight = RandomValues(Rows * Dim, 1), dy = RandomValues(Count * Dim, 2), initial = RandomValues(Rows * Dim, 3);
        float[][] Run(IBackend dev)
        {
            Buf idx = PutInts(dev, Indices), y = Put(dev, Enumerable.Repeat(float.NaN, Count * Dim).ToArray()), dw = Put(dev, initial);
            dev.EmbeddingForward(Count, Dim, Rows, Put(dev, weight), idx, y);
            dev.EmbeddingBackward(Count, Dim, Rows, Put(dev, dy), idx, dw);
            return [Read(dev, y, Count * Dim), Read(dev, dw, Rows * Dim)];
        }
        var expected = Run(Reference);
        var actual = Run(TestDevices.Get(device));
        AssertScaled(actual[0], expected[0], 0, $"gather on {device}");
        AssertScaled(actual[1], expected[1], 0, $"scatter-add on {device}");   // same additions in the same order
        Assert.That(Run(TestDevices.Get(device))[1], Is.EqualTo(actual[1]), "scatter-add repeats bit for bit");
    }
}
