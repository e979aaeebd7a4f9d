using MaskBit.Autograd;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Ops;

/// <summary>Golden `ops` runners for pooling and resizing.</summary>
public static class ResampleGoldenOps
{
    [GoldenOp("avg_pool2d")] public static void AvgPool(OpVariant v) => Unary(v, F.AvgPool2d2x2);
    [GoldenOp("nearest2x")] public static void Nearest2x(OpVariant v) => Unary(v, F.UpsampleNearest2x);

    [GoldenOp("adaptive_max_pool2d")]
    public static void AdaptiveMaxPool(OpVariant v)
    {
        var size = OutSize(v);
        Unary(v, x => F.AdaptiveMaxPool2d(x, size[0], size[1]));
    }

    [GoldenOp("bilinear_aa")]
    public static void BilinearAntialias(OpVariant v)
    {
        var size = OutSize(v);
        Unary(v, x => F.InterpolateBilinearAntialias(x, size[0], size[1]));
    }

    private static int[] OutSize(OpVariant v) => v.Meta.GetProperty("out").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private static void Unary(OpVariant v, Func<Tensor, Tensor> f)
    {
        var x = v.Input("x", requiresGrad: true);
        var y = f(x);
        v.BackwardWithR(y);
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
    }
}
