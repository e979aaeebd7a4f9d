using MaskBit.Kernels;

namespace MaskBit.Autograd;

// GroupNorm (optionally fused with the SiLU that follows it) and LayerNorm, whose backward kernels reuse the
// per-group / per-row mean and rstd saved by the forward; BatchNorm composed from tensor ops.
public static partial class F
{
    /// <summary>torch.nn.functional.group_norm over (N, C, *spatial) with the biased variance; with
    /// <paramref name="fuseSilu"/> the result is silu(group_norm(x)) computed in the same pass (the backward
    /// recomputes the pre-activation instead of storing it). Null weight/bias mean γ = 1, β = 0.</summary>
    public static Tensor GroupNorm(Tensor x, int groups, Tensor? weight, Tensor? bias, float eps = 1e-5f, bool fuseSilu = false)
    {
        x.RequireDType(DType.Float32);
        if (x.Rank < 2) throw new ArgumentException($"group_norm needs (N, C, ...), got {x}");
        int n = x.Shape[0], channels = x.Shape[1];
        if (groups <= 0 || channels % groups != 0)
            throw new ArgumentException($"group_norm: {channels} channels do not split into {groups} groups");
        int hw = (int)ShapeUtil.Numel(x.Shape[2..]);
        var (gamma, beta) = AffineOrIdentity(x, channels, weight, bias, "group_norm");

        var dev = x.Device;
        var y = Tensor.Empty(x.Shape, dev);
        var mean = Tensor.Empty(new[] { n, groups }, dev);
        var rstd = Tensor.Empty(new[] { n, groups }, dev);
        var desc = new GroupNormDesc(n, channels, hw, groups, eps, fuseSilu);
        dev.GroupNormForward(desc, x.Buf, gamma.Buf, beta.Buf, y.Buf, mean.Buf, rstd.Buf);
        Tape.Record(y, fuseSilu ? "group_norm_silu" : "group_norm", new[] { x, gamma, beta }, [x, gamma, beta, mean, rstd], g =>
        {
            var dx = Tensor.Empty(x.Shape, dev);
            var dgamma = Tensor.Empty(new[] { channels }, dev);
            var dbeta = Tensor.Empty(new[] { channels }, dev);
            dev.GroupNormBackward(desc, x.Buf, gamma.Buf, beta.Buf, mean.Buf, rstd.Buf, g.Buf, dx.Buf, dgamma.Buf, dbeta.Buf);
            return new[] { dx, dgamma, dbeta };
        });
        return y;
    }

    /// <summary>torch.nn.functional.layer_norm over the last axis (biased variance). Null weight/bias mean
    /// γ = 1, β = 0.</summary>
    public static Tensor LayerNorm(Tensor x, Tensor? weight, Tensor? bias, float eps = 1e-5f)
    {
        x.RequireDType(DType.Float32);
        if (x.Rank < 1) throw new ArgumentException($"layer_norm needs at least one axis, got {x}");
        int cols = x.Shape[^1], rows = (int)ShapeUtil.Numel(x.Shape[..^1]);
        var (gamma, beta) = AffineOrIdentity(x, cols, weight, bias, "layer_norm");

        var dev = x.Device;
        var y = Tensor.Empty(x.Shape, dev);
        var mean = Tensor.Empty(new[] { rows }, dev);
        var rstd = Tensor.Empty(new[] { rows }, dev);
        dev.LayerNormForward(rows, cols, eps, x.Buf, gamma.Buf, beta.Buf, y.Buf, mean.Buf, rstd.Buf);
        Tape.Record(y, "layer_norm", new[] { x, gamma, beta }, [x, gamma, mean, rstd], g =>
        {
            var dx = Tensor.Empty(x.Shape, dev);
            var dgamma = Tensor.Empty(new[] { cols }, dev);
            var dbeta = Tensor.Empty(new[] { cols }, dev);
            dev.LayerNormBackward(rows, cols, x.Buf, gamma.Buf, mean.Buf, rstd.Buf, g.Buf, dx.Buf, dgamma.Buf, dbeta.Buf);
            return new[] { dx, dgamma, dbeta };
        });
        return y;
    }

    /// <summary>torch.nn.functional.batch_norm over (N, C, *spatial). Training: normalises each channel with its
    /// batch mean and biased variance over N and the spatial axes, and — when running statistics are given —
    /// updates them in place: running = (1 − momentum)·running + momentum·batch, with the unbiased variance
    /// (× n/(n − 1)) entering running_var. Otherwise: the per-channel affine map of the running statistics
    /// (scale = weight/√(var + eps), shift = bias − mean·scale, as aten). Null weight/bias mean γ = 1, β = 0.
    /// Composed from differentiable ops: the backward (through the batch statistics) comes from the tape.</summary>
    public static Tensor BatchNorm(Tensor x, Tensor? runningMean, Tensor? runningVar, Tensor? weight, Tensor? bias,
        bool training, float momentum = 0.1f, float eps = 1e-5f)
    {
        x.RequireDType(DType.Float32);
        if (x.Rank < 2) throw new ArgumentException($"batch_norm needs (N, C, ...), got {x}");
        int channels = x.Shape[1];
        var (gamma, beta) = AffineOrIdentity(x, channels, weight, bias, "batch_norm");
        var channelShape = Enumerable.Repeat(1, x.Rank).ToArray();
        channelShape[1] = channels;
        if (!training)
        {
            if (runningMean == null || runningVar == null) throw new ArgumentException("batch_norm: evaluation needs the running mean and variance");
            var scale = gamma.Mul(runningVar.AddScalar(eps).Rsqrt());
            var shift = beta.Sub(runningMean.Mul(scale));
            return x.Mul(scale.Reshape(channelShape)).Add(shift.Reshape(channelShape));
        }

        long count = x.Numel / channels;
        if (count < 2) throw new ArgumentException($"batch_norm: training needs more than one value per channel, got {x}");
        var axes = Enumerable.Range(0, x.Rank).Where(d => d != 1).ToArray();
        var mean = x.Mean(axes, keepDim: true);
        var centered = x.Sub(mean);
        var variance = centered.Square().Mean(axes, keepDim: true);
        var y = centered.Mul(variance.AddScalar(eps).Rsqrt().Mul(gamma.Reshape(channelShape))).Add(beta.Reshape(channelShape));
        using var _ = Tape.NoGrad();
        float keep = 1f - momentum, unbiased = count / (float)(count - 1);
        runningMean?.CopyFrom_(runningMean.MulScalar(keep).Add(mean.Reshape(channels).MulScalar(momentum)));
        runningVar?.CopyFrom_(runningVar.MulScalar(keep).Add(variance.Reshape(channels).MulScalar(momentum * unbiased)));
        return y;
    }

    /// <summary>The affine parameters (checked against <paramref name="size"/>), or constant γ = 1, β = 0 that
    /// need no gradient.</summary>
    private static (Tensor Gamma, Tensor Beta) AffineOrIdentity(Tensor x, int size, Tensor? weight, Tensor? bias, string op)
    {
        foreach (var (p, name) in new[] { (weight, "weight"), (bias, "bias") })
        {
            if (p == null) continue;
            if (p.Rank != 1 || p.Shape[0] != size) throw new ArgumentException($"{op}: {name} {ShapeUtil.Format(p.Shape)} does not match {size} features of {x}");
            if (!ReferenceEquals(p.Device, x.Device)) throw new ArgumentException($"{op}: {name} on {p.Device.Name}, input on {x.Device.Name}");
            p.RequireDType(DType.Float32);
        }
        return (weight ?? Tensor.Full(new[] { size }, 1f, x.Device), bias ?? Tensor.Zeros(new[] { size }, x.Device));
    }
}
