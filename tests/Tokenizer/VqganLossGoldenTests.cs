using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Tests.Tokenizer;

/// <summary>What the golden cases leave out: the average-pool discriminator and the perceptual-term plumbing.</summary>
[TestFixture]
public class VqganLossGoldenTests
{
    private const string Yaml = """
        model:
          discriminator: {name: VQGAN+Discriminator, num_channels: 3, num_stages: 3, hidden_channels: 32, blur_resample: false}
        losses:
          quantizer_weight: 1.0
          perceptual_loss: resnet50
          perceptual_weight: 0.5
          reconstruction_loss: l2
          reconstruction_weight: 2.0
          discriminator_start: 10
          discriminator_loss: hinge
          discriminator_factor: 1.0
          discriminator_weight: 0.1
          discriminator_gradient_penalty: none
          lecam_regularization_weight: 0.0
        """;

    private sealed class MsePerceptual : IPerceptualLoss
    {
        public Tensor Forward(Tensor input, Tensor target) => F.MseLoss(input, target);
    }

    [Test]
    public void AvgPoolDiscriminatorHasNoBlurKeysAndPoolsTo16()
    {
        var d = new NLayerDiscriminatorV2(DiscriminatorConfig.From(MaskBitConfig.Parse(Yaml, "test.yaml")));
        Assert.That(d.StateDict().Select(e => e.Name).Where(n => n.StartsWith("blocks.", StringComparison.Ordinal)),
            Is.EqualTo(new[] { 0, 1, 2 }.SelectMany(i => new[] { "0.weight", "0.bias", "2.weight", "2.bias" }.Select(s => $"blocks.{i}.{s}"))));
        Assert.That(d.Forward(Tensor.Full(new[] { 1, 3, 40, 24 }, 0.3f)).Shape, Is.EqualTo(new[] { 1, 1, 16, 16 }));
    }

    [Test]
    public void PerceptualTermIsWeightedAndNeedsANetwork()
    {
        var cfg = MaskBitConfig.Parse(Yaml, "test.yaml");
        Assert.Throws<ArgumentException>(() => VqganLoss.From(cfg));
        var loss = VqganLoss.From(cfg, new MsePerceptual());
        Assert.That(loss.StateDict().Any(e => e.Name.StartsWith("ema_", StringComparison.Ordinal)), Is.False, "LeCAM off: no EMA buffers");

        var rng = new Random(1);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        var inputs = Tensor.FromArray(Values(2 * 3 * 8 * 8), 2, 3, 8, 8);
        var recon = Tensor.FromArray(Values(2 * 3 * 8 * 8), 2, 3, 8, 8).RequiresGrad_();
        var zero = Tensor.Scalar(0f);
        var extra = new QuantizerResult(Tensor.Scalar(0.25f), zero, zero, zero, zero, Tensor.Zeros(new[] { 1 }, dtype: Kernels.DType.Int32));

        var (total, dict) = loss.ForwardGenerator(inputs, recon, extra, globalStep: 0, lastLayer: recon);
        float mse = F.MseLoss(inputs, recon).Item();
        Assert.That(dict["perceptual_loss"].Item(), Is.EqualTo(0.5f * mse).Within(1e-6));
        Assert.That(dict["reconstruction_loss"].Item(), Is.EqualTo(2f * mse).Within(1e-6));
        Assert.That(dict["d_weight"].Item(), Is.EqualTo(0.1f).Within(1e-7));
        Assert.That(total.Item(), Is.EqualTo(2.5f * mse + 0.25f).Within(1e-6));
    }
}
