using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

/// <summary>
/// What the commands and Stage II need from a tokenizer, whichever family it is (<see cref="ConvVQModel"/> for
/// model_class vqgan+ / maskgit, <see cref="TamingVQModel"/> for taming): images (B, C, H, W) in [0, 1] → token
/// indices on a square grid, tokens → images, and the full reconstruction forward.
/// </summary>
public abstract class ImageTokenizer : Module
{
    /// <summary>Number of distinct token values.</summary>
    public abstract int CodebookSize { get; }

    /// <summary>Image side ÷ token-grid side (16 for the official models).</summary>
    public abstract int DownsampleFactor { get; }

    /// <summary>The decoder's last conv weight (the adaptive GAN weight differentiates w.r.t. it; its device is the model's).</summary>
    public abstract Tensor LastLayer { get; }

    /// <summary>Key prefixes of official weight files that belong to something else (e.g. the training loss) and
    /// are dropped before a strict load.</summary>
    public virtual IReadOnlyList<string> ForeignCheckpointPrefixes => [];

    /// <summary>Quantized latents and the quantizer's result (indices (B, h, w) in MinEncodingIndices).</summary>
    public abstract (Tensor Quantized, QuantizerResult Result) Encode(Tensor pixels);

    /// <summary>Quantized latents → images.</summary>
    public abstract Tensor Decode(Tensor zQuantized);

    /// <summary>Codebook vectors (…, token size) of Int32 indices of any shape.</summary>
    protected abstract Tensor CodebookEntries(Tensor indices);

    /// <summary>Decodes (B, h·w) Int32 tokens (row-major over a square grid, as the generator emits them).</summary>
    public Tensor DecodeTokens(Tensor tokens)
    {
        if (tokens.Rank != 2) throw new ArgumentException($"decode_tokens expects (B, h·w) tokens, got {ShapeUtil.Format(tokens.Shape)}");
        int n = tokens.Shape[1], side = (int)Math.Sqrt(n);
        if (side * side != n) throw new ArgumentException($"{n} tokens per image do not form a square grid");
        return Decode(CodebookEntries(tokens).Reshape(tokens.Shape[0], side, side, -1).Permute(0, 3, 1, 2));
    }

    public (Tensor Decoded, QuantizerResult Result) Forward(Tensor pixels)
    {
        var (zq, result) = Encode(pixels);
        return (Decode(zq), result);
    }

}
