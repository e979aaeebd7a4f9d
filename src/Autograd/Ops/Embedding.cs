using MaskBit.Kernels;

namespace MaskBit.Autograd;

public static partial class F
{
    /// <summary>torch.nn.functional.embedding: rows of <paramref name="weight"/> (num, dim) picked by Int32
    /// <paramref name="indices"/> of any shape; the result has shape indices.Shape + (dim). Repeated indices
    /// accumulate in the weight gradient.</summary>
    public static Tensor Embedding(Tensor indices, Tensor weight)
    {
        indices.RequireDType(DType.Int32);
        weight.RequireDType(DType.Float32);
        if (weight.Rank != 2) throw new ArgumentException($"embedding: weight must be (num, dim), got {weight}");
        int num = weight.Shape[0], dim = weight.Shape[1], count = (int)indices.Numel;
        CheckIndices(indices, num, weight.Device, "embedding", "index", "rows");

        var dev = weight.Device;
        var y = Tensor.Empty(indices.Shape.Append(dim).ToArray(), dev);
        dev.EmbeddingForward(count, dim, weight.Buf, indices.Buf, y.Buf);
        Tape.Record(y, "embedding", new[] { weight }, g =>
        {
            var dw = Tensor.Zeros(weight.Shape, dev);
            dev.EmbeddingBackward(count, dim, g.Buf, indices.Buf, dw.Buf);
            return new[] { dw };
        });
        return y;
    }

    /// <summary>Kernels trust their indices, so every index tensor is checked here against [0, size).</summary>
    internal static void CheckIndices(Tensor indices, int size, IBackend device, string op, string what, string unit)
    {
        if (!ReferenceEquals(indices.Device, device))
            throw new ArgumentException($"{op}: {what} tensor on {indices.Device.Name}, table on {device.Name}");
        var values = indices.ToIntArray();
        for (int i = 0; i < values.Length; i++)
            if ((uint)values[i] >= (uint)size)
                throw new ArgumentOutOfRangeException(nameof(indices),
                    $"{op}: {what} {values[i]} at flat position {i} is out of range for a table of {size} {unit} (valid: 0..{size - 1})");
    }
}
