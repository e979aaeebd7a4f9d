using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

/// <summary>
/// Taming's PatchGAN discriminator (pix2pix NLayerDiscriminator; the reference's OriginalNLayerDiscriminator,
/// model.discriminator.name "Original"): 4×4 convs, padding 1 — a stride-2 conv to hidden channels, num_stages − 1
/// further stride-2 convs doubling the channels (at most ×8), a stride-1 conv, each of those followed by BatchNorm
/// (their convs without bias), LeakyReLU(0.2) after every conv but the last, which gives one logit per patch.
/// The layers sit in the Sequential `main` under torch's indices (the parameterless LeakyReLUs take an index each):
/// main.0 conv, main.2 conv, main.3 BatchNorm, …
/// <para>Initialisation follows taming's weights_init: conv weights N(0, 0.02) (conv biases keep torch's
/// default), BatchNorm weights N(1, 0.02) and biases 0. (The MaskBit reference's init leaves BatchNorm at 1 and 0.)</para>
/// <para>BatchNorm runs on batch statistics in train mode, so — as in torch — every train-mode forward (real
/// images, reconstructions) also updates the running statistics.</para>
/// </summary>
public sealed class PatchGanDiscriminator : GanDiscriminator
{
    public const float NegativeSlope = 0.2f;
    private const int KernelSize = 4;
    private const float InitStd = 0.02f;

    public DiscriminatorConfig Config { get; }
    public PatchGanLayers Main { get; }

    public PatchGanDiscriminator(DiscriminatorConfig config, int seed = 0)
    {
        Config = config;
        var rng = new Random(seed);
        Main = Register("main", new PatchGanLayers());
        int hidden = config.HiddenChannels, multiplier = 1;
        Main.Add(Conv(config.NumChannels, hidden, stride: 2, bias: true, rng), norm: null, activation: true);
        for (int stage = 1; stage <= config.NumStages; stage++)
        {
            int previous = multiplier;
            multiplier = Math.Min(1 << stage, 8);
            // The last of these keeps the resolution (stride 1).
            int stride = stage < config.NumStages ? 2 : 1;
            Main.Add(Conv(hidden * previous, hidden * multiplier, stride, bias: false, rng), Norm(hidden * multiplier, rng), activation: true);
        }
        Main.Add(Conv(hidden * multiplier, 1, stride: 1, bias: true, rng), norm: null, activation: false);
    }

    public override Tensor Forward(Tensor images) => Main.Forward(images);

    private static Conv2d Conv(int inChannels, int outChannels, int stride, bool bias, Random rng)
    {
        var conv = new Conv2d(inChannels, outChannels, KernelSize, stride, bias, padding: 1, rng: rng);
        Init.Normal_(conv.Weight, InitStd, rng);
        return conv;
    }

    private static BatchNorm2d Norm(int channels, Random rng)
    {
        var norm = new BatchNorm2d(channels);
        norm.Weight.CopyFrom_(Init.Normal(norm.Weight.Shape, InitStd, rng).AddScalar(1f));
        return norm;
    }
}

/// <summary>The PatchGAN's nn.Sequential: (conv, optional BatchNorm, optional LeakyReLU) triples, keyed by the
/// position each layer would have in torch's flat list.</summary>
public sealed class PatchGanLayers : Module
{
    private readonly List<(Conv2d Conv, BatchNorm2d? Norm, bool Activation)> _layers = [];
    private int _nextIndex;

    public void Add(Conv2d conv, BatchNorm2d? norm, bool activation)
    {
        Register((_nextIndex++).ToString(), conv);
        if (norm != null) Register((_nextIndex++).ToString(), norm);
        if (activation) _nextIndex++;
        _layers.Add((conv, norm, activation));
    }

    public Tensor Forward(Tensor x)
    {
        foreach (var (conv, norm, activation) in _layers)
        {
            x = conv.Forward(x);
            if (norm != null) x = norm.Forward(x);
            if (activation) x = x.LeakyRelu(PatchGanDiscriminator.NegativeSlope);
        }
        return x;
    }
}
