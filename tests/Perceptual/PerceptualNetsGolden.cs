using MaskBit.Autograd;
using MaskBit.Models.Perceptual;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Perceptual;

/// <summary>Golden `perceptual_nets` (tests/Fixtures/golden/perceptual_nets/README.md): the reference's other two
/// perceptual losses with formula weights — ConvNeXt-Small alone and as PerceptualLoss("convnext_s") on logits and on
/// features + logits, and LPIPS as create_perception_loss("lpips") averaged as VQGANLoss does. Tolerances as
/// `formula_nets`: forward scaled ≤ 1e-4, input gradients pooled L2 ≤ 1e-2 and scaled ≤ 5e-2.</summary>
public static class PerceptualNetsGolden
{
    private const double ForwardTol = 1e-4, GradPooledTol = 1e-2, GradScaledTol = 5e-2;

    [GoldenKind("perceptual_nets")]
    public static void Run(GoldenCase c)
    {
        var failures = new List<string>();
        void Check(string name, Tensor t)
        {
            double e = Compare.ScaledError(t.ToArray(), c.Array(name).ToFloat32());
            if (!(e <= ForwardTol)) failures.Add($"{name}: scaled error {e:E2} > {ForwardTol:E0}");
        }
        void CheckGrad(string name, Tensor input)
        {
            float[] actual = input.Grad?.ToArray() ?? new float[input.Numel], expected = c.Array(name).ToFloat32();
            double pooled = Compare.PooledL2(actual, expected), scaled = Compare.ScaledError(actual, expected);
            if (!(pooled <= GradPooledTol && scaled <= GradScaledTol))
                failures.Add($"{name}: pooled L2 {pooled:E2} (≤ {GradPooledTol:E0}), scaled {scaled:E2} (≤ {GradScaledTol:E0})");
        }

        var convnext = ConvNeXt.Small();
        FormulaWeights.LoadInto(convnext, FormulaWeights.ParamsPath(c, "convnext_s"), c.Io);
        Assert.That(convnext.Parameters().Any(p => p.RequiresGrad), Is.False, "the perceptual network is frozen");
        using (TensorScope.Begin())
        using (Tape.NoGrad())
        {
            var (logits, features) = convnext.Forward(c.Tensor("convnext.input"));
            Check("convnext.logits", logits);
            Check("convnext.features", features);
        }
        foreach (var (variant, onLogits) in new[] { ("on_logits", true), ("on_features_and_logits", false) })
        {
            using var scope = TensorScope.Begin();
            var input = c.Tensor("perceptual.input", requiresGrad: true);
            var loss = new PerceptualLoss(convnext, onLogits).Forward(input, c.Tensor("perceptual.target"));
            Check($"perceptual_convnext.{variant}.loss", loss);
            loss.Backward();
            CheckGrad($"perceptual_convnext.{variant}.grad_input", input);
            Assert.That(convnext.Parameters().All(p => p.Grad == null), Is.True, "no gradients kept for the frozen network");
        }

        var lpips = new Lpips();
        FormulaWeights.LoadInto(lpips, FormulaWeights.ParamsPath(c, "lpips"), c.Io);
        using (TensorScope.Begin())
        {
            IPerceptualLoss perceptual = lpips;
            var input = c.Tensor("lpips_loss.input", requiresGrad: true);
            var loss = perceptual.Forward(input, c.Tensor("lpips_loss.target")).Mean();   // VqganLoss's reduction
            Check("lpips_loss.loss", loss);
            loss.Backward();
            CheckGrad("lpips_loss.grad_input", input);
        }
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }
}
