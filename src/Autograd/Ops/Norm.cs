using MaskBit.Kernels;

namespace MaskBit.Autograd;

// GroupNorm (optionally fused with the SiLU that follows it) and LayerNorm; backward kernels reuse the
// per-group / per-row mean and rstd saved by the forward.
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
        Tape.Record(y, fuseSilu ? "group_norm_silu" : "group_norm", new[] { x, gamma, beta }, g =>
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
        Tape.Record(y, "layer_norm", new[] { x, gamma, beta }, g =>
        {
            var dx = Tensor.Empty(x.Shape, dev);
            var dgamma = Tensor.Empty(new[] { cols }, dev);
            var dbeta = Tensor.Empty(new[] { cols }, dev);
            dev.LayerNormBackward(rows, cols, x.Buf, gamma.Buf, mean.Buf, rstd.Buf, g.Buf, dx.Buf, dgamma.Buf, dbeta.Buf);
            return new[] { dx, dgamma, dbeta };
        });
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
