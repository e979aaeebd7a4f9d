using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

/// <summary>Architecture settings of the conv tokenizer (config section model.vq_model).</summary>
public sealed record TokenizerConfig(
    string QuantizerType, int CodebookSize, int TokenSize, float CommitmentCost, float EntropyLossWeight,
    float EntropyLossTemperature, float EntropyGamma, bool UseL2Normalisation, int NumChannels, int HiddenChannels,
    int[] ChannelMult, int NumResolutions, int NumResBlocks, int NumResBlocksDecoder, bool SampleWithConv, string ModelClass)
{
}

public sealed class ConvEncoder : Module
{
    public Conv2d ConvIn { get; }
    public ModuleList<Stage> Down { get; }
    public ResidualStage Mid { get; }
    public GroupNorm NormOut { get; }
    public Conv2d ConvOut { get; }

    /// <summary>Runs each resolution stage and the middle stage as one checkpointed tape node (training.activation_checkpointing).</summary>
    public bool ActivationCheckpointing { get; set; }

    public ConvEncoder(TokenizerConfig c, Random rng)
    {
        ConvIn = Register("conv_in", Conv2d.SamePadded(c.NumChannels, c.HiddenChannels, 3, bias: false, rng: rng));
        var mult = new[] { 1 }.Concat(c.ChannelMult).ToArray();
        Down = Register("down", new ModuleList<Stage>());
        int outCh = c.HiddenChannels;
        for (int level = 0; level < c.NumResolutions; level++)
        {
            int inCh = c.HiddenChannels * mult[level];
            outCh = c.HiddenChannels * mult[level + 1];
            Down.Add(level < c.NumResolutions - 1
                ? new DownsamplingStage(inCh, outCh, c.NumResBlocks, c.SampleWithConv, rng)
                : new ResidualStage(inCh, outCh, c.NumResBlocks, rng));
        }
        Mid = Register("mid", new ResidualStage(outCh, outCh, c.NumResBlocks, rng));
        NormOut = Register("norm_out", new GroupNorm(32, outCh, ResidualBlock.NormEps));
        ConvOut = Register("conv_out", Conv2d.SamePadded(outCh, c.TokenSize, 1, rng: rng));
    }

    public Tensor Forward(Tensor pixels)
    {
        var h = TensorScope.Chain(pixels, Down.Append<Stage>(Mid).Select(s => (Func<Tensor, Tensor>)(x => s.Forward(x, ActivationCheckpointing))).Prepend(ConvIn.Forward));
        return ConvOut.Forward(NormOut.ForwardSilu(h));
    }
}

/// <summary>The decoder. <paramref name="legacy"/> selects ConvDecoderLegacy's key numbering (model_class maskgit):
/// the same computation with `up` stored in reverse order, and no num_res_blocks_decoder.</summary>
public sealed class ConvDecoder : Module
{
    public bool Legacy { get; }
    public Conv2d ConvIn { get; }
    public ResidualStage Mid { get; }
    public ModuleList<Stage> Up { get; }
    public GroupNorm NormOut { get; }
    public Conv2d ConvOut { get; }
    private readonly Stage[] _runOrder;

    /// <summary>Runs the middle stage and each resolution stage as one checkpointed tape node (training.activation_checkpointing).</summary>
    public bool ActivationCheckpointing { get; set; }

    public ConvDecoder(TokenizerConfig c, bool legacy, Random rng)
    {
        Legacy = legacy;
        int resBlocks = legacy ? c.NumResBlocks : c.NumResBlocksDecoder;
        int blockIn = c.HiddenChannels * c.ChannelMult[c.NumResolutions - 1];
        var mult = c.ChannelMult.Take(c.NumResolutions).Append(c.ChannelMult[c.NumResolutions - 1]).ToArray();
        ConvIn = Register("conv_in", Conv2d.SamePadded(c.TokenSize, blockIn, 3, rng: rng));
        Mid = Register("mid", new ResidualStage(blockIn, blockIn, resBlocks, rng));
        var stages = new List<Stage>();   // in run order: lowest resolution first
        int outCh = blockIn;
        for (int level = c.NumResolutions - 1; level >= 0; level--)
        {
            int inCh = c.HiddenChannels * mult[level + 1];
            outCh = c.HiddenChannels * mult[level];
            stages.Add(level > 0 ? new UpsamplingStage(inCh, outCh, resBlocks, rng) : new ResidualStage(inCh, outCh, resBlocks, rng));
        }
        _runOrder = stages.ToArray();
        Up = Register("up", new ModuleList<Stage>(legacy ? Enumerable.Reverse(stages) : stages));
        NormOut = Register("norm_out", new GroupNorm(32, outCh, ResidualBlock.NormEps));
        ConvOut = Register("conv_out", Conv2d.SamePadded(outCh, c.NumChannels, 3, rng: rng));
    }

    public Tensor Forward(Tensor zQuantized)
    {
        var h = TensorScope.Chain(zQuantized, _runOrder.Prepend<Stage>(Mid).Select(s => (Func<Tensor, Tensor>)(x => s.Forward(x, ActivationCheckpointing))).Prepend(ConvIn.Forward));
        return ConvOut.Forward(NormOut.ForwardSilu(h));
    }
}

/// <summary>
/// The MaskBit / VQGAN+ tokenizer (reference: modeling/conv_vqgan.py ConvVQModel): conv encoder → LFQ or VQ
/// quantizer → conv decoder. State-dict keys match the reference (encoder.*, decoder.*, quantize.*).
/// </summary>
public sealed class ConvVQModel : ImageTokenizer
{
    public TokenizerConfig Config { get; }
    public ConvEncoder Encoder { get; }
    public ConvDecoder Decoder { get; }
    public Module Quantize { get; }

    public ConvVQModel(TokenizerConfig config, bool? legacy = null, int seed = 0)
    {
        Config = config;
        var rng = new Random(seed);
        Encoder = Register("encoder", new ConvEncoder(config, rng));
        Decoder = Register("decoder", new ConvDecoder(config, legacy ?? config.ModelClass == "maskgit", rng));
        Quantize = Register<Module>("quantize", config.QuantizerType == "lookup-free"
            ? new LookupFreeQuantizer(config.TokenSize, config.CommitmentCost, config.EntropyLossWeight, config.EntropyLossTemperature, config.EntropyGamma)
            : new VectorQuantizer(config.CodebookSize, config.TokenSize, config.CommitmentCost, config.EntropyLossWeight,
                config.EntropyLossTemperature, config.EntropyGamma, config.UseL2Normalisation, rng));
    }

    /// <summary>training.activation_checkpointing: the encoder's and the decoder's stages each become one
    /// checkpointed tape node (their activations are recomputed in the backward).</summary>
    public bool ActivationCheckpointing
    {
        get => Encoder.ActivationCheckpointing;
        set => Encoder.ActivationCheckpointing = Decoder.ActivationCheckpointing = value;
    }

    public override int CodebookSize => Config.CodebookSize;

    public override int DownsampleFactor => 1 << (Config.NumResolutions - 1);

    public override Tensor LastLayer => Decoder.ConvOut.Weight;

    /// <summary>The reference's finetune_decoder (training.finetune_decoder): in training the encoder and quantizer
    /// run without gradients and the quantizer's losses are zero, so only the decoder learns and the tokens stay.</summary>
    public bool FinetuneDecoder { get; init; }

    public override (Tensor Quantized, QuantizerResult Result) Encode(Tensor pixels)
    {
        if (!FinetuneDecoder || !Training) return QuantizeLatents(Encoder.Forward(pixels));
        using var _ = Tape.NoGrad();
        var (quantized, result) = QuantizeLatents(Encoder.Forward(pixels));
        return (quantized, result with
        {
            QuantizerLoss = result.QuantizerLoss * 0f,
            CommitmentLoss = result.CommitmentLoss * 0f,
            EntropyLoss = result.EntropyLoss * 0f,
            CodebookLoss = result.CodebookLoss is { } codebook ? codebook * 0f : null,
        });
    }

    public (Tensor Quantized, QuantizerResult Result) QuantizeLatents(Tensor z) => Quantize switch
    {
        LookupFreeQuantizer lfq => lfq.Forward(z),
        VectorQuantizer vq => vq.Forward(z),
        _ => throw new InvalidOperationException("unknown quantizer"),
    };

    public override Tensor Decode(Tensor zQuantized) => Decoder.Forward(zQuantized);

    protected override Tensor CodebookEntries(Tensor indices) => Quantize switch
    {
        LookupFreeQuantizer lfq => lfq.GetCodebookEntry(indices),
        VectorQuantizer vq => vq.GetCodebookEntry(indices),
        _ => throw new InvalidOperationException("unknown quantizer"),
    };
}
