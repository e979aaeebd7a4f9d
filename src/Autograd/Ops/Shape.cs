using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Views and copies that move data around: reshape, permute, slice, concat, broadcast.
public sealed partial class Tensor
{
    /// <summary>Same data, new shape (a view; one axis may be −1).</summary>
    public Tensor Reshape(params int[] shape)
    {
        shape = (int[])shape.Clone();
        int infer = Array.IndexOf(shape, -1);
        if (infer >= 0)
        {
            long known = 1;
            for (int i = 0; i < shape.Length; i++) if (i != infer) known *= shape[i];
            if (known == 0 || Numel % known != 0) throw new ArgumentException($"reshape {ShapeUtil.Format(Shape)} to {ShapeUtil.Format(shape)}: −1 cannot be inferred");
            shape[infer] = (int)(Numel / known);
        }
        ShapeUtil.Validate(shape);
        if (ShapeUtil.Numel(shape) != Numel) throw new ArgumentException($"reshape {ShapeUtil.Format(Shape)} ({Numel} elements) to {ShapeUtil.Format(shape)}");
        var y = new Tensor(Storage, Offset, shape);
        var inShape = Shape;
        Tape.Record(y, "reshape", new[] { this }, [], g => new[] { g.Reshape(inShape) });
        return y;
    }

    public Tensor Flatten(int startDim = 0)
    {
        startDim = ShapeUtil.Axis(startDim, Rank);
        return Reshape(Shape[..startDim].Append(-1).ToArray());
    }

    public Tensor Unsqueeze(int dim)
    {
        int d = dim < 0 ? dim + Rank + 1 : dim;
        var s = Shape.ToList(); s.Insert(d, 1);
        return Reshape(s.ToArray());
    }

    public Tensor Squeeze(int dim)
    {
        int d = ShapeUtil.Axis(dim, Rank);
        if (Shape[d] != 1) throw new ArgumentException($"squeeze: axis {dim} of {ShapeUtil.Format(Shape)} is not 1");
        var s = Shape.ToList(); s.RemoveAt(d);
        return Reshape(s.ToArray());
    }

    /// <summary>Reorders axes (a copy: tensors are always contiguous).</summary>
    public Tensor Permute(params int[] perm)
    {
        if (perm.Length != Rank) throw new ArgumentException($"permute: {perm.Length} axes for rank {Rank}");
        var strides = ShapeUtil.ContiguousStrides(Shape);
        var outShape = new int[Rank]; var srcStrides = new int[Rank];
        var seen = new bool[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int p = ShapeUtil.Axis(perm[i], Rank);
            if (seen[p]) throw new ArgumentException($"permute: axis {p} repeated");
            seen[p] = true;
            outShape[i] = Shape[p]; srcStrides[i] = strides[p];
        }
        var y = Empty(outShape, Device, DType);
        Device.CopyStrided(Buf, srcStrides, y.Buf, ShapeUtil.ContiguousStrides(outShape), outShape);
        var inverse = new int[Rank];
        for (int i = 0; i < Rank; i++) inverse[ShapeUtil.Axis(perm[i], Rank)] = i;
        Tape.Record(y, "permute", new[] { this }, [], g => new[] { g.Permute(inverse) });
        return y;
    }

    public Tensor Transpose(int dim0, int dim1)
    {
        var perm = Enumerable.Range(0, Rank).ToArray();
        int a = ShapeUtil.Axis(dim0, Rank), b = ShapeUtil.Axis(dim1, Rank);
        (perm[a], perm[b]) = (perm[b], perm[a]);
        return Permute(perm);
    }

    /// <summary>Elements [start, start + length) along <paramref name="dim"/> (torch.narrow). A view for axis 0
    /// (and wherever the leading axes are all 1), a copy otherwise.</summary>
    public Tensor Narrow(int dim, int start, int length)
    {
        int d = ShapeUtil.Axis(dim, Rank);
        if (start < 0 || length < 0 || start + length > Shape[d])
            throw new ArgumentOutOfRangeException(nameof(start), $"narrow [{start}, {start + length}) on axis {d} of size {Shape[d]}");
        var outShape = (int[])Shape.Clone(); outShape[d] = length;
        var strides = ShapeUtil.ContiguousStrides(Shape);
        Tensor y;
        bool leadingOnes = Shape[..d].All(s => s == 1);
        if (leadingOnes) y = new Tensor(Storage, Offset + (long)start * strides[d], outShape);
        else
        {
            y = Empty(outShape, Device, DType);
            Device.CopyStrided(Buf.At((long)start * strides[d]), strides, y.Buf, ShapeUtil.ContiguousStrides(outShape), outShape);
        }
        var inShape = Shape;
        Tape.Record(y, "narrow", new[] { this }, [], g =>
        {
            var dx = Zeros(inShape, g.Device);
            g.Device.CopyStrided(g.Buf, ShapeUtil.ContiguousStrides(outShape), dx.Buf.At((long)start * strides[d]), strides, outShape);
            return new[] { dx };
        });
        return y;
    }

    /// <summary>Row <paramref name="index"/> of the first axis, as a view without that axis.</summary>
    public Tensor Select0(int index) => Narrow(0, index, 1).Squeeze(0);

    /// <summary>Concatenates along <paramref name="dim"/>.</summary>
    public static Tensor Cat(IReadOnlyList<Tensor> parts, int dim)
    {
        if (parts.Count == 0) throw new ArgumentException("cat of no tensors");
        var first = parts[0];
        int d = ShapeUtil.Axis(dim, first.Rank);
        var outShape = (int[])first.Shape.Clone(); outShape[d] = 0;
        foreach (var p in parts)
        {
            if (p.Rank != first.Rank) throw new ArgumentException($"cat: ranks {first.Rank} and {p.Rank}");
            for (int i = 0; i < p.Rank; i++)
                if (i != d && p.Shape[i] != first.Shape[i]) throw new ArgumentException($"cat along {d}: shapes {ShapeUtil.Format(first.Shape)} and {ShapeUtil.Format(p.Shape)}");
            outShape[d] += p.Shape[d];
        }
        var y = Empty(outShape, first.Device, first.DType);
        var yStrides = ShapeUtil.ContiguousStrides(outShape);
        long offset = 0;
        var offsets = new long[parts.Count];
        for (int i = 0; i < parts.Count; i++)
        {
            offsets[i] = offset;
            var p = parts[i];
            first.Device.CopyStrided(p.Buf, ShapeUtil.ContiguousStrides(p.Shape), y.Buf.At(offset), yStrides, p.Shape);
            offset += (long)p.Shape[d] * yStrides[d];
        }
        Tape.Record(y, "cat", parts.ToArray(), [], g =>
        {
            var grads = new Tensor?[parts.Count];
            for (int i = 0; i < parts.Count; i++)
            {
                if (!parts[i].RequiresGrad) continue;
                var gi = Empty(parts[i].Shape, g.Device);
                g.Device.CopyStrided(g.Buf.At(offsets[i]), yStrides, gi.Buf, ShapeUtil.ContiguousStrides(gi.Shape), gi.Shape);
                grads[i] = gi;
            }
            return grads;
        });
        return y;
    }

    public static Tensor Stack(IReadOnlyList<Tensor> parts, int dim = 0) => Cat(parts.Select(p => p.Unsqueeze(dim)).ToList(), dim);

    /// <summary>Materialises a broadcast to <paramref name="shape"/> (torch expand + contiguous).</summary>
    public Tensor BroadcastTo(int[] shape)
    {
        if (Shape.AsSpan().SequenceEqual(shape)) return this;
        var target = ShapeUtil.Broadcast(Shape, shape, "broadcast_to");
        if (!target.AsSpan().SequenceEqual(shape)) throw new ArgumentException($"cannot broadcast {ShapeUtil.Format(Shape)} to {ShapeUtil.Format(shape)}");
        var y = Empty(shape, Device, DType);
        Device.CopyStrided(Buf, ShapeUtil.BroadcastStrides(Shape, shape), y.Buf, ShapeUtil.ContiguousStrides(shape), shape);
        var inShape = Shape;
        Tape.Record(y, "broadcast_to", new[] { this }, [], g => new[] { g.SumTo(inShape) });
        return y;
    }

    /// <summary>Sums a broadcast result back to <paramref name="shape"/> (the backward of broadcasting).</summary>
    public Tensor SumTo(int[] shape)
    {
        if (Shape.AsSpan().SequenceEqual(shape)) return this;
        int lead = Rank - shape.Length;
        var dims = new List<int>();
        for (int i = 0; i < Rank; i++)
            if (i < lead || (shape[i - lead] == 1 && Shape[i] != 1)) dims.Add(i);
        return Sum(dims.ToArray(), keepDim: true).Reshape(shape);
    }
}
