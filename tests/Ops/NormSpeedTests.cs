using System.Diagnostics;
using MaskBit.Autograd;
using MaskBit.Kernels;

namespace MaskBit.Tests.Ops;

/// <summary>Timings of the memory-bound kernels at model shapes (explicit: run in Release on a quiet machine).
/// PyTorch on this CPU: GroupNorm+SiLU 128@256² forward+backward 61–63 ms at 2 threads.</summary>
[Explicit("timing"), Category("Speed")]
public class NormSpeedTests
{
    [Test]
    public void GroupNormSiluForwardBackward128x256()
    {
        var rng = new Random(1);
        int[] shape = { 1, 128, 256, 256 };
        var x = Tensor.FromArray(Enumerable.Range(0, 128 * 256 * 256).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(), shape).RequiresGrad_();
        var w = Tensor.Ones(128).RequiresGrad_(); var b = Tensor.Zeros(128).RequiresGrad_();
        var dy = Tensor.Full(shape, 0.5f);

        var dev = x.Device;
        var desc = new GroupNormDesc(1, 128, 256 * 256, 32, 1e-6f, FuseSilu: true);
        var y = Tensor.Empty(shape); var dx = Tensor.Empty(shape);
        var mean = Tensor.Empty(new[] { 32 }); var rstd = Tensor.Empty(new[] { 32 });
        var dg = Tensor.Empty(new[] { 128 }); var db = Tensor.Empty(new[] { 128 });
        double fwd = Median(() => dev.GroupNormForward(desc, x.Buf, w.Buf, b.Buf, y.Buf, mean.Buf, rstd.Buf));
        double bwd = Median(() => dev.GroupNormBackward(desc, x.Buf, w.Buf, b.Buf, mean.Buf, rstd.Buf, dy.Buf, dx.Buf, dg.Buf, db.Buf));
        double tape = Median(() => Tape.Grad(F.GroupNorm(x, 32, w, b, 1e-6f, fuseSilu: true), new[] { x, w, b }, dy));
        TestContext.Out.WriteLine($"GroupNorm+SiLU 128@256²: kernels fwd {fwd:F2} ms + bwd {bwd:F2} ms = {fwd + bwd:F2} ms; through the tape {tape:F2} ms (PyTorch 61–63 ms)");
    }

    [Test]
    public void CrossEntropyWideRows()
    {
        const int rows = 64, classes = 1 << 18;
        var rng = new Random(2);
        var logits = Tensor.FromArray(Enumerable.Range(0, rows * classes).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray(), rows, classes).RequiresGrad_();
        var targets = Tensor.FromInts(Enumerable.Range(0, rows).Select(i => i * 997).ToArray(), rows);
        double fb = Median(() => Tape.Grad(F.CrossEntropy(logits, targets, 0.1f), new[] { logits }));
        double sm = Median(() => logits.Detach().Softmax());
        TestContext.Out.WriteLine($"cross-entropy {rows}×2^18 fwd+bwd {fb:F2} ms ({fb * 1e6 / ((double)rows * classes):F2} ns/element); softmax fwd {sm:F2} ms");
    }

    private static double Median(Action run, int reps = 15)
    {
        for (int i = 0; i < 3; i++) run();
        var times = new double[reps];
        for (int i = 0; i < reps; i++) { var sw = Stopwatch.StartNew(); run(); times[i] = sw.Elapsed.TotalMilliseconds; }
        Array.Sort(times);
        return times[reps / 2];
    }
}
