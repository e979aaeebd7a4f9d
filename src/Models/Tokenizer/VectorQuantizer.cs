using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

/// <summary>
/// The lookup (VQ) quantizer, the reference's SimpleVectorizer (modeling/quantizer/quantizer.py): nearest codebook
/// entry by d = ‖z‖² + ‖e‖² − 2·z·e (first index on ties), optional l2 normalisation of latents and codebook,
/// commitment and codebook losses, optional entropy term on −d, straight-through gradient.
/// </summary>
public sealed class VectorQuantizer : Module
{
    public Embedding Embedding { get; }
    public int CodebookSize { get; }
    public int TokenSize { get; }
    public float CommitmentCost { get; }
    public float EntropyLossWeight { get; }
    public float EntropyLossTemperature { get; }
    public float EntropyGamma { get; }
    public bool UseL2Normalisation { get; }

    public VectorQuantizer(int codebookSize = 1024, int tokenSize = 256, float commitmentCost = 0.25f,
        float entropyLossWeight = 0f, float entropyLossTemperature = 0.01f, float entropyGamma = 1f,
        bool useL2Normalisation = false, Random? rng = null)
    {
        CodebookSize = codebookSize; TokenSize = tokenSize; CommitmentCost = commitmentCost;
        EntropyLossWeight = entropyLossWeight; EntropyLossTemperature = entropyLossTemperature; EntropyGamma = entropyGamma;
        UseL2Normalisation = useL2Normalisation;
        Embedding = Register("embedding", new Embedding(codebookSize, tokenSize, rng));
        Init.Uniform_(Embedding.Weight, 1f / codebookSize, rng ?? Random.Shared);
    }

    public (Tensor Quantized, QuantizerResult Result) Forward(Tensor zIn)
    {
        if (zIn.Rank != 4 || zIn.Shape[1] != TokenSize)
            throw new ArgumentException($"VQ with token size {TokenSize} expects (B, {TokenSize}, H, W) latents, got {ShapeUtil.Format(zIn.Shape)}");
        int b = zIn.Shape[0], h = zIn.Shape[2], w = zIn.Shape[3];
        var z = zIn.Permute(0, 2, 3, 1);
        Tensor embedding = Embedding.Weight;
        if (UseL2Normalisation) { z = F.Normalize(z, -1); embedding = F.Normalize(embedding, -1); }
        var flat = z.Reshape(-1, TokenSize);
        var d = flat.Square().Sum(1, keepDim: true)
            .Add(embedding.Square().Sum(1))
            .Sub(Tensor.MatMul(flat, embedding, transB: true).MulScalar(2f));
        var indices = d.ArgMinLastAxis();
        var zq = GetCodebookEntry(indices).Reshape(z.Shape);

        var commitment = zq.Detach().Sub(z).Square().Mean().MulScalar(CommitmentCost);
        var codebookLoss = zq.Sub(z.Detach()).Square().Mean();
        var zero = Tensor.Scalar(0f, z.Device);
        Tensor entropyLoss = zero, perSample = zero, avg = zero;
        if (EntropyLossWeight != 0f && Training)
        {
            (perSample, avg) = F.EntropyLoss(d.Neg(), EntropyLossTemperature, EntropyGamma);
            entropyLoss = perSample.Sub(avg).MulScalar(EntropyLossWeight);
        }
        var loss = commitment.Add(codebookLoss).Add(entropyLoss);
        var quantized = z.StraightThrough(zq).Permute(0, 3, 1, 2);
        return (quantized, new QuantizerResult(loss, commitment, entropyLoss, perSample, avg, indices.Reshape(b, h, w), codebookLoss));
    }

    /// <summary>Codebook vectors (normalised when the quantizer normalises) for Int32 indices of any shape.</summary>
    public Tensor GetCodebookEntry(Tensor indices)
    {
        var e = Embedding.Forward(indices);
        return UseL2Normalisation ? F.Normalize(e, -1) : e;
    }
}
