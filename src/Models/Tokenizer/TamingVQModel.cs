using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

/// <summary>
/// Settings of the original Taming VQGAN (model.vq_model with model_class taming). The reference fixes the
/// architecture (taming's ddconfig of the ImageNet f16 1024 model); here each ddconfig field may be overridden
/// under model.vq_model.ddconfig (ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels,
/// in_channels, out_ch), e.g. for small test models. codebook_size, token_size (the embedding dimension) and
/// commitment_cost are read from model.vq_model like the other tokenizers.
/// </summary>
public sealed record TamingConfig(
    int CodebookSize, int TokenSize, float CommitmentCost, int Ch, int[] ChMult, int NumResBlocks, int[] AttnResolutions,
    int Resolution, int ZChannels, int InChannels, int OutChannels)
{
    public const string ModelClass = "taming";

    /// <summary>The official model (taming-transformers vqgan_imagenet_f16_1024).</summary>
    public static readonly TamingConfig Official = new(1024, 256, 0.25f, 128, [1, 1, 2, 2, 4], 2, [16], 256, 256, 3, 3);

    public int DownsampleFactor => 1 << (ChMult.Length - 1);

}

/// <summary>
/// The original Taming VQGAN (reference: modeling/taming_vqgan.py OriginalVQModel): Taming encoder → 1×1
/// quant_conv → VQ (the reference's SimpleVectorizer, <see cref="VectorQuantizer"/>) → 1×1 post_quant_conv →
/// Taming decoder. Images in [0, 1] are mapped to [−1, 1] for the encoder and decoded images back to [0, 1].
/// State-dict keys are taming's (encoder.down.0.block.0.norm1.weight, quantize.embedding.weight, quant_conv.weight,
/// …), so the official checkpoint loads as is; its `loss.*` entries (discriminator, LPIPS) are dropped.
/// </summary>
public sealed class TamingVQModel : ImageTokenizer
{
    public TamingConfig Config { get; }
    public TamingEncoder Encoder { get; }
    public TamingDecoder Decoder { get; }
    public VectorQuantizer Quantize { get; }
    public Conv2d QuantConv { get; }
    public Conv2d PostQuantConv { get; }

    public TamingVQModel(TamingConfig config, int seed = 0)
    {
        Config = config;
        var rng = new Random(seed);
        Encoder = Register("encoder", new TamingEncoder(config, rng));
        Decoder = Register("decoder", new TamingDecoder(config, rng));
        Quantize = Register("quantize", new VectorQuantizer(config.CodebookSize, config.TokenSize, config.CommitmentCost, rng: rng));
        QuantConv = Register("quant_conv", new Conv2d(config.ZChannels, config.TokenSize, 1, rng: rng));
        PostQuantConv = Register("post_quant_conv", new Conv2d(config.TokenSize, config.ZChannels, 1, rng: rng));
    }

    public override int CodebookSize => Config.CodebookSize;

    public override int DownsampleFactor => Config.DownsampleFactor;

    public override Tensor LastLayer => Decoder.ConvOut.Weight;

    public override IReadOnlyList<string> ForeignCheckpointPrefixes => ["loss."];

    public override (Tensor Quantized, QuantizerResult Result) Encode(Tensor pixels) =>
        Quantize.Forward(QuantConv.Forward(Encoder.Forward(pixels.MulScalar(2f).AddScalar(-1f))));

    public override Tensor Decode(Tensor zQuantized) =>
        Decoder.Forward(PostQuantConv.Forward(zQuantized)).AddScalar(1f).MulScalar(0.5f);

    protected override Tensor CodebookEntries(Tensor indices) => Quantize.GetCodebookEntry(indices);
}
