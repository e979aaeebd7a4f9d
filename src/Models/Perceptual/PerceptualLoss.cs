using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Perceptual;

/// <summary>The reference's PerceptualLoss("resnet50"): both images (N, 3, H, W) in [0, 1] are resized to 224×224
/// (antialiased bilinear, aspect ratio not kept), ImageNet-normalised and run through a ResNet-50; the loss is the
/// MSE of the logits, or with <c>onLogits: false</c> the MSE of the layer4 features plus the MSE of the logits.
/// State-dict keys: <c>mean</c>, <c>std</c> (buffers) and <c>model.*</c> (the torchvision keys).</summary>
public sealed class PerceptualLoss : Module, IPerceptualLoss
{
    public const int InputSize = 224;

    public ResNet50 Model { get; }
    public bool OnLogits { get; }
    public Tensor ImageMean { get; }
    public Tensor ImageStd { get; }

    public PerceptualLoss(ResNet50 model, bool onLogits = true)
    {
        ImageMean = Buffer("mean", Tensor.FromArray(new[] { 0.485f, 0.456f, 0.406f }, 1, 3, 1, 1));
        ImageStd = Buffer("std", Tensor.FromArray(new[] { 0.229f, 0.224f, 0.225f }, 1, 3, 1, 1));
        Model = Register("model", model);
        OnLogits = onLogits;
    }

    /// <summary>A perceptual loss over a torchvision ResNet-50 checkpoint (e.g. resnet50-0676ba61.pth,
    /// IMAGENET1K_V1, the weights the reference uses), loaded strictly.</summary>
    public static PerceptualLoss FromResNet50Checkpoint(string path, bool onLogits = true)
    {
        var model = new ResNet50();
        ModuleCheckpoint.LoadInto(model, path);
        return new PerceptualLoss(model, onLogits);
    }

    public Tensor Forward(Tensor input, Tensor target)
    {
        var (logitsIn, featuresIn) = Model.Forward(Prepare(input));
        var (logitsTarget, featuresTarget) = Model.Forward(Prepare(target));
        var loss = F.MseLoss(logitsIn, logitsTarget);
        return OnLogits ? loss : F.MseLoss(featuresIn, featuresTarget).Add(loss);
    }

    private Tensor Prepare(Tensor images)
    {
        var resized = F.InterpolateBilinearAntialias(images, InputSize, InputSize);
        return resized.Sub(ImageMean).Div(ImageStd);
    }
}
