using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Perceptual;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Perceptual;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Tokenizer;

/// <summary>Golden `vqgan_loss`: VQGANLoss in generator and discriminator mode over the runs of meta.runs, each on a
/// freshly loaded module (config overrides per run). Reconstructions come from a stand-in last layer
/// (Conv2dSame(features)), whose weight is the adaptive weight's `last_layer`. On a test device: one run per mode
/// past discriminator_start, no perceptual network (`perceptual_small` runs the ResNet-50 run there at 32×32).</summary>
public static class VqganLossGolden
{
    private const double LossTol = 1e-5;

    [GoldenKind("vqgan_loss", OnDevices = true)]
    public static void Run(GoldenCase c)
    {
        var failures = new List<string>();
        var grads = new GradTolerance();
        var modesRun = new HashSet<string>();
        foreach (var run in c.Meta.GetProperty("runs").EnumerateArray())
        {
            string name = run.GetProperty("name").GetString()!, mode = run.GetProperty("mode").GetString()!;
            IPerceptualLoss? perceptual = null;
            if (run.TryGetProperty("perceptual", out var kind))
            {
                if (!GoldenDevice.IsCpu) continue;   // a ResNet-50 at 224×224 takes minutes on the emulator
                perceptual = PerceptualFor(c, kind.GetString()!);
                if (perceptual == null)
                {
                    TestContext.Out.WriteLine($"{c}: run {name} not covered: no '{kind.GetString()}' perceptual network yet");
                    continue;
                }
            }
            var overrides = run.GetProperty("overrides").EnumerateObject().Select(o => $"losses.{o.Name}={Yaml(o.Value)}");
            var cfg = MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"), overrides);
            var loss = VqganLoss.From(cfg, perceptual);
            ModuleCheckpoint.LoadInto(loss, Path.Combine(c.Dir, "model.bin"));
            long step = run.GetProperty("global_step").GetInt64();
            // On a test device one run per mode, with the discriminator in play.
            if (!GoldenDevice.IsCpu && (!loss.ShouldDiscriminatorBeTrained(step) || !modesRun.Add(mode))) continue;
            if (mode == "gen") RunGenerator(c, name, loss, step, failures, grads);
            else RunDiscriminator(c, name, loss, step, failures, grads);
        }
        failures.AddRange(grads.Failures());
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }

    /// <summary>The perceptual network a run names (null for one not implemented): `formula_resnet50` is the
    /// reference PerceptualLoss("resnet50", on logits) over the ResNet-50 with the `formula_nets` weights.</summary>
    private static IPerceptualLoss? PerceptualFor(GoldenCase c, string kind)
    {
        if (kind != "formula_resnet50") return null;
        var resnet = new ResNet50();
        FormulaWeights.LoadInto(resnet, FormulaWeights.ParamsPath(c, "resnet50"));
        return new PerceptualLoss(resnet);
    }

    private static string Yaml(JsonElement v) => v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText();

    internal static void CheckLoss(GoldenCase c, List<string> failures, string name, Tensor t)
    {
        double e = Compare.ScaledError(t.ToArray(), c.Array(name).ToFloat32());
        if (!(e <= LossTol)) failures.Add($"{name}: relative error {e:E2} > {LossTol:E0}");
    }

    internal static void RunGenerator(GoldenCase c, string run, VqganLoss module, long step, List<string> failures, GradTolerance grads)
    {
        var weight = c.Tensor("last_layer.weight", requiresGrad: true);
        var bias = c.Tensor("last_layer.bias", requiresGrad: true);
        var features = c.Tensor("features", requiresGrad: true);
        var quantizerLoss = c.Tensor("extra.quantizer_loss", requiresGrad: true);
        var entropyLoss = c.Tensor("extra.entropy_loss", requiresGrad: true);
        var extra = new QuantizerResult(quantizerLoss, c.Tensor("extra.commitment_loss"), entropyLoss,
            c.Tensor("extra.per_sample_entropy"), c.Tensor("extra.avg_entropy"), MinEncodingIndices: Tensor.Zeros(new[] { 1 }, dtype: Kernels.DType.Int32));
        var reconstructions = F.Conv2dSame(features, weight, bias);

        var (loss, dict) = module.ForwardGenerator(c.Tensor("inputs"), reconstructions, extra, step, weight);
        CheckLoss(c, failures, $"{run}.loss", loss);
        CheckDict(c, failures, run, dict);
        if (module.Discriminator.Parameters().Any(p => p.RequiresGrad) != step < module.Config.DiscriminatorStart)
            failures.Add($"{run}: the discriminator should require grad only before discriminator_start");

        loss.Backward();
        foreach (var (name, t) in new[] { ("last_layer.weight", weight), ("last_layer.bias", bias), ("features", features),
                     ("extra.quantizer_loss", quantizerLoss), ("extra.entropy_loss", entropyLoss) })
            grads.Add($"{run}.grad.{name}", t.Grad?.ToArray() ?? new float[t.Numel], c.Array($"{run}.grad.{name}").ToFloat32());
    }

    private static void RunDiscriminator(GoldenCase c, string run, VqganLoss module, long step, List<string> failures, GradTolerance grads)
    {
        Tensor reconstructions;
        using (Tape.NoGrad())
            reconstructions = F.Conv2dSame(c.Tensor("features"), c.Tensor("last_layer.weight"), c.Tensor("last_layer.bias"));

        var (loss, dict) = module.ForwardDiscriminator(c.Tensor("inputs"), reconstructions, step);
        CheckLoss(c, failures, $"{run}.loss", loss);
        CheckDict(c, failures, run, dict);
        CheckLoss(c, failures, $"{run}.ema_real_logits_mean_after", module.EmaRealLogitsMean!);
        CheckLoss(c, failures, $"{run}.ema_fake_logits_mean_after", module.EmaFakeLogitsMean!);

        loss.Backward();
        foreach (var (name, p) in module.Discriminator.NamedParameters())
            grads.Add($"{run}.grad.discriminator.{name}", p.Grad?.ToArray() ?? new float[p.Numel],
                c.Array($"{run}.grad.discriminator.{name}").ToFloat32());
    }

    /// <summary>Every stored loss-dict entry of the run, and no entry the reference does not return.</summary>
    private static void CheckDict(GoldenCase c, List<string> failures, string run, Dictionary<string, Tensor> dict)
    {
        string prefix = $"{run}.loss_dict.";
        var stored = c.Io.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).Select(k => k[prefix.Length..]).ToHashSet();
        if (!stored.SetEquals(dict.Keys))
            failures.Add($"{run}: loss dict keys [{string.Join(", ", dict.Keys.Order())}], expected [{string.Join(", ", stored.Order())}]");
        foreach (var key in stored.Where(dict.ContainsKey)) CheckLoss(c, failures, prefix + key, dict[key]);
    }
}
