using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Softmax / log-softmax along an axis (last-axis kernels; other axes are moved there and back).
public sealed partial class Tensor
{
    public Tensor Softmax(int dim = -1) => SoftmaxAlong(dim, log: false);

    public Tensor LogSoftmax(int dim = -1) => SoftmaxAlong(dim, log: true);

    private Tensor SoftmaxAlong(int dim, bool log)
    {
        RequireDType(DType.Float32);
        int d = ShapeUtil.Axis(dim, Rank);
        if (d != Rank - 1) return Transpose(d, -1).SoftmaxAlong(-1, log).Transpose(d, -1);
        int cols = Shape[^1], rows = (int)ShapeUtil.Numel(Shape[..^1]);
        var y = Empty(Shape, Device);
        if (Numel == 0) return y;
        Device.SoftmaxForward(rows, cols, Buf, y.Buf, log);
        Tape.Record(y, log ? "log_softmax" : "softmax", new[] { this }, [y], g =>
        {
            var dx = Empty(y.Shape, y.Device);
            y.Device.SoftmaxBackward(rows, cols, y.Buf, g.Buf, dx.Buf, log);
            return new[] { dx };
        });
        return y;
    }
}

/// <summary>How a per-sample loss is reduced (torch's reduction= argument).</summary>
public enum Reduction { Mean, Sum, None }

public static partial class F
{
    /// <summary>torch.nn.functional.cross_entropy for logits (N, C) and Int32 class targets (N): per row
    /// −(1−ε)·log p[t] − ε/C·Σ_c log p[c], then reduced. Targets must lie in [0, C).</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, float labelSmoothing = 0f, Reduction reduction = Reduction.Mean)
    {
        logits.RequireDType(DType.Float32);
        targets.RequireDType(DType.Int32);
        if (logits.Rank != 2) throw new ArgumentException($"cross_entropy: logits must be (N, C), got {logits}");
        int n = logits.Shape[0], classes = logits.Shape[1];
        if (targets.Rank != 1 || targets.Shape[0] != n)
            throw new ArgumentException($"cross_entropy: targets {ShapeUtil.Format(targets.Shape)} for logits {ShapeUtil.Format(logits.Shape)}; expected ({n})");
        if (!(labelSmoothing >= 0f && labelSmoothing <= 1f))
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), $"label smoothing {labelSmoothing} is outside [0, 1]");
        RequireSameDevice(targets, logits.Device, "cross_entropy", "target");

        var dev = logits.Device;
        var loss = Tensor.Empty(new[] { n }, dev);
        var lse = Tensor.Empty(new[] { n }, dev);
        dev.CrossEntropyForward(n, classes, logits.Buf, targets.Buf, labelSmoothing, loss.Buf, lse.Buf);
        Tape.Record(loss, "cross_entropy", new[] { logits }, [logits, targets, lse], g =>
        {
            var dx = Tensor.Empty(logits.Shape, dev);
            dev.CrossEntropyBackward(n, classes, logits.Buf, targets.Buf, labelSmoothing, lse.Buf, g.Buf, dx.Buf);
            return new[] { dx };
        });
        return reduction switch
        {
            Reduction.None => loss,
            Reduction.Sum => loss.Sum(),
            Reduction.Mean => loss.Mean(),
            _ => throw new ArgumentOutOfRangeException(nameof(reduction), reduction, null),
        };
    }
}
