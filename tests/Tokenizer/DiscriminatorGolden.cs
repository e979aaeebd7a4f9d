using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Tokenizer;

/// <summary>Golden `discriminator`: NLayerDiscriminatorv2 logits and gradients of sum(logits·R), and the GAN
/// utilities (losses with the gradients w.r.t. both logit tensors, sigmoid cross-entropy, adopt_weight).</summary>
public static class DiscriminatorGolden
{
    private const double ForwardTol = 1e-4;
    private const double GanTol = 1e-5;

    [GoldenKind("discriminator", OnDevices = true)]
    public static void Run(GoldenCase c)
    {
        var cfg = MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"));
        var model = new NLayerDiscriminatorV2(DiscriminatorConfig.From(cfg));
        ModuleCheckpoint.LoadInto(model, Path.Combine(c.Dir, "model.bin"));
        var failures = new List<string>();
        void Check(string name, Tensor t, double tol)
        {
            double e = Compare.ScaledError(t.ToArray(), c.Array(name).ToFloat32());
            if (!(e <= tol)) failures.Add($"{name}: scaled error {e:E2} > {tol:E0}");
        }

        var input = c.Tensor("input", requiresGrad: true);
        var logits = model.Forward(input);
        var scalar = logits.Mul(c.Tensor("R")).Sum();
        Check("logits", logits, ForwardTol);
        Check("scalar", scalar, ForwardTol);
        scalar.Backward();
        var grads = new GradTolerance();
        grads.Add("grad.input", input.Grad!.ToArray(), c.Array("grad.input").ToFloat32());
        foreach (var (name, p) in model.NamedParameters())
            grads.Add($"grad.{name}", p.Grad?.ToArray() ?? new float[p.Numel], c.Array($"grad.{name}").ToFloat32());
        failures.AddRange(grads.Failures());

        CheckGanLosses(c, failures, Check);
        CheckAdoptWeight(c, failures);
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }

    private static void CheckGanLosses(GoldenCase c, List<string> failures, Action<string, Tensor, double> check)
    {
        var emaReal = c.Tensor("gan.ema_real_logits_mean");
        var emaFake = c.Tensor("gan.ema_fake_logits_mean");
        var losses = new (string Name, Func<Tensor, Tensor, Tensor> Loss)[]
        {
            ("hinge_d_loss", GanLosses.HingeDLoss),
            ("vanilla_d_loss", GanLosses.VanillaDLoss),
            ("non_saturating_d_loss", GanLosses.NonSaturatingDLoss),
            ("lecam_loss", (real, fake) => GanLosses.LecamLoss(real.Mean(), fake.Mean(), emaReal, emaFake)),
            ("hinge_g_loss", (_, fake) => GanLosses.HingeGLoss(fake)),
            ("non_saturating_g_loss", (_, fake) => GanLosses.NonSaturatingGLoss(fake)),
        };
        foreach (var (name, loss) in losses)
        {
            var real = c.Tensor("gan.logits_real", requiresGrad: true);
            var fake = c.Tensor("gan.logits_fake", requiresGrad: true);
            var value = loss(real, fake);
            check($"gan.{name}", value, GanTol);
            value.Backward();
            check($"gan.{name}.grad_logits_real", real.Grad ?? Tensor.Zeros(real.Shape), GanTol);
            check($"gan.{name}.grad_logits_fake", fake.Grad ?? Tensor.Zeros(fake.Shape), GanTol);
        }
        check("gan.sigmoid_ce.logits_real_label1", GanLosses.SigmoidCrossEntropyWithLogits(c.Tensor("gan.logits_real"), 1f), GanTol);
        check("gan.sigmoid_ce.logits_fake_label0", GanLosses.SigmoidCrossEntropyWithLogits(c.Tensor("gan.logits_fake"), 0f), GanTol);
    }

    private static void CheckAdoptWeight(GoldenCase c, List<string> failures)
    {
        var meta = c.Meta.GetProperty("adopt_weight");
        float weight = (float)meta.GetProperty("weight").GetDouble(), value = (float)meta.GetProperty("value").GetDouble();
        long threshold = meta.GetProperty("threshold").GetInt64();
        var steps = c.Array("gan.adopt_weight.global_step").ToInt64();
        var expected = c.Array("gan.adopt_weight.value").ToFloat32();
        for (int i = 0; i < steps.Length; i++)
        {
            float actual = GanLosses.AdoptWeight(weight, steps[i], threshold, value);
            if (actual != expected[i]) failures.Add($"gan.adopt_weight at step {steps[i]}: {actual}, expected {expected[i]}");
        }
    }
}
