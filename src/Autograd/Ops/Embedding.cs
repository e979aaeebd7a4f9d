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
        RequireSameDevice(indices, weight.Device, "embedding", "index");
        int num = weight.Shape[0], dim = weight.Shape[1], count = (int)indices.Numel;

        var dev = weight.Device;
        var y = Tensor.Empty(indices.Shape.Append(dim).ToArray(), dev);
        dev.EmbeddingForward(count, dim, num, weight.Buf, indices.Buf, y.Buf);
        Tape.Record(y, "embedding", new[] { weight }, [indices], g =>
        {
            var dw = Tensor.Zeros(weight.Shape, dev);
            dev.EmbeddingBackward(count, dim, num, g.Buf, indices.Buf, dw.Buf);
            return new[] { dw };
        });
        return y;
    }

    /// <summary>Int32 values (…, splits) of <paramref name="bits"/> bits each as their bits least significant first,
    /// ±1; result (…, splits·bits). LFQBert's input has a mask token (a value equal to <paramref name="maskToken"/>
    /// gives zeros; values beyond it are errors); LFQ codebook entries have none (maskToken &lt; 0; values must
    /// fit in the bits).</summary>
    public static Tensor TokenBits(Tensor tokens, int bits, int maskToken)
    {
        tokens.RequireDType(DType.Int32);
        if (tokens.Rank < 1) throw new ArgumentException("bit tokens: expected at least one axis (…, splits)");
        var y = Tensor.Empty(tokens.Shape[..^1].Append(tokens.Shape[^1] * bits).ToArray(), tokens.Device);
        tokens.Device.ModelOps.TokenBits((int)tokens.Numel, bits, maskToken, tokens.Buf, y.Buf);
        return y;
    }

    /// <summary>Index tensors are checked against their table by the kernels that read them (see
    /// <see cref="IndexFault"/>); here only that they live on the table's device.</summary>
    internal static void RequireSameDevice(Tensor indices, IBackend device, string op, string what)
    {
        if (!ReferenceEquals(indices.Device, device))
            throw new ArgumentException($"{op}: {what} tensor on {indices.Device.Name}, table on {device.Name}");
    }
}
