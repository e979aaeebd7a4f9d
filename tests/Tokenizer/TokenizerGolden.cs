using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Tokenizer;

/// <summary>Golden `tokenizer` (ConvVQModel, LFQ or VQ, new or legacy decoder) and `vq` (SimpleVectorizer).</summary>
public static class TokenizerGolden
{
    // On the test devices the LFQ tokenizer only: the VQ path runs there in the `vq` case, and each tokenizer
    // case costs ~20 s on the CPU-accelerator emulator.
    [GoldenKind("tokenizer", OnDevices = true, DeviceCases = ["tokenizer_lfq"])]
    public static void RunTokenizer(GoldenCase c)
    {
        var cfg = MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"));
        var model = new ConvVQModel(TokenizerConfig.From(cfg));
        ModuleCheckpoint.LoadInto(model, Path.Combine(c.Dir, "model.bin"));
        model.Train();
        var failures = new List<string>();
        void Check(string name, Tensor t, double tol = 1e-4)
        {
            if (!c.Has(name)) return;
            double e = Compare.ScaledError(t.ToArray(), c.Array(name).ToFloat32());
            if (!(e <= tol)) failures.Add($"{name}: scaled error {e:E2} > {tol:E0}");
        }

        var input = c.Tensor("input", requiresGrad: true);
        var target = c.Tensor("target");
        var z = model.Encoder.Forward(input);
        var (zq, r) = model.QuantizeLatents(z);
        var decoded = model.Decode(zq);
        var rec = F.MseLoss(decoded, target);
        var total = rec.Add(r.QuantizerLoss);
        Check("z", z);
        Check("z_quantized", zq);
        if (!c.Array("min_encoding_indices").ToInt64().Select(v => (int)v).SequenceEqual(r.MinEncodingIndices.ToIntArray()))
            failures.Add("min_encoding_indices differ");
        Check("commitment_loss", r.CommitmentLoss);
        if (r.CodebookLoss != null) Check("codebook_loss", r.CodebookLoss);
        Check("entropy_loss", r.EntropyLoss);
        Check("per_sample_entropy", r.PerSampleEntropy, 1e-3);
        Check("avg_entropy", r.AvgEntropy);
        Check("quantizer_loss", r.QuantizerLoss);
        Check("decoded", decoded);
        Check("reconstruction_loss", rec);
        Check("total_loss", total);
        using (Tape.NoGrad())
        {
            var tokens = r.MinEncodingIndices.Reshape(r.MinEncodingIndices.Shape[0], -1);
            Check("decoded_from_tokens", model.DecodeTokens(tokens));
        }

        total.Backward();
        var grads = new GradTolerance();
        grads.Add("grad.input", input.Grad!.ToArray(), c.Array("grad.input").ToFloat32());
        foreach (var (name, p) in model.NamedParameters())
            grads.Add($"grad.{name}", p.Grad?.ToArray() ?? new float[p.Numel], c.Array($"grad.{name}").ToFloat32());
        failures.AddRange(grads.Failures());
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }

    [GoldenKind("vq", OnDevices = true)]
    public static void RunVq(GoldenCase c)
    {
        var cfg = MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"));
        var failures = new List<string>();
        foreach (var v in c.Meta.GetProperty("variants").EnumerateArray())
        {
            string pre = v.GetProperty("name").GetString()! + ".";
            var q = new VectorQuantizer((int)cfg.GetInt("model.vq_model.codebook_size"), (int)cfg.GetInt("model.vq_model.token_size"),
                (float)cfg.GetDouble("model.vq_model.commitment_cost"), (float)v.GetProperty("entropy_loss_weight").GetDouble(),
                (float)v.GetProperty("entropy_loss_temperature").GetDouble(), (float)cfg.GetDouble("model.vq_model.entropy_gamma"),
                v.GetProperty("use_l2_normalisation").GetBoolean());
            ModuleCheckpoint.LoadInto(q, Path.Combine(c.Dir, "model.bin"));
            q.Train();
            void Check(string name, Tensor t, double tol = 1e-4)
            {
                double e = Compare.ScaledError(t.ToArray(), c.Array(pre + name).ToFloat32());
                if (!(e <= tol)) failures.Add($"{pre}{name}: scaled error {e:E2}");
            }
            var z = c.Tensor("z", requiresGrad: true);
            var (zq, r) = q.Forward(z);
            var scalar = r.QuantizerLoss.Add(zq.Mul(c.Tensor("R")).Sum());
            Check("z_quantized", zq);
            if (!c.Array(pre + "min_encoding_indices").ToInt64().Select(x => (int)x).SequenceEqual(r.MinEncodingIndices.ToIntArray()))
                failures.Add($"{pre}min_encoding_indices differ");
            Check("commitment_loss", r.CommitmentLoss);
            Check("codebook_loss", r.CodebookLoss!);
            Check("per_sample_entropy", r.PerSampleEntropy);
            Check("avg_entropy", r.AvgEntropy);
            Check("entropy_loss", r.EntropyLoss);
            Check("quantizer_loss", r.QuantizerLoss);
            Check("scalar", scalar);
            scalar.Backward();
            Check("grad.z", z.Grad!);
            Check("grad.embedding.weight", q.Embedding.Weight.Grad!);
            Check("codebook_query.entries", q.GetCodebookEntry(c.Tensor("codebook_query.indices")));
        }
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }
}
