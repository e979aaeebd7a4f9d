using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Perceptual;

/// <summary>The reference's LPIPS (modeling/modules/lpips.py, VGG16 variant), in eval mode: the scaling layer
/// (<c>scaling_layer.shift</c> / <c>scale</c>), VGG16 features cut after relu1_2 … relu5_3 (<c>net.slice1</c> …
/// <c>net.slice5</c>, keyed by the torchvision feature index) and five 1×1 heads without bias
/// (<c>lin0.model.1.weight</c> …; a dropout sits at index 0). Weights come from a checkpoint: the VGG16 ImageNet
/// features plus the heads of the reference's <c>pretrained/vgg_lpips.pth</c> (LPIPS v0.1 <c>vgg.pth</c>).
/// As the reference's perceptual loss (losses.perceptual_loss: lpips) the training loss averages the distances.</summary>
public sealed class Lpips : Module, IPerceptualLoss
{
    private static readonly int[] Channels = { 64, 128, 256, 512, 512 };

    public ScalingLayer Scaling { get; }
    public Vgg16Features Net { get; }
    public IReadOnlyList<LinHead> Lins { get; }

    public Lpips()
    {
        Scaling = Register("scaling_layer", new ScalingLayer());
        Net = Register("net", new Vgg16Features());
        Lins = Channels.Select((c, i) => Register($"lin{i}", new LinHead(c))).ToList();
        Eval();
        RequiresGrad_(false);
    }

    /// <summary>The LPIPS distance (N, 1, 1, 1) of two batches (N, 3, H, W) in [0, 1]: per layer, channel-unit-
    /// normalised features, squared difference, the 1×1 head, spatial mean; summed over the five layers.</summary>
    public Tensor Forward(Tensor input, Tensor target)
    {
        var featuresIn = Net.Forward(Scaling.Forward(input));
        var featuresTarget = Net.Forward(Scaling.Forward(target));
        Tensor? value = null;
        for (int k = 0; k < Channels.Length; k++)
        {
            var diff = NormalizeChannels(featuresIn[k]).Sub(NormalizeChannels(featuresTarget[k])).Square();
            var layer = F.Conv2d(diff, Lins[k].Weight).Mean(new[] { 2, 3 }, keepDim: true);
            value = value == null ? layer : value.Add(layer);
        }
        return value!;
    }

    /// <summary>x / (‖x‖ over channels + 1e-10).</summary>
    private static Tensor NormalizeChannels(Tensor x) => x.Div(x.Square().Sum(1, keepDim: true).Sqrt().AddScalar(1e-10f));
}

/// <summary>LPIPS input scaling: <c>(x·2 − 1 − shift) / scale</c> with per-channel buffers.</summary>
public sealed class ScalingLayer : Module
{
    public Tensor Shift { get; }
    public Tensor Scale { get; }

    public ScalingLayer()
    {
        Shift = Buffer("shift", Tensor.FromArray(new[] { -0.030f, -0.088f, -0.188f }, 1, 3, 1, 1));
        Scale = Buffer("scale", Tensor.FromArray(new[] { 0.458f, 0.448f, 0.450f }, 1, 3, 1, 1));
    }

    public Tensor Forward(Tensor x) => x.MulScalar(2f).AddScalar(-1f).Sub(Shift).Div(Scale);
}

/// <summary>The five LPIPS heads alone (<c>lin0.model.1.weight</c> …), the layout of LPIPS's <c>vgg.pth</c>: loads
/// that file into the heads of an <see cref="Lpips"/>.</summary>
public sealed class LpipsHeads : Module
{
    public LpipsHeads(IReadOnlyList<LinHead> heads)
    {
        for (int i = 0; i < heads.Count; i++) Register($"lin{i}", heads[i]);
    }
}

/// <summary>NetLinLayer: <c>model.1</c> is a 1×1 conv C → 1 without bias (<c>model.0</c> is a parameterless dropout).</summary>
public sealed class LinHead : Module
{
    public Tensor Weight => Conv.Weight;
    private PretrainedConv2d Conv { get; }

    public LinHead(int channels)
    {
        var model = Register("model", new IndexedLayers());
        Conv = model.Add(1, new PretrainedConv2d(channels, 1, 1));
    }
}

/// <summary>torchvision VGG16 <c>features[0:30]</c> split into the five LPIPS slices; each slice keeps the
/// torchvision index of its convs (<c>slice2.5.weight</c>), pools and ReLUs have no parameters.</summary>
public sealed class Vgg16Features : Module
{
    // Convs per slice; every slice after the first starts with a 2×2 max pool.
    private static readonly (int Convs, int Channels)[] Slices = { (2, 64), (2, 128), (3, 256), (3, 512), (3, 512) };

    private readonly List<List<PretrainedConv2d>> _slices = new();

    public Vgg16Features()
    {
        int index = 0, inChannels = 3;
        for (int s = 0; s < Slices.Length; s++)
        {
            var slice = Register($"slice{s + 1}", new IndexedLayers());
            var convs = new List<PretrainedConv2d>();
            if (s > 0) index++;                       // the max pool
            for (int k = 0; k < Slices[s].Convs; k++)
            {
                convs.Add(slice.Add(index, new PretrainedConv2d(inChannels, Slices[s].Channels, 3, padding: 1, bias: true)));
                inChannels = Slices[s].Channels;
                index += 2;                           // conv, ReLU
            }
            _slices.Add(convs);
        }
    }

    /// <summary>relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.</summary>
    public Tensor[] Forward(Tensor x)
    {
        var outputs = new Tensor[_slices.Count];
        for (int s = 0; s < _slices.Count; s++)
        {
            if (s > 0) x = F.MaxPool2d(x, 2, 2);
            foreach (var conv in _slices[s]) x = conv.Forward(x).Relu();
            outputs[s] = x;
        }
        return outputs;
    }
}

/// <summary>An nn.Sequential whose parameterless layers are not modules here: children are registered under
/// their torch index only.</summary>
public sealed class IndexedLayers : Module
{
    public T Add<T>(int index, T module) where T : Module => Register(index.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
}
