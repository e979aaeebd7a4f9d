using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Lookup-free quantization: binarisation with a straight-through gradient, the commitment term, and the
// streamed entropy terms (see Kernels/Lfq for the algorithm).
public static partial class F
{
    /// <summary>Binarises z (B, K, H, W) per channel-bit: returns the straight-through quantized tensor (value ±1,
    /// gradient identity w.r.t. z), the indices (B, H, W) Int32 (channel k worth 2^k) and mean((zq − z)²).</summary>
    public static (Tensor Quantized, Tensor Indices, Tensor CommitmentMse) LfqQuantize(Tensor z)
    {
        if (z.Rank != 4) throw new ArgumentException($"LFQ expects (B, K, H, W) latents, got {ShapeUtil.Format(z.Shape)}");
        int batch = z.Shape[0], bits = z.Shape[1], hw = z.Shape[2] * z.Shape[3];
        if (bits > 30) throw new ArgumentException($"LFQ with {bits} bits: indices must fit in 31 bits");
        var dev = z.Device;
        var zq = Tensor.Empty(z.Shape, dev);
        var indices = Tensor.Empty(new[] { batch, z.Shape[2], z.Shape[3] }, dev, DType.Int32);
        var sum = Tensor.Empty(Array.Empty<int>(), dev);
        dev.ModelOps.LfqQuantize(batch, bits, hw, z.Buf, zq.Buf, indices.Buf, sum.Buf);
        var mse = Tensor.Empty(Array.Empty<int>(), dev);
        dev.Unary(UnaryOp.Scale, sum.Buf, mse.Buf, 1, 1f / z.Numel);

        var quantized = zq.Detach();
        Tape.Record(quantized, "lfq_straight_through", new[] { z }, [], g => new[] { g });
        Tape.Record(mse, "lfq_commitment", new[] { z }, [z, zq], g =>
            // d mean((zq − z)²)/dz = 2(z − zq)/numel, zq held constant (detached in the reference).
            new[] { z.Detach().Sub(zq).MulScalar(2f / z.Numel).Mul(g) });
        return (quantized, indices, mse);
    }

    /// <summary>The LFQ entropy terms of z (B, K, H, W) against all 2^K codes at the given temperature:
    /// a (2) tensor [per-sample entropy, entropy of the mean distribution] (gamma not applied).</summary>
    public static Tensor LfqEntropy(Tensor z, float temperature)
    {
        int batch = z.Shape[0], bits = z.Shape[1], hw = z.Shape[2] * z.Shape[3];
        var dev = z.Device;
        var avg = Tensor.Empty(new[] { 1 << bits }, dev);
        var result = Tensor.Empty(new[] { 2 }, dev);
        float inv = 1f / temperature;
        dev.ModelOps.LfqEntropyForward(batch, bits, hw, inv, z.Buf, avg.Buf, result.Buf);
        Tape.Record(result, "lfq_entropy", new[] { z }, [z, avg], g =>
        {
            var dz = Tensor.Empty(z.Shape, dev);
            dev.ModelOps.LfqEntropyBackward(batch, bits, hw, inv, z.Buf, avg.Buf, g.Buf, dz.Buf);
            return new[] { dz };
        });
        return result;
    }

    /// <summary>log(max(x, eps)), the gradient passing where x ≥ eps (the reference's clamp_log).</summary>
    public static Tensor ClampLog(Tensor x, float eps = 1e-5f) => x.ClampMin(eps).Log();
}

public static partial class F
{
    /// <summary>The reference's entropy_loss_fn on an explicit affinity (…, codes): softmax(affinity/T) per row;
    /// returns (mean per-row entropy, gamma × entropy of the mean distribution), both with clamp_log.</summary>
    public static (Tensor PerSample, Tensor Average) EntropyLoss(Tensor affinity, float temperature, float gamma = 1f)
    {
        var flat = affinity.Reshape(-1, affinity.Shape[^1]).MulScalar(1f / temperature);
        var p = flat.Softmax(-1);
        var avgP = p.Mean(0);
        var perSample = p.Mul(ClampLog(p)).Sum(-1).Mean().Neg();
        var avg = avgP.Mul(ClampLog(avgP)).Sum().Neg();
        return (perSample, avg.MulScalar(gamma));
    }
}
