using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Perceptual;

/// <summary>torchvision.models.convnext_small in eval mode (stochastic depth is the identity there): a 4×4/4
/// patchify stem, four stages of 3, 3, 27, 3 <see cref="ConvNeXtBlock"/>s at 96, 192, 384, 768 channels with a
/// LayerNorm2d + 2×2/2 conv between stages, then average pool, LayerNorm2d and the linear classifier. State-dict keys
/// as torchvision (<c>features.0.0</c> … <c>features.7.2.block.5</c>, <c>classifier.0</c>, <c>classifier.2</c>), so
/// convnext_small-0c510722.pth (IMAGENET1K_V1) loads as it is. Parameters do not require gradients.</summary>
public sealed class ConvNeXt : ImageNetClassifier
{
    private static readonly (int Blocks, int Channels)[] SmallStages = { (3, 96), (3, 192), (27, 384), (3, 768) };

    private readonly List<Func<Tensor, Tensor>> _features = new();
    public LayerNorm2d Head { get; }
    public PretrainedLinear Fc { get; }

    public static ConvNeXt Small() => new(SmallStages);

    private ConvNeXt((int Blocks, int Channels)[] stages, int numClasses = 1000)
    {
        var features = Register("features", new IndexedLayers());
        var stem = features.Add(0, new IndexedLayers());
        var stemConv = stem.Add(0, new PretrainedConv2d(3, stages[0].Channels, 4, stride: 4, bias: true));
        var stemNorm = stem.Add(1, new LayerNorm2d(stages[0].Channels));
        _features.Add(x => stemNorm.Forward(stemConv.Forward(x)));
        for (int s = 0; s < stages.Length; s++)
        {
            var (blocks, channels) = stages[s];
            if (s > 0)
            {
                var downsample = features.Add(2 * s, new IndexedLayers());
                var norm = downsample.Add(0, new LayerNorm2d(stages[s - 1].Channels));
                var conv = downsample.Add(1, new PretrainedConv2d(stages[s - 1].Channels, channels, 2, stride: 2, bias: true));
                _features.Add(x => conv.Forward(norm.Forward(x)));
            }
            var stage = features.Add(2 * s + 1, new ModuleList<ConvNeXtBlock>());
            for (int b = 0; b < blocks; b++)
            {
                var block = new ConvNeXtBlock(channels);
                stage.Add(block);
                _features.Add(block.Forward);
            }
        }
        int last = stages[^1].Channels;
        var classifier = Register("classifier", new IndexedLayers());
        Head = classifier.Add(0, new LayerNorm2d(last));
        Fc = classifier.Add(2, new PretrainedLinear(last, numClasses));   // index 1 is the Flatten
        Eval();
        RequiresGrad_(false);
    }

    /// <summary>Logits (N, classes) and the output of <c>features</c> (N, 768, H/32, W/32) — the two nodes the
    /// reference's feature extractor returns.</summary>
    public override (Tensor Logits, Tensor Features) Forward(Tensor x)
    {
        foreach (var stage in _features) x = stage(x);
        var pooled = Head.Forward(F.GlobalAvgPool2d(x).Reshape(x.Size(0), x.Size(1), 1, 1));
        return (Fc.Forward(pooled.Reshape(x.Size(0), x.Size(1))), x);
    }
}

/// <summary>torchvision's CNBlock: depthwise 7×7 conv, then channels-last LayerNorm (eps 1e-6), Linear C → 4C,
/// exact GELU, Linear 4C → C, times the per-channel <c>layer_scale</c>, added to the input. Keys <c>layer_scale</c>
/// (C, 1, 1) and <c>block.0</c> (conv), <c>block.2</c> (norm), <c>block.3</c>, <c>block.5</c> (linears).</summary>
public sealed class ConvNeXtBlock : Module
{
    public Tensor LayerScale { get; }
    public PretrainedConv2d DepthwiseConv { get; }
    public LayerNorm Norm { get; }
    public PretrainedLinear Expand { get; }
    public PretrainedLinear Project { get; }

    public ConvNeXtBlock(int channels)
    {
        LayerScale = Parameter("layer_scale", Tensor.Zeros(channels, 1, 1));
        var block = Register("block", new IndexedLayers());
        DepthwiseConv = block.Add(0, new PretrainedConv2d(channels, channels, 7, padding: 3, bias: true, groups: channels));
        Norm = block.Add(2, new LayerNorm(channels, eps: 1e-6f));
        Expand = block.Add(3, new PretrainedLinear(channels, 4 * channels));
        Project = block.Add(5, new PretrainedLinear(4 * channels, channels));
    }

    public Tensor Forward(Tensor x)
    {
        var h = DepthwiseConv.Forward(x).Permute(0, 2, 3, 1);
        h = Project.Forward(Expand.Forward(Norm.Forward(h)).Gelu());
        return h.Permute(0, 3, 1, 2).Mul(LayerScale).Add(x);
    }
}

/// <summary>torchvision's LayerNorm2d: LayerNorm over the channels of an (N, C, H, W) map (eps 1e-6), keys
/// <c>weight</c> and <c>bias</c>.</summary>
public sealed class LayerNorm2d : Module
{
    public Tensor Weight { get; }
    public Tensor Bias { get; }

    public LayerNorm2d(int channels)
    {
        Weight = Parameter("weight", Tensor.Ones(channels));
        Bias = Parameter("bias", Tensor.Zeros(channels));
    }

    public Tensor Forward(Tensor x) => F.LayerNorm(x.Permute(0, 2, 3, 1), Weight, Bias, 1e-6f).Permute(0, 3, 1, 2);
}
