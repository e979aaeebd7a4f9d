using MaskBit.Autograd;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Ops;

/// <summary>Golden `ops` runners for Conv2dSame and BlurBlock (TF SAME padding, conventions 1 and 2).</summary>
public static class ConvGoldenOps
{
    [GoldenOp("conv2d_same")]
    public static void Conv2dSame(OpVariant v)
    {
        var x = v.Input("x", true); var w = v.Input("w", true);
        var b = v.MetaBool("bias") ? v.Input("b", true) : null;
        int stride = v.MetaInt("s");
        var y = F.Conv2dSame(x, w, b, stride);
        v.BackwardWithR(y);
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
        v.Expect("grad_w", w.Grad);
        if (b != null) v.Expect("grad_b", b.Grad);
        v.ExpectInts("pad_lrtb", PadLrtb(F.SamePadding2d(x.Size(2), x.Size(3), w.Size(2), w.Size(3), stride)));
    }

    [GoldenOp("blur")]
    public static void Blur(OpVariant v)
    {
        var x = v.Input("x", true);
        var kernel = F.BlurKernel(F.BinomialTaps(v.MetaInt("ks")));
        var y = F.Blur(x, kernel);
        v.BackwardWithR(y);
        v.Expect("y", y);
        v.Expect("grad_x", x.Grad);
        v.Expect("w", kernel);
        v.ExpectInts("pad_lrtb", PadLrtb(F.SamePadding2d(x.Size(2), x.Size(3), kernel.Size(2), kernel.Size(3), 2)));
    }

    private static int[] PadLrtb(Padding2d p) => new[] { p.Left, p.Right, p.Top, p.Bottom };
}
