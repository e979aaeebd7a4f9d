using MaskBit.Autograd;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Ops;

/// <summary>Golden `ops` runner for the embedding lookup (repeated indices accumulate in grad_w).</summary>
public static class EmbeddingGoldenOps
{
    [GoldenOp("embedding")]
    public static void Embedding(OpVariant v)
    {
        var w = v.Input("w", requiresGrad: true);
        var y = F.Embedding(v.Input("idx"), w);
        v.BackwardWithR(y);
        v.Expect("y", y);
        v.Expect("grad_w", w.Grad);
    }
}
