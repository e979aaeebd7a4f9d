using System.Diagnostics;
using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Perceptual;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;
using MaskBit.Tests.Tokenizer;

namespace MaskBit.Tests.Perceptual;

/// <summary>Golden `perceptual_small` (tests/Fixtures/golden/perceptual_small/README.md): every layer of the three
/// perceptual networks and VqganLoss's ResNet-50 path at small sizes, for the test devices — the 224×224
/// cases (`formula_nets`, `perceptual_nets`, `vqgan_loss`'s rn50 run, `tokenizer_training_rn50`) take minutes there and
/// run on the CPU only. PerceptualLoss resizes to meta.resize (32: the last stage of ResNet-50 and ConvNeXt-Small
/// works on a 1×1 map) instead of 224, in the reference run as here. Tolerances as `formula_nets` and `vqgan_loss`.
/// The emulator's cost follows the weight count, not the image size (<see cref="GoldenDevice.RunsNetworkSizedCases"/>):
/// the ResNet-50 part alone took 492 s on ilgpu-cpu against 6.4 s on cpu (the same run, 2 cores at load ~97), so
/// there the case runs only when asked for.</summary>
public static class PerceptualSmallGolden
{
    private const double ForwardTol = 1e-4, GradPooledTol = 1e-2, GradScaledTol = 5e-2;

    [GoldenKind("perceptual_small", OnDevices = true)]
    public static void Run(GoldenCase c)
    {
        if (!GoldenDevice.RunsNetworkSizedCases)
            Assert.Ignore($"{c}: ResNet-50 and ConvNeXt-Small take minutes on ILGPU's CPU accelerator; MASKBIT_TEST_SLOW_EMULATOR=1 runs them");
        int resize = c.Meta.GetProperty("resize").GetInt32();
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
        var clock = Stopwatch.StartNew();
        void Timed(string what, Action check)
        {
            var start = clock.Elapsed;
            check();
            TestContext.Out.WriteLine($"{c}: {what} {(clock.Elapsed - start).TotalSeconds:F2} s");
        }

        var resnet = new ResNet50();
        var convnext = ConvNeXt.Small();
        Timed("weights", () =>
        {
            FormulaWeights.LoadInto(resnet, FormulaWeights.ParamsPath(c, "resnet50"));
            FormulaWeights.LoadInto(convnext, FormulaWeights.ParamsPath(c, "convnext_s"));
        });
        foreach (var (net, model) in new (string, ImageNetClassifier)[] { ("resnet50", resnet), ("convnext_s", convnext) })
            foreach (var (variant, onLogits) in new[] { ("on_logits", true), ("on_features_and_logits", false) })
                Timed($"{net} {variant}", () =>
                {
                    using var scope = TensorScope.Begin();
                    var input = c.Tensor("perceptual.input", requiresGrad: true);
                    var loss = new PerceptualLoss(model, onLogits, resize).Forward(input, c.Tensor("perceptual.target"));
                    Check($"perceptual_{net}.{variant}.loss", loss);
                    loss.Backward();
                    CheckGrad($"perceptual_{net}.{variant}.grad_input", input);
                });

        Timed("lpips", () =>
        {
            var lpips = new Lpips();
            FormulaWeights.LoadInto(lpips, FormulaWeights.ParamsPath(c, "lpips"), c.Io);
            using var scope = TensorScope.Begin();
            IPerceptualLoss perceptual = lpips;
            var input = c.Tensor("lpips_loss.input", requiresGrad: true);
            var loss = perceptual.Forward(input, c.Tensor("lpips_loss.target")).Mean();   // VqganLoss's reduction
            Check("lpips_loss.loss", loss);
            loss.Backward();
            CheckGrad("lpips_loss.grad_input", input);
        });

        // vqgan_loss's gen_s1500_rn50_adaptive (its inputs, config and module state) with the resized ResNet-50.
        var grads = new GradTolerance();
        Timed("vqgan_loss rn50 run", () =>
        {
            var run = c.Meta.GetProperty("run");
            string name = run.GetProperty("name").GetString()!;
            var overrides = run.GetProperty("overrides").EnumerateObject().Select(o => $"losses.{o.Name}={o.Value}");
            var loss = VqganLoss.From(MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"), overrides), new PerceptualLoss(resnet, inputSize: resize));
            ModuleCheckpoint.LoadInto(loss, Path.Combine(c.Dir, "model.bin"));
            VqganLossGolden.RunGenerator(c, name, loss, run.GetProperty("global_step").GetInt64(), failures, grads);
        });
        failures.AddRange(grads.Failures());
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }
}
