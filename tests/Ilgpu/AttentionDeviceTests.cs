using MaskBit.Autograd;
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
    private static readonly (int BatchHeads, int Seq, int Dim)[] Shapes = [(2, 5, 3), (1, 37, 8), (1, 9, 67)];

    private static IEnumerable<TestCaseData> DropoutCases() => OnDevices([[0f], [0.3f]]);

    [TestCaseSource(nameof(DropoutCases))]
    public void ForwardAndBackward(string device, float dropout)
    {
        foreach (var shape in Shapes) Check(TestDevices.Get(device), shape, dropout, $"attention {shape} p = {dropout} on {device}");
    }

    [Test]
    public void TwoWarpGroups() => Check(TwoWarpBackend.Instance, (1, 37, 16), 0.3f, "attention with two-warp groups");

    /// <summary>The backward has one owner per gradient element (no float atomics): two runs agree bit for bit.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.IlgpuNames))]
    public void BackwardRepeatsBitForBit(string device)
    {
        const int bh = 1, seq = 66, dim = 8, n = bh * seq * dim;
        var dev = TestDevices.Get(device);
        float scale = 1f / MathF.Sqrt(dim);
        Buf q = Put(dev, RandomValues(n, 1, -2f, 2f)), k = Put(dev, RandomValues(n, 2, -2f, 2f)), v = Put(dev, RandomValues(n, 3));
        Buf o = Put(dev, Unset(n)), lse = Put(dev, Unset(bh * seq)), dOut = Put(dev, RandomValues(n, 4));
        dev.AttentionForward(bh, seq, dim, scale, 0.2f, 9, q, k, v, o, lse);
        float[][] Gradients()
        {
            Buf dq = Put(dev, Unset(n)), dk = Put(dev, Unset(n)), dv = Put(dev, Unset(n));
            dev.AttentionBackward(bh, seq, dim, scale, 0.2f, 9, q, k, v, o, lse, dOut, dq, dk, dv);
            return [Read(dev, dq, n), Read(dev, dk, n), Read(dev, dv, n)];
        }
        var first = Gradients();
        var second = Gradients();
        for (int i = 0; i < first.Length; i++) Assert.That(second[i], Is.EqualTo(first[i]), $"gradient {i} on {device}");
    }

    /// <summary>Multi-head self-attention with dropout through autograd: the mask seed drawn from the same
    /// generator gives the same output and gradients on the device as on the CPU.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.IlgpuNames))]
    public void MultiHeadSelfAttentionWithDropout(string device)
    {
        const int batch = 2, seq = 6, embed = 8, heads = 2;
        (float[] Data, int[] Shape)[] leaves =
        [
            (RandomValues(batch * seq * embed, 5), [batch, seq, embed]), (RandomValues(3 * embed * embed, 6, -0.5f, 0.5f), [3 * embed, embed]),
            (RandomValues(3 * embed, 7, -0.2f, 0.2f), [3 * embed]), (RandomValues(embed * embed, 8, -0.5f, 0.5f), [embed, embed]),
            (RandomValues(embed, 9, -0.2f, 0.2f), [embed]),
        ];
        (float[] Output, float[][] Grads) Run(IBackend dev)
        {
            var t = leaves.Select(l => Tensor.FromArray(l.Data, l.Shape, dev).RequiresGrad_()).ToArray();
            var y = F.MultiHeadAttention(t[0], t[0], t[0], heads, t[1], t[2], t[3], t[4], dropoutP: 0.3f, generator: new Rng(17));
            y.Mul(y).Sum().Backward();
            return (y.ToArray(), t.Select(x => x.Grad!.ToArray()).ToArray());
        }
        var expected = Run(Reference);
        var actual = Run(TestDevices.Get(device));
        AssertScaled(actual.Output, expected.Output, Tolerance, $"output on {device}");
        for (int i = 0; i < leaves.Length; i++) AssertScaled(actual.Grads[i], expected.Grads[i], Tolerance, $"grad of leaf {i} on {device}");
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
