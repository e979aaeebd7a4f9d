using MaskBit.Autograd;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Ops;

/// <summary>Golden `ops` runners for softmax, log-softmax and label-smoothed cross-entropy.</summary>
public static class SoftmaxGoldenOps
{
    [GoldenOp("softmax")] public static void Softmax(OpVariant v) => Unary(v, x => x.Softmax());
    [GoldenOp("log_softmax")] public static void LogSoftmax(OpVariant v) => Unary(v, x => x.LogSoftmax());

    private static void Unary(OpVariant v, Func<Tensor, Tensor> f)
    {
        var x = v.Input("x", requiresGrad: true);
        var y = f(x);
        v.BackwardWithR(y);
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
    }

    [GoldenOp("cross_entropy")]
    public static void CrossEntropy(OpVariant v)
    {
        var x = v.Input("x", requiresGrad: true);
        var y = F.CrossEntropy(x, v.Input("target"), (float)v.MetaDouble("label_smoothing"));
        y.Backward();
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
    }
}
