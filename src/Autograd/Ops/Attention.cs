using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Fused attention and torch's multi-head attention built on it.
public static partial class F
{
    /// <summary>dropout(softmax(q·kᵀ·scale))·v over the last two axes of (B, H, S, D) or (BH, S, D) tensors (torch
    /// F.scaled_dot_product_attention without mask; scale defaults to 1/√D). One fused kernel each way: the
    /// backward recomputes the probabilities from the saved per-row log-sum-exp. With <paramref name="dropoutP"/>
    /// &gt; 0 (applied whenever given, as torch) each probability is dropped with that probability and the rest
    /// scaled by 1/(1 − p); the mask is a hash of one seed drawn from <paramref name="generator"/>.</summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, float? scale = null, float dropoutP = 0f, Rng? generator = null)
    {
        if (q.Rank is not (3 or 4))
            throw new ArgumentException($"scaled_dot_product_attention: expected (B, H, S, D) or (BH, S, D), got {ShapeUtil.Format(q.Shape)}");
        ShapeUtil.RequireSame(q.Shape, k.Shape, "scaled_dot_product_attention (q, k; self-attention lengths)");
        ShapeUtil.RequireSame(q.Shape, v.Shape, "scaled_dot_product_attention (q, v)");
        if (!ReferenceEquals(q.Device, k.Device) || !ReferenceEquals(q.Device, v.Device))
            throw new ArgumentException("scaled_dot_product_attention: q, k, v live on different devices");

        var attention = new AttentionParams(scale ?? 1f / MathF.Sqrt(q.Shape[^1]), dropoutP, DrawDropoutSeed(dropoutP, generator), Autocast.DType);
        // Under autocast q, k, v (and what the backward keeps of them) are 16-bit copies; see Autocast.
        Tensor qKept = Autocast.Lower(q, attention.Precision), kKept = Autocast.Lower(k, attention.Precision),
            vKept = Autocast.Lower(v, attention.Precision);
        var (output, lse) = FusedAttention(qKept, kKept, vKept, attention);
        Tape.Record(output, "scaled_dot_product_attention", new[] { q, k, v }, [qKept, kKept, vKept, output, lse], g =>
        {
            Tensor dq = Tensor.Empty(q.Shape, g.Device), dk = Tensor.Empty(q.Shape, g.Device), dv = Tensor.Empty(q.Shape, g.Device);
            FusedAttentionBackward(qKept, kKept, vKept, output, lse, attention, g, dq, dk, dv);
            return new[] { dq, dk, dv };
        });
        return output;
    }

    /// <summary>Self-attention on the packed in-projection output qkv (B·S, 3E) → (B, H, S, Dh). One permute to
    /// (3, B, H, S, Dh) on the way in and one back for the gradient, instead of three slices whose backward would
    /// each zero-fill a full-size gradient.</summary>
    private static Tensor PackedSelfAttention(Tensor qkv, int batch, int seq, int heads, int headDim, float dropoutP, ulong seed)
    {
        Tensor packed;
        using (Tape.NoGrad()) packed = qkv.Reshape(batch, seq, 3, heads, headDim).Permute(2, 0, 3, 1, 4);
        var headShape = new[] { batch, heads, seq, headDim };
        long partSize = ShapeUtil.Numel(headShape);
        Tensor Part(Tensor t, int i) => new(t.Storage, t.Offset + i * partSize, headShape);
        var attention = new AttentionParams(1f / MathF.Sqrt(headDim), dropoutP, seed, Autocast.DType);
        var packedKept = Autocast.Lower(packed, attention.Precision);
        if (!ReferenceEquals(packedKept, packed)) TensorScope.Release(packed);   // the 16-bit copy is all that is read
        packed = packedKept;

        var (output, lse) = FusedAttention(Part(packed, 0), Part(packed, 1), Part(packed, 2), attention);
        Tape.Record(output, "packed_self_attention", new[] { qkv }, [packed, output, lse], g =>
        {
            var dPacked = Tensor.Empty(packed.Shape, g.Device);
            FusedAttentionBackward(Part(packed, 0), Part(packed, 1), Part(packed, 2), output, lse, attention, g,
                Part(dPacked, 0), Part(dPacked, 1), Part(dPacked, 2));
            return new[] { dPacked.Permute(1, 3, 0, 2, 4).Reshape(qkv.Shape) };
        });
        return output;
    }

    /// <summary>Scale, dropout and autocast type (null: float32) of one attention call, shared by its forward and backward.</summary>
    private readonly record struct AttentionParams(float Scale, float DropoutP, ulong Seed, DType? Precision);

    private static ulong DrawDropoutSeed(float dropoutP, Rng? generator)
    {
        if (dropoutP is < 0f or >= 1f) throw new ArgumentOutOfRangeException(nameof(dropoutP), dropoutP, "attention dropout probability must lie in [0, 1)");
        if (dropoutP == 0f) return 0;
        return (generator ?? throw new InvalidOperationException("attention dropout needs a random generator")).NextUInt64();
    }

    /// <summary>The forward kernel on same-shaped contiguous q, k, v (float32 or 16-bit): the float32 output and the
    /// per-row log-sum-exp.</summary>
    private static (Tensor Output, Tensor Lse) FusedAttention(Tensor q, Tensor k, Tensor v, AttentionParams a)
    {
        int batchHeads = (int)ShapeUtil.Numel(q.Shape[..^2]), seq = q.Shape[^2], dim = q.Shape[^1];
        var output = Tensor.Empty(q.Shape, q.Device);
        var lse = Tensor.Empty(new[] { batchHeads, seq }, q.Device);
        using var operands = new KernelOperands();
        q.Device.AttentionForward(batchHeads, seq, dim, a.Scale, a.DropoutP, a.Seed, operands.Of(q), operands.Of(k), operands.Of(v),
            output.Buf, lse.Buf);
        return (output, lse);
    }

    /// <summary>The backward kernel: overwrites dq, dk, dv (float32); dOutput is rounded to the call's autocast type.</summary>
    private static void FusedAttentionBackward(Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, AttentionParams a,
        Tensor dOutput, Tensor dq, Tensor dk, Tensor dv)
    {
        int batchHeads = (int)ShapeUtil.Numel(q.Shape[..^2]), seq = q.Shape[^2], dim = q.Shape[^1];
        using var operands = new KernelOperands();
        q.Device.AttentionBackward(batchHeads, seq, dim, a.Scale, a.DropoutP, a.Seed, operands.Of(q), operands.Of(k), operands.Of(v),
            output.Buf, lse.Buf, operands.Rounded(dOutput, a.Precision), dq.Buf, dk.Buf, dv.Buf);
    }

    /// <summary>torch.nn.functional.multi_head_attention_forward for batch-first (B, S, E) inputs, without masks:
    /// packed in-projection (3E, E) [+ bias], per-head fused attention with scale 1/√(E/H) and, in training,
    /// dropout <paramref name="dropoutP"/> on the attention weights (mask seeded from <paramref name="generator"/>),
    /// output projection. query, key and value must have the same length (the fused kernel is self-attention shaped).</summary>
    public static Tensor MultiHeadAttention(Tensor query, Tensor key, Tensor value, int numHeads,
        Tensor inProjWeight, Tensor? inProjBias, Tensor outProjWeight, Tensor? outProjBias,
        float dropoutP = 0f, bool training = true, Rng? generator = null)
    {
        if (query.Rank != 3) throw new ArgumentException($"multi_head_attention: expected batch-first (B, S, E), got {ShapeUtil.Format(query.Shape)}");
        ShapeUtil.RequireSame(query.Shape, key.Shape, "multi_head_attention (query, key)");
        ShapeUtil.RequireSame(query.Shape, value.Shape, "multi_head_attention (query, value)");
        int batch = query.Shape[0], seq = query.Shape[1], embed = query.Shape[2];
        if (numHeads <= 0 || embed % numHeads != 0) throw new ArgumentException($"multi_head_attention: embed dim {embed} is not divisible by {numHeads} heads");
        int headDim = embed / numHeads;
        if (!training) dropoutP = 0f;

        // Projections run on (B·S, E) rows: one GEMM each, and independent of how MatMul folds batch axes.
        Tensor Linear2d(Tensor x, Tensor w, Tensor? b) => Tensor.Linear(x.Reshape(batch * seq, embed), w, b);

        Tensor attended;   // (B, H, S, Dh)
        if (ReferenceEquals(query, key) && ReferenceEquals(key, value))
            attended = PackedSelfAttention(Linear2d(query, inProjWeight, inProjBias), batch, seq, numHeads, headDim,
                dropoutP, DrawDropoutSeed(dropoutP, generator));
        else
        {
            Tensor Project(Tensor x, int part) => Linear2d(x, inProjWeight.Narrow(0, part * embed, embed), inProjBias?.Narrow(0, part * embed, embed))
                .Reshape(batch, seq, numHeads, headDim).Permute(0, 2, 1, 3);
            attended = ScaledDotProductAttention(Project(query, 0), Project(key, 1), Project(value, 2), 1f / MathF.Sqrt(headDim),
                dropoutP, generator);
        }
        var merged = attended.Permute(0, 2, 1, 3);
        return Linear2d(merged, outProjWeight, outProjBias).Reshape(batch, seq, embed);
    }
}
