using MaskBit.Kernels;

namespace MaskBit.Autograd;

// The per-step draws of the MaskGIT sampler (see Kernels/Sampling), on the tensors' device. No gradients.
public static partial class F
{
    /// <summary>Float32 values of <paramref name="shape"/> on <paramref name="device"/>: draws
    /// <paramref name="position"/> … of the SplitMix64 stream seeded with <paramref name="seed"/>, made on the device
    /// (<see cref="CounterRandom"/>: the same bits as on the host).</summary>
    public static Tensor RandomDraws(int[] shape, IBackend device, ulong seed, long position, RandomDrawKind kind)
    {
        var y = Tensor.Empty(shape, device);
        device.ModelOps.RandomDraws(y.Numel, seed, position, kind, y.Buf);
        return y;
    }

    /// <summary>Per group of <paramref name="probabilities"/> (…, C): the categorical draw at its uniform, and where
    /// the Int32 <paramref name="mask"/> is set the prediction (the draw) with its confidence log p + gumbel·noiseScale·fade;
    /// elsewhere the group's current token and +∞. uniform, gumbel (Float32), mask and tokens (Int32) hold one value
    /// per group; the results have the shape of <paramref name="tokens"/>.</summary>
    public static (Tensor Sampled, Tensor Predicted, Tensor Confidence) SampleMaskedGroups(Tensor probabilities, Tensor uniform,
        Tensor gumbel, Tensor mask, Tensor tokens, float noiseScale, float fade)
    {
        int classes = probabilities.Shape[^1], groups = (int)tokens.Numel;
        RequireGroups("sample_masked_groups", probabilities, classes, groups, (uniform, DType.Float32, "uniform"),
            (gumbel, DType.Float32, "gumbel"), (mask, DType.Int32, "mask"), (tokens, DType.Int32, "tokens"));
        var dev = probabilities.Device;
        var sampled = Tensor.Empty(tokens.Shape, dev, DType.Int32);
        var predicted = Tensor.Empty(tokens.Shape, dev, DType.Int32);
        var confidence = Tensor.Empty(tokens.Shape, dev);
        dev.ModelOps.SampleMaskedGroups(groups, classes, noiseScale, fade, probabilities.Buf, uniform.Buf, gumbel.Buf, mask.Buf, tokens.Buf,
            sampled.Buf, predicted.Buf, confidence.Buf);
        return (sampled, predicted, confidence);
    }

    /// <summary>Re-masks the least confident groups of each sample (the batch is the first axis of
    /// <paramref name="confidence"/>): the reference's count from <paramref name="maskLen"/> and sample 0's
    /// <paramref name="mask"/>, the threshold per sample, then the new masked tokens (masked groups set to
    /// <paramref name="maskToken"/>, the others to <paramref name="predicted"/>) and the new mask. Counts holds
    /// [groups masked before, groups to mask] (Int32).</summary>
    public static (Tensor MaskedTokens, Tensor Mask, Tensor Threshold, Tensor Counts) RemaskLeastConfident(Tensor confidence,
        Tensor predicted, Tensor mask, float maskLen, int maskToken)
    {
        if (confidence.Rank < 1) throw new ArgumentException("remask_least_confident: confidence needs a batch axis");
        int batch = confidence.Shape[0], groups = (int)confidence.Numel, perSample = batch == 0 ? 0 : groups / batch;
        RequireGroups("remask_least_confident", confidence, 1, groups, (predicted, DType.Int32, "predicted"), (mask, DType.Int32, "mask"));
        var dev = confidence.Device;
        var maskedTokens = Tensor.Empty(predicted.Shape, dev, DType.Int32);
        var newMask = Tensor.Empty(mask.Shape, dev, DType.Int32);
        var threshold = Tensor.Empty(new[] { batch }, dev);
        var counts = Tensor.Empty(new[] { 2 }, dev, DType.Int32);
        dev.ModelOps.RemaskLeastConfident(batch, perSample, maskLen, maskToken, confidence.Buf, predicted.Buf, mask.Buf, newMask.Buf,
            maskedTokens.Buf, threshold.Buf, counts.Buf);
        return (maskedTokens, newMask, threshold, counts);
    }

    /// <summary>Checks that <paramref name="rows"/> (Float32, <paramref name="width"/> values per group) and every
    /// per-group tensor hold <paramref name="groups"/> groups on one device.</summary>
    private static void RequireGroups(string op, Tensor rows, int width, int groups, params (Tensor Tensor, DType DType, string Name)[] perGroup)
    {
        rows.RequireDType(DType.Float32);
        if (rows.Numel != (long)groups * width)
            throw new ArgumentException($"{op}: {ShapeUtil.Format(rows.Shape)} does not hold {groups} groups of {width}");
        foreach (var (t, dtype, name) in perGroup)
        {
            if (t.DType != dtype) throw new ArgumentException($"{op}: {name} must be {dtype}, got {t.DType}");
            if (t.Numel != groups) throw new ArgumentException($"{op}: {name} {ShapeUtil.Format(t.Shape)} does not hold one value per group ({groups})");
            if (!ReferenceEquals(t.Device, rows.Device)) throw new ArgumentException($"{op}: {name} is on {t.Device.Name}, not {rows.Device.Name}");
        }
    }
}
