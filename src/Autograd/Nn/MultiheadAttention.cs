namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.MultiheadAttention with batch_first=True, no masks, need_weights=False.
/// Parameters as torch (state-dict keys in_proj_weight (3E, E), in_proj_bias (3E), out_proj.weight,
/// out_proj.bias) and torch's init: xavier_uniform_ in-projection, zero biases, out_proj weight U(±1/√E).
/// In train mode <see cref="Dropout"/> drops attention weights, one mask seed per forward drawn from
/// <see cref="Generator"/>.</summary>
public sealed class MultiheadAttention : Module
{
    public int EmbedDim { get; }
    public int NumHeads { get; }
    public int HeadDim => EmbedDim / NumHeads;
    /// <summary>Dropout probability on the attention weights (train mode only).</summary>
    public float Dropout { get; }
    /// <summary>Supplies the dropout mask seeds (needed in train mode with dropout &gt; 0).</summary>
    public Rng? Generator { get; set; }
    public Tensor InProjWeight { get; }
    public Tensor? InProjBias { get; }
    public Linear OutProj { get; }

    public MultiheadAttention(int embedDim, int numHeads, float dropout = 0f, bool bias = true, Random? rng = null)
    {
        if (numHeads <= 0 || embedDim % numHeads != 0)
            throw new ArgumentException($"embed dim {embedDim} must be divisible by num heads {numHeads}");
        Dropout = dropout is >= 0f and < 1f ? dropout : throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "dropout probability must lie in [0, 1)");
        rng ??= Random.Shared;
        EmbedDim = embedDim;
        NumHeads = numHeads;
        // xavier_uniform_ on the packed (3E, E) weight: fan_in = E, fan_out = 3E.
        InProjWeight = WeightParameter("in_proj_weight", Init.Uniform(new[] { 3 * embedDim, embedDim }, MathF.Sqrt(6f / (4f * embedDim)), rng));
        if (bias) InProjBias = Parameter("in_proj_bias", Tensor.Zeros(3 * embedDim));
        OutProj = Register("out_proj", new Linear(embedDim, embedDim, bias, rng));
        OutProj.Bias?.Fill_(0f);
    }

    /// <summary>Attention output (B, S, E) for batch-first query, key, value (the same tensor for self-attention).</summary>
    public Tensor Forward(Tensor query, Tensor key, Tensor value) =>
        F.MultiHeadAttention(query, key, value, NumHeads, InProjWeight, InProjBias, OutProj.Weight, OutProj.Bias,
            Dropout, Training, Generator);

    /// <summary>Self-attention: Forward(x, x, x).</summary>
    public Tensor Forward(Tensor x) => Forward(x, x, x);
}
