using MaskBit.Autograd;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>The AVX2 direct conv tile (ConvDirect.cs: the forward and the input gradient with more than
/// <see cref="CpuBackend.FewOutputs"/> channels per group and a whole tile of columns per image): float64 finite
/// differences on every ISA the CPU supports (the avx2 run takes the tile, the others the GEMM), with partial channel
/// blocks, groups, strides, odd maps and a last tile shifted back onto the previous one; and its weight packing into
/// exactly sized scratch. <see cref="ConvTests"/> covers it on larger shapes (and passes of one image), and
/// HalfOperandKernelTests with 16-bit operands.</summary>
[TestFixture]
public class ConvDirectTests
{
    private static ConvTests.Case C(int n, int cin, int h, int w, int cout, int k, int s, int pad, int g, bool bias) =>
        new(n, cin, h, w, cout, k, s, new Padding2d(pad, pad, pad, pad), g, bias);

    public static IEnumerable<TestCaseData> Cases() => new[]
    {
        C(1, 5, 5, 9, 6, 3, 1, 1, 1, true),     // 6 = 4 + 2 channels: a partial block; 49 columns: the last tile shifted
        C(1, 8, 9, 11, 10, 3, 2, 1, 2, false),  // groups of 4 inputs and 5 outputs, stride 2 (input-gradient phases)
        C(1, 4, 6, 11, 4, 5, 1, 2, 1, true),    // 5×5, one image, one block
    }.Select(c => new TestCaseData(c).SetName($"ConvDirectGradCheck({c})"));

    [TestCaseSource(nameof(Cases))]
    public void GradCheckAgainstFloat64OnEveryIsa(ConvTests.Case c) => TestIsas.Each(() =>
    {
        var rng = new Random(3);
        var inputs = new List<(double[], int[])>
        {
            (GradCheck.RandomValues(rng, ConvTests.Numel(c.XShape)), c.XShape),
            (GradCheck.RandomValues(rng, ConvTests.Numel(c.WShape), 0.5), c.WShape),
        };
        if (c.Bias) inputs.Add((GradCheck.RandomValues(rng, c.Cout), new[] { c.Cout }));
        GradCheck.Check(inputs,
            t => F.Conv2d(t[0], t[1], c.Bias ? t[2] : null, c.Stride, c.Pad, c.Groups),
            v => ConvTests.ReferenceForward(c, v[0], v[1], c.Bias ? v[2] : null));
    });

    [Test]
    public unsafe void WeightPanelsFillExactlySizedScratch()
    {
        const int groups = 2, rowsPerGroup = 6, k = 7;
        var weights = Enumerable.Range(1, groups * rowsPerGroup * k).Select(i => (float)i).ToArray();
        var packed = new float[CpuBackend.DirectPackedLength(groups, rowsPerGroup, k)];
        fixed (float* pw = weights) CpuBackend.PackDirectWeights(groups, rowsPerGroup, k, pw, packed);
        int blocks = (rowsPerGroup + CpuBackend.DirectRows - 1) / CpuBackend.DirectRows;
        Assert.That(packed, Has.Length.EqualTo(groups * blocks * k * CpuBackend.DirectRows));
        for (int g = 0; g < groups; g++)
            for (int b = 0; b < blocks; b++)
                for (int p = 0; p < k; p++)
                    for (int r = 0; r < CpuBackend.DirectRows; r++)
                    {
                        int row = b * CpuBackend.DirectRows + r;
                        float expected = row < rowsPerGroup ? weights[(g * rowsPerGroup + row) * k + p] : 0f;
                        Assert.That(packed[((g * blocks + b) * k + p) * CpuBackend.DirectRows + r], Is.EqualTo(expected), $"g{g} b{b} p{p} r{r}");
                    }
    }
}
