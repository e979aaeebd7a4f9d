using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Autograd on tensors that live on a test device: values and gradients against the same graph on the CPU.</summary>
[NonParallelizable]
public sealed class TensorDeviceTests
{
    private const double Tolerance = 1e-5;

    /// <summary>Builds the graph from the leaves on one device and returns the output with the leaves' grads.</summary>
    private static (float[] Output, float[][] Grads) Run(IBackend device, (float[] Data, int[] Shape)[] leaves, Func<Tensor[], Tensor> graph)
    {
        var ts = leaves.Select(l => Tensor.FromArray(l.Data, l.Shape, device).RequiresGrad_()).ToArray();
        var y = graph(ts);
        Assert.That(y.Device, Is.SameAs(device), "the result stays on the device");
        y.Backward();
        return (y.ToArray(), ts.Select(t => t.Grad!.ToArray()).ToArray());
    }

    private static void AssertSameAsCpu(string device, (float[] Data, int[] Shape)[] leaves, Func<Tensor[], Tensor> graph)
    {
        var (expectedY, expectedGrads) = Run(Device.Cpu, leaves, graph);
        var (actualY, actualGrads) = Run(TestDevices.Get(device), leaves, graph);
        Compare.AssertClose(actualY, expectedY, Tolerance, $"output on {device}");
        for (int i = 0; i < leaves.Length; i++)
            Compare.AssertClose(actualGrads[i], expectedGrads[i], Tolerance, $"grad of leaf {i} on {device}");
    }

    private static (float[], int[]) Leaf(int seed, params int[] shape)
    {
        var rng = new Random(seed);
        return (Enumerable.Range(0, (int)ShapeUtil.Numel(shape)).Select(_ => rng.NextSingle() * 2 - 1).ToArray(), shape);
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void AddMulMatMulSum(string device) =>
        // ((x + b) ∘ x) · w, summed: broadcast add, product rule, matmul and sum backward.
        AssertSameAsCpu(device, [Leaf(1, 3, 4), Leaf(2, 4), Leaf(3, 4, 5)],
            t => t[0].Add(t[1]).Mul(t[0]).MatMul(t[2]).Sum());

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void BatchedMatMulWithTransposesAndAxisSums(string device) =>
        AssertSameAsCpu(device, [Leaf(4, 2, 5, 3), Leaf(5, 2, 6, 5), Leaf(6, 6, 4)],
            t => Tensor.MatMul(t[0], t[1], transA: true, transB: true).Sum(1).MatMul(t[2]).Mul(t[2].Sum(0)).Sum());

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void ActivationsAndPermute(string device) =>
        AssertSameAsCpu(device, [Leaf(7, 2, 3, 4)],
            t => t[0].Gelu().Permute(2, 0, 1).Tanh().Mul(t[0].Silu().Permute(2, 0, 1)).Sum());
}
