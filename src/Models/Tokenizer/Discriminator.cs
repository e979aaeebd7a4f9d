using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

/// <summary>Settings of the GAN discriminator (config section model.discriminator). name selects the network as
/// in the reference: "VQGAN+Discriminator" (<see cref="NLayerDiscriminatorV2"/>) or "Original" (Taming's
/// BatchNorm PatchGAN, <see cref="PatchGanDiscriminator"/>).</summary>
public sealed record DiscriminatorConfig(string Name, int NumChannels, int HiddenChannels, int NumStages, bool BlurResample, int BlurKernelSize)
{
    public const string VqganPlusName = "VQGAN+Discriminator";
    public const string PatchGanName = "Original";

}

/// <summary>A GAN discriminator: images (B, C, H, W) → patch logits (B, 1, h, w).</summary>
public abstract class GanDiscriminator : Module
{
    public abstract Tensor Forward(Tensor images);

    /// <summary>The network <paramref name="config"/> names, randomly initialised from <paramref name="seed"/>.</summary>
    public static GanDiscriminator FromConfig(DiscriminatorConfig config, int seed = 0) => config.Name == DiscriminatorConfig.PatchGanName
        ? new PatchGanDiscriminator(config, seed)
        : new NLayerDiscriminatorV2(config, seed);
}

/// <summary>Stride-2 anti-aliased downsampling (reference BlurBlock): a depthwise conv with the normalised binomial
/// kernel, SAME-padded. The kernel is a state-dict buffer (`kernel`, shape (1, 1, k, k)).</summary>
public sealed class BlurBlock : Module
{
    public Tensor Kernel { get; }

    public BlurBlock(int kernelSize) => Kernel = Buffer("kernel", F.BlurKernel(F.BinomialTaps(kernelSize)));

    public Tensor Forward(Tensor x) => F.Blur(x, Kernel);
}

/// <summary>One discriminator stage, keyed as the reference's Sequential: `0` 3×3 SAME conv, `1` blur (or a
/// parameterless 2×2 average pool), `2` GroupNorm(32, eps 1e-5), then LeakyReLU(0.1).</summary>
public sealed class DiscriminatorStage : Module
{
    public Conv2d Conv { get; }
    public BlurBlock? Blur { get; }
    public GroupNorm Norm { get; }

    public DiscriminatorStage(int inChannels, int outChannels, bool blurResample, int blurKernelSize, Random rng)
    {
        Conv = Register("0", Conv2d.SamePadded(inChannels, outChannels, 3, rng: rng));
        if (blurResample) Blur = Register("1", new BlurBlock(blurKernelSize));
        Norm = Register("2", new GroupNorm(32, outChannels, NLayerDiscriminatorV2.NormEps));
    }

    public Tensor Forward(Tensor x)
    {
        var h = Conv.Forward(x);
        h = Blur != null ? Blur.Forward(h) : F.AvgPool2d2x2(h);
        return Norm.Forward(h).LeakyRelu(NLayerDiscriminatorV2.NegativeSlope);
    }
}

/// <summary>`block_in`: `0` 5×5 SAME conv, then LeakyReLU(0.1).</summary>
public sealed class DiscriminatorStem : Module
{
    public Conv2d Conv { get; }

    public DiscriminatorStem(int inChannels, int outChannels, Random rng) =>
        Conv = Register("0", Conv2d.SamePadded(inChannels, outChannels, 5, rng: rng));

    public Tensor Forward(Tensor x) => Conv.Forward(x).LeakyRelu(NLayerDiscriminatorV2.NegativeSlope);
}

/// <summary>`to_logits`: `0` 1×1 conv, LeakyReLU(0.1), `2` 5×5 SAME conv to one channel.</summary>
public sealed class DiscriminatorHead : Module
{
    public Conv2d Hidden { get; }
    public Conv2d Out { get; }

    public DiscriminatorHead(int channels, Random rng)
    {
        Hidden = Register("0", Conv2d.SamePadded(channels, channels, 1, rng: rng));
        Out = Register("2", Conv2d.SamePadded(channels, 1, 5, rng: rng));
    }

    public Tensor Forward(Tensor x) => Out.Forward(Hidden.Forward(x).LeakyRelu(NLayerDiscriminatorV2.NegativeSlope));
}

/// <summary>
/// The VQGAN+ patch discriminator (reference NLayerDiscriminatorv2, golden convention 14): a 5×5 stem, stages that
/// halve the resolution with channels hidden·(1, 2, 4, …), an adaptive max-pool to 16×16 (which repeats values when
/// the map is smaller) and a conv head. Logits are always (B, 1, 16, 16) whatever the image size.
/// </summary>
public sealed class NLayerDiscriminatorV2 : GanDiscriminator
{
    public const float NegativeSlope = 0.1f;
    /// <summary>torch.nn.GroupNorm's default; the encoder/decoder use 1e-6 instead.</summary>
    public const float NormEps = 1e-5f;
    public const int LogitsSize = 16;

    public DiscriminatorConfig Config { get; }
    public DiscriminatorStem BlockIn { get; }
    public ModuleList<DiscriminatorStage> Blocks { get; }
    public DiscriminatorHead ToLogits { get; }

    public NLayerDiscriminatorV2(DiscriminatorConfig config, int seed = 0)
    {
        Config = config;
        var rng = new Random(seed);
        BlockIn = Register("block_in", new DiscriminatorStem(config.NumChannels, config.HiddenChannels, rng));
        Blocks = Register("blocks", new ModuleList<DiscriminatorStage>());
        int channels = config.HiddenChannels;
        for (int stage = 0; stage < config.NumStages; stage++)
        {
            int outChannels = config.HiddenChannels << stage;
            Blocks.Add(new DiscriminatorStage(channels, outChannels, config.BlurResample, config.BlurKernelSize, rng));
            channels = outChannels;
        }
        ToLogits = Register("to_logits", new DiscriminatorHead(channels, rng));
    }

    /// <summary>The stem, stages and head run chained (<see cref="TensorScope.Chain"/>): what their backward does not
    /// read is released as each returns, the rest once its backward has run, instead of at the end of the training
    /// step (a tokenizer step runs three discriminator forwards at full resolution).</summary>
    public override Tensor Forward(Tensor images) => TensorScope.Chain(images,
        [BlockIn.Forward, .. Blocks.Select(stage => (Func<Tensor, Tensor>)stage.Forward),
            h => ToLogits.Forward(F.AdaptiveMaxPool2d(h, LogitsSize, LogitsSize))]);
}
