using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Perceptual;

/// <summary>torchvision.models.resnet50 (v1.5: the stride sits on the 3×3 conv of a bottleneck), in eval mode.
/// State-dict keys as torchvision: <c>conv1</c>, <c>bn1</c>, <c>layer1.0.conv1</c> … <c>layer4.2.bn3</c>,
/// <c>layerN.0.downsample.0/1</c>, <c>fc</c>, so an ImageNet .pth loads with
/// <see cref="Interop.ModuleCheckpoint.LoadInto(Module, string, bool, IReadOnlyDictionary{string, string}?)"/>.
/// Parameters do not require gradients (the network is a fixed feature extractor); gradients still flow to
/// the input.</summary>
public sealed class ResNet50 : ImageNetClassifier
{
    private static readonly (int Blocks, int Width, int Stride)[] Stages = { (3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2) };

    public PretrainedConv2d Conv1 { get; }
    public BatchNorm2d Bn1 { get; }
    public IReadOnlyList<ModuleList<Bottleneck>> Layers { get; }
    public PretrainedLinear Fc { get; }

    public ResNet50(int numClasses = 1000)
    {
        Conv1 = Register("conv1", new PretrainedConv2d(3, 64, 7, stride: 2, padding: 3));
        Bn1 = Register("bn1", new BatchNorm2d(64));
        var layers = new List<ModuleList<Bottleneck>>();
        int inChannels = 64;
        for (int s = 0; s < Stages.Length; s++)
        {
            var (blocks, width, stride) = Stages[s];
            var layer = new ModuleList<Bottleneck>();
            for (int b = 0; b < blocks; b++)
            {
                layer.Add(new Bottleneck(inChannels, width, b == 0 ? stride : 1));
                inChannels = width * Bottleneck.Expansion;
            }
            layers.Add(Register($"layer{s + 1}", layer));
        }
        Layers = layers;
        Fc = Register("fc", new PretrainedLinear(inChannels, numClasses));
        Eval();
        RequiresGrad_(false);
    }

    /// <summary>Logits (N, classes) and the layer4 feature map (N, 2048, H/32, W/32) of an ImageNet-normalised
    /// batch.</summary>
    public override (Tensor Logits, Tensor Features) Forward(Tensor x)
    {
        x = Conv1.ForwardWithBatchNorm(x, Bn1).Relu();
        x = F.MaxPool2d(x, 3, 2, 1);
        foreach (var layer in Layers)
            foreach (var block in layer) x = block.Forward(x);
        var logits = Fc.Forward(F.GlobalAvgPool2d(x));
        return (logits, x);
    }
}

/// <summary>torchvision's Bottleneck: 1×1 → 3×3 (stride) → 1×1 (×4 channels), each with BatchNorm (folded into
/// the conv), ReLU after
/// the first two and after the residual sum; the shortcut is <c>downsample</c> (1×1 strided conv + BatchNorm)
/// where the shape changes.</summary>
public sealed class Bottleneck : Module
{
    public const int Expansion = 4;

    public PretrainedConv2d Conv1 { get; }
    public BatchNorm2d Bn1 { get; }
    public PretrainedConv2d Conv2 { get; }
    public BatchNorm2d Bn2 { get; }
    public PretrainedConv2d Conv3 { get; }
    public BatchNorm2d Bn3 { get; }
    public ConvBatchNorm? Downsample { get; }

    public Bottleneck(int inChannels, int width, int stride)
    {
        int outChannels = width * Expansion;
        Conv1 = Register("conv1", new PretrainedConv2d(inChannels, width, 1));
        Bn1 = Register("bn1", new BatchNorm2d(width));
        Conv2 = Register("conv2", new PretrainedConv2d(width, width, 3, stride: stride, padding: 1));
        Bn2 = Register("bn2", new BatchNorm2d(width));
        Conv3 = Register("conv3", new PretrainedConv2d(width, outChannels, 1));
        Bn3 = Register("bn3", new BatchNorm2d(outChannels));
        if (stride != 1 || inChannels != outChannels)
            Downsample = Register("downsample", new ConvBatchNorm(new PretrainedConv2d(inChannels, outChannels, 1, stride: stride),
                new BatchNorm2d(outChannels)));
    }

    public Tensor Forward(Tensor x)
    {
        var h = Conv1.ForwardWithBatchNorm(x, Bn1).Relu();
        h = Conv2.ForwardWithBatchNorm(h, Bn2).Relu();
        h = Conv3.ForwardWithBatchNorm(h, Bn3);
        var identity = Downsample?.Forward(x) ?? x;
        return h.Add(identity).Relu();
    }
}

/// <summary>nn.Sequential(conv, BatchNorm2d) with torch's index keys <c>0</c> and <c>1</c>.</summary>
public sealed class ConvBatchNorm : Module
{
    public PretrainedConv2d Conv { get; }
    public BatchNorm2d Bn { get; }

    public ConvBatchNorm(PretrainedConv2d conv, BatchNorm2d bn)
    {
        Conv = Register("0", conv);
        Bn = Register("1", bn);
    }

    public Tensor Forward(Tensor x) => Conv.ForwardWithBatchNorm(x, Bn);
}
