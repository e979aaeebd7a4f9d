using MaskBit.Autograd;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Ops;

/// <summary>Golden `ops` runners for GroupNorm and LayerNorm.</summary>
public static class NormGoldenOps
{
    [GoldenOp("groupnorm")]
    public static void GroupNorm(OpVariant v) =>
        Affine(v, (x, w, b) => F.GroupNorm(x, v.MetaInt("groups"), w, b, (float)v.MetaDouble("eps")));

    [GoldenOp("layernorm")]
    public static void LayerNorm(OpVariant v) =>
        Affine(v, (x, w, b) => F.LayerNorm(x, w, b, (float)v.MetaDouble("eps")));

    private static void Affine(OpVariant v, Func<Tensor, Tensor, Tensor, Tensor> norm)
    {
        var x = v.Input("x", true); var w = v.Input("w", true); var b = v.Input("b", true);
        var y = norm(x, w, b);
        v.BackwardWithR(y);
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
        v.Expect("grad_w", w.Grad);
        v.Expect("grad_b", b.Grad);
    }
}
