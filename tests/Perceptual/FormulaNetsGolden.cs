using MaskBit.Autograd;
using MaskBit.Models.Perceptual;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Perceptual;

/// <summary>Golden `formula_nets`: ResNet-50 and the perceptual loss over it, the FID InceptionV3 (with its TF1-style
/// resize) and LPIPS-VGG16, all with the formula weights of <see cref="FormulaWeights"/>. Forward values must meet
/// scaled ≤ 1e-4; input gradients through ResNet-50 / VGG16 pooled L2 ≤ 1e-2 and scaled ≤ 5e-2 (README).</summary>
public static class FormulaNetsGolden
{
    private const double ForwardTol = 1e-4, GradPooledTol = 1e-2, GradScaledTol = 5e-2;
    // The resize is the reference's float64 arithmetic; only the float32 storage of the result differs.
    private const double ResizeTol = 1e-6;

    [GoldenKind("formula_nets")]
    public static void Run(GoldenCase c)
    {
        var failures = new List<string>();
        void Check(string name, Tensor t, double tol = ForwardTol)
        {
            double e = Compare.ScaledError(t.ToArray(), c.Array(name).ToFloat32());
            if (!(e <= tol)) failures.Add($"{name}: scaled error {e:E2} > {tol:E0}");
        }
        void CheckGrad(string name, Tensor input)
        {
            float[] actual = input.Grad?.ToArray() ?? new float[input.Numel], expected = c.Array(name).ToFloat32();
            double pooled = Compare.PooledL2(actual, expected), scaled = Compare.ScaledError(actual, expected);
            if (!(pooled <= GradPooledTol && scaled <= GradScaledTol))
                failures.Add($"{name}: pooled L2 {pooled:E2} (≤ {GradPooledTol:E0}), scaled {scaled:E2} (≤ {GradScaledTol:E0})");
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        void Timed(string what, Action check)
        {
            var start = clock.Elapsed;
            check();
            TestContext.Out.WriteLine($"{c}: {what} {(clock.Elapsed - start).TotalSeconds:F2} s");
        }
        Timed("tf1 resize", () => CheckResize(c, failures));
        Timed("resnet50 + perceptual", () => CheckResNet50(c, Check, CheckGrad));
        Timed("inception", () => CheckInception(c, Check));
        Timed("lpips", () => CheckLpips(c, Check, CheckGrad));
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }

    private static void CheckResize(GoldenCase c, List<string> failures)
    {
        foreach (var which in new[] { "a", "b" })
        {
            var x = c.Array($"inception.resize.{which}.x");
            var size = c.Meta.GetProperty("resize").GetProperty(which).EnumerateArray().Select(v => v.GetInt32()).ToArray();
            var y = InceptionV3.ResizeBilinearTensorflow1x(x.ToFloat64(), x.Shape[0] * x.Shape[1], x.Shape[2], x.Shape[3], size[0], size[1]);
            double e = Compare.ScaledError(y, c.Array($"inception.resize.{which}.y").ToFloat64());
            if (!(e <= ResizeTol)) failures.Add($"inception.resize.{which}.y: scaled error {e:E2} > {ResizeTol:E0}");
        }
    }

    private static void CheckResNet50(GoldenCase c, Action<string, Tensor, double> check, Action<string, Tensor> checkGrad)
    {
        var resnet = new ResNet50();
        FormulaWeights.LoadInto(resnet, FormulaWeights.ParamsPath(c, "resnet50"));
        using (TensorScope.Begin())
        using (Tape.NoGrad())
        {
            var (logits, layer4) = resnet.Forward(c.Tensor("resnet50.input"));
            check("resnet50.logits", logits, ForwardTol);
            check("resnet50.layer4", layer4, ForwardTol);
        }
        foreach (var (variant, onLogits) in new[] { ("on_logits", true), ("on_features_and_logits", false) })
        {
            using var scope = TensorScope.Begin();
            var input = c.Tensor("perceptual.input", requiresGrad: true);
            var loss = new PerceptualLoss(resnet, onLogits).Forward(input, c.Tensor("perceptual.target"));
            check($"perceptual.{variant}.loss", loss, ForwardTol);
            loss.Backward();
            checkGrad($"perceptual.{variant}.grad_input", input);
        }
    }

    private static void CheckInception(GoldenCase c, Action<string, Tensor, double> check)
    {
        var inception = new InceptionV3();
        FormulaWeights.LoadInto(inception, FormulaWeights.ParamsPath(c, "inception"));
        using var scope = TensorScope.Begin();
        using var noGrad = Tape.NoGrad();
        var f = inception.Forward(c.Tensor("inception.images_uint8"));
        foreach (var (name, t) in new[] { ("64", f.Pool64), ("192", f.Pool192), ("768", f.Pool768), ("2048", f.Pool2048),
                     ("logits_unbiased", f.LogitsUnbiased), ("logits", f.Logits) })
            check($"inception.{name}", t, ForwardTol);
    }

    private static void CheckLpips(GoldenCase c, Action<string, Tensor, double> check, Action<string, Tensor> checkGrad)
    {
        var lpips = new Lpips();
        FormulaWeights.LoadInto(lpips, FormulaWeights.ParamsPath(c, "lpips"), c.Io);
        using var scope = TensorScope.Begin();
        var input = c.Tensor("lpips.input", requiresGrad: true);
        var value = lpips.Forward(input, c.Tensor("lpips.target"));
        check("lpips.value", value, ForwardTol);
        value.Sum().Backward();
        checkGrad("lpips.grad_input", input);
    }
}
