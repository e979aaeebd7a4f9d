using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Precision;

/// <summary>
/// The autocast ops (matmul, linear, conv2d, attention) in bfloat16 and float16 on every test device: (1) exactly the
/// float32 op on operands rounded to 16 bits (output, and gradients with the incoming gradient rounded as well), which
/// shows the rounding happens where torch's does and nowhere else; (2) within the dtype's tolerance of plain float32.
/// </summary>
[NonParallelizable]
public class AutocastOpTests
{
    /// <summary>Scaled error allowed against float32: a few units of the dtype's rounding (2⁻⁹ bf16, 2⁻¹² fp16)
    /// accumulated over the short sums of these shapes.</summary>
    private static double Tolerance(DType dtype) => dtype == DType.BFloat16 ? 3e-2 : 4e-3;

    /// <summary>One op under test: input shapes and the function of them.</summary>
    public sealed record Op(string Name, int[][] Shapes, Func<Tensor[], Tensor> Apply, bool SingleRounding = true)
    {
        public override string ToString() => Name;
    }

    private static readonly Op[] Ops =
    [
        new("matmul", [[2, 5, 12], [2, 12, 7]], t => Tensor.MatMul(t[0], t[1])),
        new("matmul_transposed", [[2, 12, 5], [7, 12]], t => Tensor.MatMul(t[0], t[1], transA: true, transB: true)),
        new("linear", [[6, 12], [9, 12], [9]], t => Tensor.Linear(t[0], t[1], t[2])),
        new("conv2d", [[2, 3, 6, 6], [4, 3, 3, 3], [4]], t => F.Conv2d(t[0], t[1], t[2], stride: 1, padding: Padding2d.Symmetric(1))),
        new("attention", [[2, 2, 9, 8], [2, 2, 9, 8], [2, 2, 9, 8]], t => F.ScaledDotProductAttention(t[0], t[1], t[2])),
        // Projections, packed attention and the output projection: several roundings in a chain.
        new("multi_head_attention", [[2, 5, 8], [24, 8], [24], [8, 8], [8]],
            t => F.MultiHeadAttention(t[0], t[0], t[0], 2, t[1], t[2], t[3], t[4]), SingleRounding: false),
    ];

    private static IEnumerable<TestCaseData> Cases() =>
        from device in TestDevices.Names
        from dtype in new[] { DType.BFloat16, DType.Float16 }
        from op in Ops
        select new TestCaseData(device, dtype, op);

    private sealed record Result(float[] Output, float[][] Grads);

    private static Result Run(IBackend device, Op op, float[][] inputs, float[] outputGrad, DType? autocast)
    {
        var tensors = inputs.Select((v, i) => Tensor.FromArray(v, op.Shapes[i], device).RequiresGrad_()).ToArray();
        Tensor y;
        using (Autocast.Enable(autocast)) y = op.Apply(tensors);
        Assert.That(y.DType, Is.EqualTo(DType.Float32), "autocast ops return float32");
        y.Mul(Tensor.FromArray(outputGrad, y.Shape, device)).Sum().Backward();
        return new(y.ToArray(), tensors.Select(t => t.Grad!.ToArray()).ToArray());
    }

    private static float[] Rounded(float[] values, DType dtype) => values.Select(v => HalfBits.Round(v, dtype)).ToArray();

    [TestCaseSource(nameof(Cases))]
    public void MatchesFloat32(string deviceName, DType dtype, Op op)
    {
        var device = TestDevices.Get(deviceName);
        var rng = new Random(op.Name.Length * 31 + (int)dtype);
        float[] Values(int[] shape) => GradCheck.RandomValues(rng, (int)ShapeUtil.Numel(shape)).Select(x => (float)x).ToArray();
        var inputs = op.Shapes.Select(Values).ToArray();
        int outputCount;
        using (Tape.NoGrad()) outputCount = (int)op.Apply(inputs.Select((v, i) => Tensor.FromArray(v, op.Shapes[i], device)).ToArray()).Numel;
        var outputGrad = GradCheck.RandomValues(rng, outputCount).Select(x => (float)x).ToArray();

        var mixed = Run(device, op, inputs, outputGrad, dtype);
        var full = Run(device, op, inputs, outputGrad, null);
        double tolerance = Tolerance(dtype);
        Compare.AssertClose(mixed.Output, full.Output, tolerance, $"{op} {dtype} output vs float32");
        for (int i = 0; i < inputs.Length; i++)
            Compare.AssertClose(mixed.Grads[i], full.Grads[i], tolerance, $"{op} {dtype} gradient {i} vs float32");

        if (!op.SingleRounding) return;
        // The bias of linear/conv is added in float32, so it is left unrounded (as the reference's accumulate-in-fp32 epilogue).
        var roundedInputs = inputs.Select((v, i) => op.Shapes[i].Length == 1 ? v : Rounded(v, dtype)).ToArray();
        var onRounded = Run(device, op, roundedInputs, Rounded(outputGrad, dtype), null);
        Compare.AssertClose(mixed.Output, onRounded.Output, 1e-6, $"{op} {dtype} output vs float32 on rounded operands");
        for (int i = 0; i < inputs.Length; i++)
            Compare.AssertClose(mixed.Grads[i], onRounded.Grads[i], 1e-6, $"{op} {dtype} gradient {i} vs float32 on rounded operands");
    }

    [Test]
    public void OtherOpsStayFloat32()
    {
        var x = Tensor.FromArray(new[] { 1.0001f, 2.0003f, -3.0007f, 0.12345f }, [1, 4]);
        float[] expected = x.Softmax(-1).ToArray();
        using (Autocast.Enable(DType.BFloat16))
            Assert.That(x.Softmax(-1).ToArray(), Is.EqualTo(expected), "softmax is not an autocast op");
    }

    [Test]
    public void PrecisionNamesParse()
    {
        Assert.That(Autocast.Parse("no", "k"), Is.Null);
        Assert.That(Autocast.Parse("bf16", "k"), Is.EqualTo(DType.BFloat16));
        Assert.That(Autocast.Parse("FP16", "k"), Is.EqualTo(DType.Float16));
        var e = Assert.Throws<ArgumentException>(() => Autocast.Parse("fp8", "training.mixed_precision"))!;
        Assert.That(e.Message, Does.Contain("training.mixed_precision").And.Contain("fp8"));
    }
}
