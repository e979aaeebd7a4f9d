using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Perceptual;

/// <summary>An ImageNet classifier the perceptual loss runs: the logits and the last feature map of a normalised
/// batch (the reference's <c>return_nodes</c>: <c>layer4</c> / <c>fc</c> of ResNet-50, <c>features</c> /
/// <c>classifier</c> of ConvNeXt).</summary>
public abstract class ImageNetClassifier : Module
{
    public abstract (Tensor Logits, Tensor Features) Forward(Tensor x);
}

/// <summary>The reference's PerceptualLoss (modeling/modules/perceptual_loss.py, "resnet50" or "convnext_s"): both
/// images (N, 3, H, W) in [0, 1] are resized to 224×224 (antialiased bilinear, aspect ratio not kept; tests pass a
/// smaller <c>inputSize</c> to run every layer cheaply),
/// ImageNet-normalised and run through the classifier; the loss is the MSE of the logits, or with
/// <c>onLogits: false</c> the MSE of the last feature map plus the MSE of the logits. State-dict keys: <c>mean</c>,
/// <c>std</c> (buffers) and <c>model.*</c> (the torchvision keys). The classifier is frozen (eval mode, no
/// parameter gradients); gradients flow to the input only.</summary>
public sealed class PerceptualLoss : Module, IPerceptualLoss
{
    /// <summary>The reference's resize target.</summary>
    public const int DefaultInputSize = 224;

    public ImageNetClassifier Model { get; }
    public bool OnLogits { get; }
    public int InputSize { get; }
    public Tensor ImageMean { get; }
    public Tensor ImageStd { get; }

    public PerceptualLoss(ImageNetClassifier model, bool onLogits = true, int inputSize = DefaultInputSize)
    {
        ImageMean = Buffer("mean", Tensor.FromArray(new[] { 0.485f, 0.456f, 0.406f }, 1, 3, 1, 1));
        ImageStd = Buffer("std", Tensor.FromArray(new[] { 0.229f, 0.224f, 0.225f }, 1, 3, 1, 1));
        Model = Register("model", model);
        OnLogits = onLogits;
        InputSize = inputSize;
        Eval();
        RequiresGrad_(false);
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
