using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Generator;

/// <summary>Golden `lfq_bert` and `bert_vq`: forward activations, logits, the MLM loss and its logging values,
/// every gradient; label dropping in place and with a null mask; the official `token_emb.*` key rename.
/// Tolerances (README.generator): activations/logits |Δ| ≤ 1e-4, loss |Δ| ≤ 1e-5, grads |Δ| ≤ 1e-4 + 1e-3·|ref|.</summary>
public static class GeneratorGolden
{
    [GoldenKind("lfq_bert", OnDevices = true)] public static void RunLfqBert(GoldenCase c) => Run(c);
    [GoldenKind("bert_vq", OnDevices = true)] public static void RunBertVq(GoldenCase c) => Run(c);

    private static void Run(GoldenCase c)
    {
        var cfg = MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"));
        var model = new MaskedGenerator(GeneratorConfig.From(cfg));
        ModuleCheckpoint.LoadInto(model, Path.Combine(c.Dir, "model.bin"));
        model.Train();
        var failures = new List<string>();
        void Abs(string name, Tensor t, double tol)
        {
            var a = t.ToArray(); var b = c.Array(name).ToFloat32();
            if (a.Length != b.Length) { failures.Add($"{name}: {a.Length} values, expected {b.Length}"); return; }
            double worst = 0;
            for (int i = 0; i < a.Length; i++) worst = Math.Max(worst, Math.Abs((double)a[i] - b[i]));
            if (!(worst <= tol)) failures.Add($"{name}: max |Δ| {worst:E2} > {tol:E0}");
        }
        void Ints(string name, Tensor t)
        {
            if (!c.Array(name).ToInt64().Select(v => (int)v).SequenceEqual(t.ToIntArray())) failures.Add($"{name}: integers differ");
        }

        var tokens = c.Tensor("img_tokens");
        var labels = c.Tensor("class_labels");
        var drop = c.Array("drop_label_mask").ToInt64().Select(v => v != 0).ToArray();
        var logits = model.Forward(tokens, labels, drop, (what, act) => { if (c.Has($"act.{what}")) Abs($"act.{what}", act, 1e-4); });
        Ints("class_labels_after_forward", labels);
        if (model.IsLfq) Abs("preprocessed_tokens", model.PreprocessTokens(tokens), 0);
        Abs("logits", logits, 1e-4);

        var loss = new MlmLoss((float)cfg.GetDouble("losses.mlm.label_smoothing", 0.1), cfg.GetBool("losses.mlm.sum_splits", false));
        var targets = c.Tensor("targets");
        var mask = Tensor.FromInts(c.Array("mask").ToInt64().Select(v => v != 0 ? 1 : 0).ToArray(), targets.Shape);
        var (value, statistics) = loss.Forward(logits, targets, mask);
        var log = statistics.Read();
        Abs("loss", value, 1e-5);
        Abs("masked_token_loss", Tensor.Scalar(log.MaskedTokenLoss), 1e-5);
        Abs("correct_tokens", Tensor.Scalar(log.CorrectTokens), 1e-5);
        Abs("masked_correct_tokens", Tensor.Scalar(log.MaskedCorrectTokens), 1e-5);

        value.Backward();
        foreach (var (name, p) in model.NamedParameters())
        {
            var g = p.Grad?.ToArray() ?? new float[p.Numel];
            var r = c.Array($"grad.{name}").ToFloat32();
            for (int i = 0; i < g.Length; i++)
                if (!(Math.Abs(g[i] - r[i]) <= 1e-4 + 1e-3 * Math.Abs(r[i]))) { failures.Add($"grad.{name}[{i}]: {g[i]} vs {r[i]}"); break; }
        }

        using (Tape.NoGrad())
        {
            var labelsNone = c.Tensor("class_labels");
            Abs("logits_drop_mask_none", model.Forward(tokens, labelsNone, null), 1e-4);
            Ints("class_labels_after_forward_drop_mask_none", labelsNone);
        }

        if (c.Json.GetProperty("files").TryGetProperty("legacy_keys", out _)) RunLegacyKeys(c, failures);
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures.Take(30)));
    }

    /// <summary>The official checkpoints name LFQBert's input projection token_emb.*: loads only with the rename.</summary>
    private static void RunLegacyKeys(GoldenCase c, List<string> failures)
    {
        var cfg = MaskBitConfig.Load(Path.Combine(c.Dir, "config_legacy_keys.yaml"));
        var model = new MaskedGenerator(GeneratorConfig.From(cfg));
        var file = Path.Combine(c.Dir, "model_legacy_keys.bin");
        Assert.Throws<InvalidDataException>(() => ModuleCheckpoint.LoadInto(model, file), "strict load without the rename must fail");
        ModuleCheckpoint.LoadInto(model, file, renames: new Dictionary<string, string> { ["token_emb"] = "input_proj" });
        model.Eval();
        var io = Npy.ReadNpz(Path.Combine(c.Dir, "io_legacy_keys.npz"));
        var tokens = Tensor.FromInts(io["img_tokens"].ToInt32(), io["img_tokens"].Shape);
        var labels = Tensor.FromInts(io["class_labels"].ToInt32(), io["class_labels"].Shape);
        var drop = io["drop_label_mask"].ToInt64().Select(v => v != 0).ToArray();
        using var _ = Tape.NoGrad();
        var logits = model.Forward(tokens, labels, drop).ToArray();
        var expected = io["logits"].ToFloat32();
        double worst = logits.Zip(expected, (a, b) => Math.Abs((double)a - b)).Max();
        if (!(worst <= 1e-4)) failures.Add($"legacy-key logits: max |Δ| {worst:E2}");
        if (!io["class_labels_after_forward"].ToInt64().Select(v => (int)v).SequenceEqual(labels.ToIntArray())) failures.Add("legacy-key labels differ");
    }
}
