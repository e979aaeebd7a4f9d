namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.MultiheadAttention with batch_first=True, no masks, no dropout, need_weights=False.
/// Parameters as torch (state-dict keys in_proj_weight (3E, E), in_proj_bias (3E), out_proj.weight,
/// out_proj.bias) and torch's init: xavier_uniform_ in-projection, zero biases, out_proj weight U(±1/√E).</summary>
public sealed class MultiheadAttention : Module
{
    public int EmbedDim { get; }
    public int NumHeads { get; }
    public int HeadDim => EmbedDim / NumHeads;
    public Tensor InProjWeight { get; }
    public Tensor? InProjBias { get; }
    public Linear OutProj { get; }

    public MultiheadAttention(int embedDim, int numHeads, bool bias = true, Random? rng = null)
    {
        if (numHeads <= 0 || embedDim % numHeads != 0)
            throw new ArgumentException($"embed dim {embedDim} must be divisible by num heads {numHeads}");
        rng ??= Random.Shared;
        EmbedDim = embedDim;
        NumHeads = numHeads;
        // xavier_uniform_ on the packed (3E, E) weight: fan_in = E, fan_out = 3E.
        InProjWeight = Parameter("in_proj_weight", Init.Uniform(new[] { 3 * embedDim, embedDim }, MathF.Sqrt(6f / (4f * embedDim)), rng));
        if (bias) InProjBias = Parameter("in_proj_bias", Tensor.Zeros(3 * embedDim));
        OutProj = Register("out_proj", new Linear(embedDim, embedDim, bias, rng));
        OutProj.Bias?.Fill_(0f);
    }

    /// <summary>Attention output (B, S, E) for batch-first query, key, value (the same tensor for self-attention).</summary>
    public Tensor Forward(Tensor query, Tensor key, Tensor value) =>
        F.MultiHeadAttention(query, key, value, NumHeads, InProjWeight, InProjBias, OutProj.Weight, OutProj.Bias);

    /// <summary>Self-attention: Forward(x, x, x).</summary>
    public Tensor Forward(Tensor x) => Forward(x, x, x);
}
