using MaskBit.Autograd;

namespace MaskBit.Models.Tokenizer;

/// <summary>The discriminator objectives of losses.discriminator_loss.</summary>
public enum GanLossType { Hinge, Vanilla, NonSaturating }

/// <summary>
/// GAN losses and helpers of the reference gan_utils (golden convention 15). Logits are any shape; every loss is
/// a 0-d mean. "Real" logits come from real images, "fake" logits from reconstructions.
/// </summary>
public static class GanLosses
{
    public static Tensor DiscriminatorLoss(GanLossType type, Tensor logitsReal, Tensor logitsFake) => type switch
    {
        GanLossType.Hinge => HingeDLoss(logitsReal, logitsFake),
        GanLossType.Vanilla => VanillaDLoss(logitsReal, logitsFake),
        _ => NonSaturatingDLoss(logitsReal, logitsFake),
    };

    /// <summary>The generator side of <paramref name="type"/>; the vanilla objective pairs with the hinge generator
    /// loss in the reference.</summary>
    public static Tensor GeneratorLoss(GanLossType type, Tensor logitsFake) =>
        type == GanLossType.NonSaturating ? NonSaturatingGLoss(logitsFake) : HingeGLoss(logitsFake);

    /// <summary>0.5·(mean(relu(1 − real)) + mean(relu(1 + fake))).</summary>
    public static Tensor HingeDLoss(Tensor logitsReal, Tensor logitsFake) =>
        (1f - logitsReal).Relu().Mean().Add((logitsFake + 1f).Relu().Mean()) * 0.5f;

    /// <summary>−mean(fake).</summary>
    public static Tensor HingeGLoss(Tensor logitsFake) => logitsFake.Mean().Neg();

    /// <summary>0.5·(mean(softplus(−real)) + mean(softplus(fake))).</summary>
    public static Tensor VanillaDLoss(Tensor logitsReal, Tensor logitsFake) =>
        logitsReal.Neg().Softplus().Mean().Add(logitsFake.Softplus().Mean()) * 0.5f;

    /// <summary>Element-wise binary cross-entropy of sigmoid(logits) against a constant label, in the stable form
    /// max(x, 0) − x·z + log(1 + exp(−|x|)) = softplus(x) − x·z (gradient sigmoid(x) − z).</summary>
    public static Tensor SigmoidCrossEntropyWithLogits(Tensor logits, float label) =>
        label == 0f ? logits.Softplus() : logits.Softplus().Sub(logits * label);

    /// <summary>mean(ce(real, 1)) + mean(ce(fake, 0)) — no ½, unlike the hinge and vanilla losses.</summary>
    public static Tensor NonSaturatingDLoss(Tensor logitsReal, Tensor logitsFake) =>
        SigmoidCrossEntropyWithLogits(logitsReal, 1f).Mean().Add(SigmoidCrossEntropyWithLogits(logitsFake, 0f).Mean());

    /// <summary>mean(ce(fake, 1)).</summary>
    public static Tensor NonSaturatingGLoss(Tensor logitsFake) => SigmoidCrossEntropyWithLogits(logitsFake, 1f).Mean();

    /// <summary>LeCAM regulariser: mean(relu(mean_real − ema_fake)²) + mean(relu(ema_real − mean_fake)²), on the
    /// batch means of the logits and the EMA buffers of those means (unweighted).</summary>
    public static Tensor LecamLoss(Tensor logitsRealMean, Tensor logitsFakeMean, Tensor emaRealMean, Tensor emaFakeMean) =>
        logitsRealMean.Sub(emaFakeMean).Relu().Square().Mean().Add(emaRealMean.Sub(logitsFakeMean).Relu().Square().Mean());

    /// <summary><paramref name="value"/> before <paramref name="threshold"/> steps, <paramref name="weight"/> from then on.</summary>
    public static float AdoptWeight(float weight, long globalStep, long threshold = 0, float value = 0f) =>
        globalStep < threshold ? value : weight;
}
