using MaskBit.Autograd;
using MaskBit.Autograd.Optim;
using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Optim;

/// <summary>clip_grad_norm_'s total norm from the fused sum of squares (no squared copy per gradient), against
/// float64 on every test device; on the CPU the sum has the same bits for any number of workers.</summary>
[NonParallelizable]
public sealed class GradClipTests
{
    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    private static double SumOfSquares(IEnumerable<float[]> xs) => xs.Sum(x => x.Sum(v => (double)v * v));

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void SumOfSquaresAccumulatesInFloat32Rounding(string deviceName)
    {
        var device = TestDevices.Get(deviceName);
        // One value, one partial chunk, and several chunks with a partial last one.
        var xs = new[] { Random(1, 1), Random(1000, 2), Random((1 << 17) + 3, 3) };
        var sum = Tensor.Scalar(0.5f, device);
        foreach (var x in xs)
        {
            var t = Tensor.FromArray(x, [x.Length], device);
            device.SumOfSquares(t.Buf, t.Numel, sum.Buf, accumulate: true);
        }
        double expected = 0.5 + SumOfSquares(xs);
        Assert.That(sum.Item(), Is.EqualTo(expected).Within(1e-6 * expected), deviceName);
    }

    [Test]
    public void CpuSumOfSquaresIsTheSameForAnyNumberOfWorkers()
    {
        var x = Tensor.FromArray(Random(5 * (1 << 16) + 17, 4), [5 * (1 << 16) + 17], CpuBackend.Instance);
        int workers = CpuParallel.Workers;
        var sums = new List<float>();
        try
        {
            foreach (int w in new[] { 1, 2, 3 })
            {
                CpuParallel.Workers = w;
                var sum = Tensor.Scalar(0f, CpuBackend.Instance);
                CpuBackend.Instance.SumOfSquares(x.Buf, x.Numel, sum.Buf, accumulate: false);
                sums.Add(sum.Item());
            }
        }
        finally { CpuParallel.Workers = workers; }
        Assert.That(sums.Distinct().Count(), Is.EqualTo(1), string.Join(", ", sums));
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void ClipGradNormScalesByTheTotalNorm(string deviceName)
    {
        var device = TestDevices.Get(deviceName);
        int[][] shapes = [[3, 4], [70_001], [1]];
        var grads = shapes.Select((s, i) => Random(s.Aggregate(1, (a, b) => a * b), 10 + i)).ToArray();
        double total = Math.Sqrt(SumOfSquares(grads));
        foreach (float maxNorm in new[] { 1f, 1e4f })
        {
            var ps = shapes.Select((s, i) =>
            {
                var p = Tensor.Zeros(s, device).RequiresGrad_();
                p.Grad = Tensor.FromArray(grads[i], s, device);
                return p;
            }).ToList();
            float norm = GradClip.ClipGradNorm(ps, maxNorm);
            Assert.That(norm, Is.EqualTo(total).Within(1e-6 * total), $"total norm on {deviceName}");
            double coef = Math.Min(maxNorm / (total + 1e-6), 1);
            for (int i = 0; i < ps.Count; i++)
            {
                var clipped = ps[i].Grad!.ToArray();
                for (int j = 0; j < clipped.Length; j++)
                    Assert.That(clipped[j], Is.EqualTo(grads[i][j] * coef).Within(2e-6 * Math.Abs(grads[i][j]) + 1e-12), $"grad {i}[{j}], max norm {maxNorm}");
            }
        }
    }
}
