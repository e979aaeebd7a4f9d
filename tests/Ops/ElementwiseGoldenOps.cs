using MaskBit.Autograd;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Ops;

/// <summary>Golden `ops` runners for activations, simple losses, linear and l2-normalize.</summary>
public static class ElementwiseGoldenOps
{
    [GoldenOp("silu")] public static void Silu(OpVariant v) => Unary(v, x => x.Silu());
    [GoldenOp("gelu")] public static void Gelu(OpVariant v) => Unary(v, x => x.Gelu());
    [GoldenOp("leaky_relu")] public static void LeakyRelu(OpVariant v) => Unary(v, x => x.LeakyRelu(0.1f));
    [GoldenOp("l2_normalize")] public static void L2Normalize(OpVariant v) => Unary(v, x => F.Normalize(x, -1));

    private static void Unary(OpVariant v, Func<Tensor, Tensor> f)
    {
        var x = v.Input("x", requiresGrad: true);
        var y = f(x);
        v.BackwardWithR(y);
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
    }

    [GoldenOp("mse")] public static void Mse(OpVariant v) => Loss(v, F.MseLoss);
    [GoldenOp("l1")] public static void L1(OpVariant v) => Loss(v, F.L1Loss);

    private static void Loss(OpVariant v, Func<Tensor, Tensor, Tensor> f)
    {
        var x = v.Input("x", requiresGrad: true);
        var t = v.Input("t", requiresGrad: true);
        var y = f(x, t);
        y.Backward();
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
        v.Expect("grad_t", t.Grad);
    }

    [GoldenOp("linear")]
    public static void Linear(OpVariant v)
    {
        var x = v.Input("x", true); var w = v.Input("w", true); var b = v.Input("b", true);
        var y = F.Linear(x, w, b);
        v.BackwardWithR(y);
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
        v.Expect("grad_w", w.Grad);
        v.Expect("grad_b", b.Grad);
    }
}
