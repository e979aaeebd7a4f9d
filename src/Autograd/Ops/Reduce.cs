namespace MaskBit.Autograd;

// Reductions over axes.
public sealed partial class Tensor
{
    /// <summary>Sum of all elements (a 0-d tensor).</summary>
    public Tensor Sum() => Reshape(-1).SumAxis(0, keepDim: false, scale: 1f);

    /// <summary>Sum over the given axes.</summary>
    public Tensor Sum(int[] dims, bool keepDim = false) => ReduceAxes(dims, keepDim, mean: false);

    public Tensor Sum(int dim, bool keepDim = false) => ReduceAxes(new[] { dim }, keepDim, mean: false);

    public Tensor Mean() => Numel == 0 ? throw new InvalidOperationException("mean of an empty tensor") : Reshape(-1).SumAxis(0, false, 1f / Numel);

    public Tensor Mean(int[] dims, bool keepDim = false) => ReduceAxes(dims, keepDim, mean: true);

    public Tensor Mean(int dim, bool keepDim = false) => ReduceAxes(new[] { dim }, keepDim, mean: true);

    /// <summary>Maximum over one axis (values only, not differentiable: used for statistics and stability shifts).</summary>
    public Tensor Max(int dim, bool keepDim = false)
    {
        int d = ShapeUtil.Axis(dim, Rank);
        var (outer, mid, inner) = Split(d);
        var outShape = ReducedShape(d, keepDim);
        var y = Empty(outShape, Device);
        Device.ReduceMax(Buf, y.Buf, outer, mid, inner);
        return y;
    }

    private Tensor ReduceAxes(int[] dims, bool keepDim, bool mean)
    {
        var axes = dims.Select(d => ShapeUtil.Axis(d, Rank)).Distinct().OrderByDescending(d => d).ToArray();
        Tensor y = this;
        foreach (var d in axes) y = y.SumAxis(d, keepDim: true, scale: mean ? 1f / Shape[d] : 1f);
        if (!keepDim) y = y.Reshape(Shape.Where((_, i) => !axes.Contains(i)).ToArray());
        return y;
    }

    private (int outer, int mid, int inner) Split(int d)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < d; i++) outer *= Shape[i];
        for (int i = d + 1; i < Rank; i++) inner *= Shape[i];
        return (outer, Shape[d], inner);
    }

    private int[] ReducedShape(int d, bool keepDim)
    {
        if (keepDim) { var s = (int[])Shape.Clone(); s[d] = 1; return s; }
        return Shape.Where((_, i) => i != d).ToArray();
    }

    private Tensor SumAxis(int d, bool keepDim, float scale)
    {
        RequireDType(Kernels.DType.Float32);
        var (outer, mid, inner) = Split(d);
        var y = Empty(ReducedShape(d, keepDim), Device);
        Device.ReduceSum(Buf, y.Buf, outer, mid, inner, scale);
        var inShape = Shape;
        var keptShape = ReducedShape(d, keepDim: true);
        Tape.Record(y, "sum", new[] { this }, [], g => new[] { g.Reshape(keptShape).BroadcastTo(inShape).MulScalarIf(scale) });
        return y;
    }

    private Tensor MulScalarIf(float s) => s == 1f ? this : MulScalar(s);
}

public sealed partial class Tensor
{
    /// <summary>Index of the first minimum along the last axis (Int32, that axis removed), on the tensor's device;
    /// NaN never wins (a NaN first value keeps index 0).</summary>
    public Tensor ArgMinLastAxis() => ArgExtremeLastAxis(min: true);

    /// <summary>Index of the first maximum along the last axis (Int32, that axis removed), on the tensor's device.</summary>
    public Tensor ArgMaxLastAxis() => ArgExtremeLastAxis(min: false);

    private Tensor ArgExtremeLastAxis(bool min)
    {
        if (Rank < 1 || Shape[^1] == 0) throw new ArgumentException($"arg{(min ? "min" : "max")}: no values along the last axis of {ShapeUtil.Format(Shape)}");
        var src = DType == Kernels.DType.Float32 ? this : To(Kernels.DType.Float32);   // 16-bit values widen exactly
        var indices = Empty(Shape[..^1], Device, Kernels.DType.Int32);
        Device.ModelOps.ArgExtremeRows((int)indices.Numel, Shape[^1], min, src.Buf, indices.Buf);
        return indices;
    }
}
