using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

/// <summary>A perceptual distance between real images and reconstructions (the reference's PerceptualLoss /
/// LPIPS): a scalar or per-sample distances (the loss takes their mean), differentiable w.r.t. both arguments.</summary>
public interface IPerceptualLoss
{
    Tensor Forward(Tensor input, Tensor target);
}

/// <summary>Stand-in for runs with perceptual_weight 0: always 0, so no perceptual network is needed.</summary>
public sealed class ZeroPerceptualLoss : IPerceptualLoss
{
    public static readonly ZeroPerceptualLoss Instance = new();
    public Tensor Forward(Tensor input, Tensor target) => Tensor.Scalar(0f, input.Device);
}

/// <summary>The loss settings of the config section `losses` used by <see cref="VqganLoss"/>.</summary>
public sealed record VqganLossConfig(
    float QuantizerWeight, string PerceptualLoss, float PerceptualWeight, bool ReconstructionL1, float ReconstructionWeight,
    long DiscriminatorStart, GanLossType DiscriminatorLoss, float DiscriminatorFactor, float DiscriminatorWeight,
    bool AdaptiveDiscriminatorWeight, float LecamRegularizationWeight, double EmaDecay, long EntropyAnnealingSteps,
    float EntropyAnnealingFactor)
{
    /// <summary>losses.perceptual_loss_on_logits: the ImageNet networks compare logits only (true, the default) or
    /// their last feature map and the logits.</summary>
    public bool PerceptualOnLogits { get; init; } = true;
}

/// <summary>
/// The Stage-I training objective (reference VQGANLoss, golden convention 16). Generator mode: weighted
/// reconstruction + perceptual + quantizer (with entropy annealing) + GAN loss scaled by the (optionally adaptive)
/// discriminator weight. Discriminator mode: the GAN objective on real images vs detached reconstructions plus the
/// LeCAM regulariser, whose EMA buffers `ema_real_logits_mean` / `ema_fake_logits_mean` are updated after use.
/// State dict: those buffers (when LeCAM is on) and `discriminator.*`; the perceptual network is not part of it.
/// </summary>
public sealed class VqganLoss : Module
{
    private const float AdaptiveWeightEps = 1e-4f;
    private const float AdaptiveWeightMax = 1e4f;

    public VqganLossConfig Config { get; }
    public GanDiscriminator Discriminator { get; }
    public IPerceptualLoss Perceptual { get; }
    public Tensor? EmaRealLogitsMean { get; }
    public Tensor? EmaFakeLogitsMean { get; }

    /// <param name="perceptual">Required when perceptual_weight ≠ 0; otherwise a zero stand-in is used.</param>
    public VqganLoss(DiscriminatorConfig discriminator, VqganLossConfig config, IPerceptualLoss? perceptual = null, int seed = 0)
    {
        if (perceptual == null && config.PerceptualWeight != 0f)
            throw new ArgumentException($"perceptual_weight {config.PerceptualWeight} needs a perceptual network ('{config.PerceptualLoss}')");
        Config = config;
        Perceptual = perceptual ?? ZeroPerceptualLoss.Instance;
        if (config.LecamRegularizationWeight > 0f)
        {
            EmaRealLogitsMean = Buffer("ema_real_logits_mean", Tensor.Zeros(1));
            EmaFakeLogitsMean = Buffer("ema_fake_logits_mean", Tensor.Zeros(1));
        }
        Discriminator = Register("discriminator", GanDiscriminator.FromConfig(discriminator, seed));
    }

    public bool ShouldDiscriminatorBeTrained(long globalStep) => globalStep >= Config.DiscriminatorStart;

    /// <summary>The generator objective. <paramref name="lastLayer"/> is the decoder's last conv weight (the adaptive
    /// discriminator weight balances the gradients of the NLL and GAN terms there). Unlike the reference, which adds
    /// the annealed entropy term to the result's quantizer_loss in place, <paramref name="quantizer"/> is left as is.
    /// Once the GAN term is active the discriminator's parameters stop requiring gradients (and stay so).</summary>
    public (Tensor Loss, Dictionary<string, Tensor> LossDict) ForwardGenerator(
        Tensor inputs, Tensor reconstructions, QuantizerResult quantizer, long globalStep, Tensor lastLayer)
    {
        var reconstruction = (Config.ReconstructionL1 ? F.L1Loss(inputs, reconstructions) : F.MseLoss(inputs, reconstructions))
            * Config.ReconstructionWeight;
        var perceptual = Perceptual.Forward(inputs, reconstructions).Mean();
        var weightedPerceptual = perceptual * Config.PerceptualWeight;

        float discriminatorFactor = GanLosses.AdoptWeight(Config.DiscriminatorFactor, globalStep, Config.DiscriminatorStart);
        var generatorLoss = Tensor.Scalar(0f, inputs.Device);
        var dWeight = Tensor.Scalar(1f, inputs.Device);
        if (discriminatorFactor > 0f)
        {
            Discriminator.RequiresGrad_(false);
            generatorLoss = GanLosses.GeneratorLoss(Config.DiscriminatorLoss, Discriminator.Forward(reconstructions));
            if (Config.AdaptiveDiscriminatorWeight)
                dWeight = AdaptiveWeight(reconstruction.Add(weightedPerceptual), generatorLoss, lastLayer);
        }
        dWeight = dWeight * Config.DiscriminatorWeight;

        var quantizerLoss = quantizer.QuantizerLoss;
        if (Config.EntropyAnnealingFactor > 0f)
        {
            double annealing = Math.Max(0.0, 1.0 - (double)globalStep / Config.EntropyAnnealingSteps);
            quantizerLoss = quantizerLoss.Add(quantizer.EntropyLoss * (float)(annealing * Config.EntropyAnnealingFactor));
        }

        var weightedQuantizer = quantizerLoss * Config.QuantizerWeight;
        var weightedGan = generatorLoss.Mul(dWeight * discriminatorFactor);
        var total = reconstruction.Add(weightedPerceptual).Add(weightedQuantizer).Add(weightedGan);

        var lossDict = new Dictionary<string, Tensor>
        {
            ["total_loss"] = total.Detach(),
            ["reconstruction_loss"] = reconstruction.Detach(),
            ["perceptual_loss"] = weightedPerceptual.Detach(),
            ["quantizer_loss"] = weightedQuantizer.Detach(),
            ["weighted_gan_loss"] = weightedGan.Detach(),
            ["discriminator_factor"] = Tensor.Scalar(discriminatorFactor, inputs.Device),
            ["commitment_loss"] = quantizer.CommitmentLoss.Detach(),
            ["entropy_loss"] = quantizer.EntropyLoss.Detach(),
            ["per_sample_entropy"] = quantizer.PerSampleEntropy.Detach(),
            ["avg_entropy"] = quantizer.AvgEntropy.Detach(),
            ["d_weight"] = dWeight,
            ["gan_loss"] = generatorLoss.Detach(),
        };
        if (quantizer.CodebookLoss != null) lossDict["codebook_loss"] = quantizer.CodebookLoss.Detach();
        return (total, lossDict);
    }

    /// <summary>clamp(‖∂nll/∂W‖ / (‖∂g/∂W‖ + 1e-4), 0, 1e4), detached.</summary>
    private static Tensor AdaptiveWeight(Tensor nllLoss, Tensor generatorLoss, Tensor lastLayer)
    {
        var nllGrad = Tape.Grad(nllLoss, new[] { lastLayer })[0];
        var ganGrad = Tape.Grad(generatorLoss, new[] { lastLayer })[0];
        using var _ = Tape.NoGrad();
        return Norm(nllGrad).Div(Norm(ganGrad) + AdaptiveWeightEps).Clamp(0f, AdaptiveWeightMax);

        static Tensor Norm(Tensor g) => g.Square().Sum().Sqrt();
    }

    /// <summary>The discriminator objective on real <paramref name="inputs"/> and detached reconstructions, plus
    /// the weighted LeCAM term (added even before discriminator_start). Turns the discriminator's gradients on and
    /// updates the LeCAM EMA buffers after using them.</summary>
    public (Tensor Loss, Dictionary<string, Tensor> LossDict) ForwardDiscriminator(Tensor inputs, Tensor reconstructions, long globalStep)
    {
        float discriminatorFactor = GanLosses.AdoptWeight(Config.DiscriminatorFactor, globalStep, Config.DiscriminatorStart);
        Discriminator.RequiresGrad_(true);
        var logitsReal = Discriminator.Forward(inputs.Detach());
        var logitsFake = Discriminator.Forward(reconstructions.Detach());
        var loss = GanLosses.DiscriminatorLoss(Config.DiscriminatorLoss, logitsReal, logitsFake) * discriminatorFactor;

        var lecam = Tensor.Scalar(0f, inputs.Device);
        if (EmaRealLogitsMean != null && EmaFakeLogitsMean != null)
        {
            var realMean = logitsReal.Mean();
            var fakeMean = logitsFake.Mean();
            lecam = GanLosses.LecamLoss(realMean, fakeMean, EmaRealLogitsMean, EmaFakeLogitsMean) * Config.LecamRegularizationWeight;
            using var _ = Tape.NoGrad();
            float keep = (float)Config.EmaDecay, take = (float)(1.0 - Config.EmaDecay);
            EmaRealLogitsMean.CopyFrom_((EmaRealLogitsMean * keep).Add(realMean.Detach() * take));
            EmaFakeLogitsMean.CopyFrom_((EmaFakeLogitsMean * keep).Add(fakeMean.Detach() * take));
        }
        loss = loss.Add(lecam);

        var lossDict = new Dictionary<string, Tensor>
        {
            ["discriminator_loss"] = loss.Detach(),
            ["logits_real"] = logitsReal.Detach().Mean(),
            ["logits_fake"] = logitsFake.Detach().Mean(),
            ["lecam_loss"] = lecam.Detach(),
        };
        return (loss, lossDict);
    }
}
