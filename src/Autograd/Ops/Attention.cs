using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Fused attention and torch's multi-head attention built on it.
public static partial class F
{
    /// <summary>softmax(q·kᵀ·scale)·v over the last two axes of (B, H, S, D) or (BH, S, D) tensors (torch
    /// F.scaled_dot_product_attention without mask or dropout; scale defaults to 1/√D). One fused kernel each
    /// way: the backward recomputes the probabilities from the saved per-row log-sum-exp.</summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, float? scale = null)
    {
        foreach (var t in new[] { q, k, v }) t.RequireDType(DType.Float32);
        if (q.Rank is not (3 or 4))
            throw new ArgumentException($"scaled_dot_product_attention: expected (B, H, S, D) or (BH, S, D), got {ShapeUtil.Format(q.Shape)}");
        ShapeUtil.RequireSame(q.Shape, k.Shape, "scaled_dot_product_attention (q, k; self-attention lengths)");
        ShapeUtil.RequireSame(q.Shape, v.Shape, "scaled_dot_product_attention (q, v)");
        if (!ReferenceEquals(q.Device, k.Device) || !ReferenceEquals(q.Device, v.Device))
            throw new ArgumentException("scaled_dot_product_attention: q, k, v live on different devices");

        int batchHeads = (int)ShapeUtil.Numel(q.Shape[..^2]), seq = q.Shape[^2], dim = q.Shape[^1];
        float s = scale ?? 1f / MathF.Sqrt(dim);
        var device = q.Device;

        var output = Tensor.Empty(q.Shape, device);
        var lse = Tensor.Empty(new[] { batchHeads, seq }, device);
        device.AttentionForward(batchHeads, seq, dim, s, q.Buf, k.Buf, v.Buf, output.Buf, lse.Buf);
        Tape.Record(output, "scaled_dot_product_attention", new[] { q, k, v }, g =>
        {
            Tensor dq = Tensor.Empty(q.Shape, device), dk = Tensor.Empty(q.Shape, device), dv = Tensor.Empty(q.Shape, device);
            device.AttentionBackward(batchHeads, seq, dim, s, q.Buf, k.Buf, v.Buf, output.Buf, lse.Buf, g.Buf, dq.Buf, dk.Buf, dv.Buf);
            return new[] { dq, dk, dv };
        });
        return output;
    }

    /// <summary>torch.nn.functional.multi_head_attention_forward for batch-first (B, S, E) inputs, without masks
    /// or dropout: packed in-projection (3E, E) [+ bias], per-head fused attention with scale 1/√(E/H), output
    /// projection. query, key and value must have the same length (the fused kernel is self-attention shaped).</summary>
    public static Tensor MultiHeadAttention(Tensor query, Tensor key, Tensor value, int numHeads,
        Tensor inProjWeight, Tensor? inProjBias, Tensor outProjWeight, Tensor? outProjBias)
    {
        if (query.Rank != 3) throw new ArgumentException($"multi_head_attention: expected batch-first (B, S, E), got {ShapeUtil.Format(query.Shape)}");
        ShapeUtil.RequireSame(query.Shape, key.Shape, "multi_head_attention (query, key)");
        ShapeUtil.RequireSame(query.Shape, value.Shape, "multi_head_attention (query, value)");
        int batch = query.Shape[0], seq = query.Shape[1], embed = query.Shape[2];
        if (numHeads <= 0 || embed % numHeads != 0) throw new ArgumentException($"multi_head_attention: embed dim {embed} is not divisible by {numHeads} heads");
        int headDim = embed / numHeads;

        // Projections run on (B·S, E) rows: one GEMM each, and independent of how MatMul folds batch axes.
        Tensor Linear2d(Tensor x, Tensor w, Tensor? b) => Tensor.Linear(x.Reshape(batch * seq, embed), w, b);

        Tensor q, k, v;
        if (ReferenceEquals(query, key) && ReferenceEquals(key, value))
        {
            // Self-attention: one GEMM for all three projections, then (B, S, 3, H, Dh) → (3, B, H, S, Dh).
            var qkv = Linear2d(query, inProjWeight, inProjBias)
                .Reshape(batch, seq, 3, numHeads, headDim).Permute(2, 0, 3, 1, 4);
            (q, k, v) = (qkv.Select0(0), qkv.Select0(1), qkv.Select0(2));
        }
        else
        {
            Tensor Project(Tensor x, int part) => SplitHeads(Linear2d(x, inProjWeight.Narrow(0, part * embed, embed),
                inProjBias?.Narrow(0, part * embed, embed)));
            Tensor SplitHeads(Tensor x) => x.Reshape(batch, seq, numHeads, headDim).Permute(0, 2, 1, 3);
            (q, k, v) = (Project(query, 0), Project(key, 1), Project(value, 2));
        }

        var attended = ScaledDotProductAttention(q, k, v, 1f / MathF.Sqrt(headDim));   // (B, H, S, Dh)
        var merged = attended.Permute(0, 2, 1, 3);
        return Linear2d(merged, outProjWeight, outProjBias).Reshape(batch, seq, embed);
    }
}
