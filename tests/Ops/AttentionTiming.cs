using System.Diagnostics;
using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ops;

/// <summary>Speed of the fused attention core at the generator's shape (batch 2 × 16 heads, seq 257, head dim
/// 64). Run explicitly in Release: dotnet test tests -c Release --filter Name~AttentionCoreTiming.</summary>
[Explicit("timing, not a correctness test")]
public class AttentionTiming
{
    [Test]
    public void AttentionCoreTiming()
    {
        const int heads = 32, seq = 257, dim = 64, runs = 10;
        var rng = new Random(1);
        int n = heads * seq * dim;
        Tensor Random() => Tensor.FromArray(GradCheck.RandomValues(rng, n).Select(v => (float)v).ToArray(), heads, seq, dim);
        Tensor q = Random(), k = Random(), v = Random(), dOut = Random();
        Tensor o = Tensor.Empty(q.Shape), lse = Tensor.Empty(new[] { heads, seq });
        Tensor dq = Tensor.Empty(q.Shape), dk = Tensor.Empty(q.Shape), dv = Tensor.Empty(q.Shape);
        IBackend dev = q.Device;
        float scale = 1f / MathF.Sqrt(dim);

        void Forward() => dev.AttentionForward(heads, seq, dim, scale, 0f, 0, q.Buf, k.Buf, v.Buf, o.Buf, lse.Buf);
        void Backward() => dev.AttentionBackward(heads, seq, dim, scale, 0f, 0, q.Buf, k.Buf, v.Buf, o.Buf, lse.Buf, dOut.Buf, dq.Buf, dk.Buf, dv.Buf);

        double fwd = Median(Forward, runs), bwd = Median(Backward, runs), both = Median(() => { Forward(); Backward(); }, runs);
        double gflop = 2.0 * heads * seq * seq * dim / 1e9;   // one seq×seq×dim product
        TestContext.Out.WriteLine($"attention core ({heads}, {seq}, {dim}), median of {runs}, {Environment.ProcessorCount} cores:");
        TestContext.Out.WriteLine($"  forward          {fwd,7:F2} ms  ({2 * gflop / fwd * 1e3:F0} GFLOP/s)");
        TestContext.Out.WriteLine($"  backward         {bwd,7:F2} ms  ({5 * gflop / bwd * 1e3:F0} GFLOP/s)");
        TestContext.Out.WriteLine($"  forward+backward {both,7:F2} ms  ({7 * gflop / both * 1e3:F0} GFLOP/s)");

        int workers = MaskBit.Kernels.Cpu.CpuParallel.Workers;
        try
        {
            MaskBit.Kernels.Cpu.CpuParallel.Workers = 1;
            double fwd1 = Median(Forward, runs), bwd1 = Median(Backward, runs);
            TestContext.Out.WriteLine($"  one core: forward {fwd1:F2} ms ({2 * gflop / fwd1 * 1e3:F0} GFLOP/s), backward {bwd1:F2} ms ({5 * gflop / bwd1 * 1e3:F0} GFLOP/s)");
        }
        finally { MaskBit.Kernels.Cpu.CpuParallel.Workers = workers; }
    }

    private static double Median(Action body, int runs)
    {
        for (int i = 0; i < 3; i++) body();
        var times = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            body();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return times[runs / 2];
    }
}
