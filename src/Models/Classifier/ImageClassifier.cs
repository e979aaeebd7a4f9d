using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Classifier;

/// <summary>model.classifier.*: a small CNN scoring samples of a labelled data set (Fashion-MNIST by default).
/// <paramref name="Channels"/> lists the width of each stage (3×3 conv, ReLU, 2×2 max pool); then a linear layer to
/// <paramref name="FeatureDim"/> features (ReLU; the features the Fréchet distance is measured in) and a linear head
/// to <paramref name="NumClasses"/> logits.</summary>
public sealed record ClassifierConfig(int NumChannels, IReadOnlyList<int> Channels, int FeatureDim, int NumClasses, int Resolution)
{
    /// <summary>The shipped Fashion-MNIST classifier's shape: gray 32×32 (28×28 padded), three stages.</summary>
    public static ClassifierConfig FashionMnist { get; } = new(1, [16, 32, 64], 128, 10, 32);

    /// <summary>Side length after the stages' poolings.</summary>
    public int FinalSize => Resolution >> Channels.Count;
}

/// <summary>
/// The classifier of <see cref="ClassifierConfig"/>: images (B, C, H, W) in [0, 1] in, logits (B, classes) out.
/// RGB input to a gray classifier is averaged over its channels (the data sets here replicate gray to RGB), so
/// generated samples and real images go in as the tokenizer sees them.
/// </summary>
public sealed class ImageClassifier : Module
{
    public ClassifierConfig Config { get; }
    public ModuleList<Conv2d> Stages { get; }
    public Linear Features { get; }
    public Linear Head { get; }

    public ImageClassifier(ClassifierConfig config, int seed = 0)
    {
        if (config.FinalSize < 1)
            throw new ArgumentException($"classifier: {config.Channels.Count} poolings do not fit a {config.Resolution}-pixel image");
        Config = config;
        var rng = new Random(seed);
        var stages = new List<Conv2d>();
        int inChannels = config.NumChannels;
        foreach (int width in config.Channels)
        {
            stages.Add(new Conv2d(inChannels, width, 3, padding: 1, rng: rng));
            inChannels = width;
        }
        Stages = Register("stages", new ModuleList<Conv2d>(stages));
        Features = Register("features", new Linear(inChannels * config.FinalSize * config.FinalSize, config.FeatureDim, rng: rng));
        Head = Register("head", new Linear(config.FeatureDim, config.NumClasses, rng: rng));
    }

    /// <summary>The penultimate features (B, FeatureDim), after their ReLU.</summary>
    public Tensor PenultimateFeatures(Tensor images)
    {
        var x = AsInput(images);
        foreach (var conv in Stages) x = F.MaxPool2d(conv.Forward(x).Relu(), 2);
        return Features.Forward(x.Reshape(x.Shape[0], -1)).Relu();
    }

    public Tensor Forward(Tensor images) => Head.Forward(PenultimateFeatures(images));

    /// <summary>Logits and features of one batch at once (evaluation).</summary>
    public (Tensor Logits, Tensor Features) ForwardWithFeatures(Tensor images)
    {
        var features = PenultimateFeatures(images);
        return (Head.Forward(features), features);
    }

    private Tensor AsInput(Tensor images)
    {
        if (images.Rank != 4 || images.Shape[2] != Config.Resolution || images.Shape[3] != Config.Resolution)
            throw new ArgumentException($"classifier: expected images (B, C, {Config.Resolution}, {Config.Resolution}), got {ShapeUtil.Format(images.Shape)}");
        int channels = images.Shape[1];
        if (channels != Config.NumChannels && !(Config.NumChannels == 1 && channels == 3))
            throw new ArgumentException($"classifier: expected {Config.NumChannels} channel(s), got images {ShapeUtil.Format(images.Shape)}");
        var x = channels == Config.NumChannels ? images : images.Mean(1, keepDim: true);
        return x.MulScalar(2f).AddScalar(-1f);   // [0, 1] → [-1, 1]
    }
}
