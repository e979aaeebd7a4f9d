using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Tokenizer;

/// <summary>Golden `lfq`: the lookup-free quantizer in train and eval mode, its losses and gradients, codebook
/// queries, clamp_log (README tolerance: scaled ≤ 1e-4).</summary>
public static class LfqGolden
{
    private const double Tol = 1e-4;

    public static LookupFreeQuantizer Build(MaskBitConfig cfg) => new(
        (int)cfg.GetInt("model.vq_model.token_size"),
        (float)cfg.GetDouble("model.vq_model.commitment_cost", 0.25),
        (float)cfg.GetDouble("model.vq_model.entropy_loss_weight", 0.1),
        (float)cfg.GetDouble("model.vq_model.entropy_loss_temperature", 0.01),
        (float)cfg.GetDouble("model.vq_model.entropy_gamma", 1.0));

    [GoldenKind("lfq", OnDevices = true)]
    public static void Run(GoldenCase c)
    {
        var cfg = MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"));
        var q = Build(cfg);
        var failures = new List<string>();
        void Check(string name, Tensor? t, double tol = Tol)
        {
            if (t == null) { failures.Add($"{name}: not computed"); return; }
            double e = Compare.ScaledError(t.ToArray(), c.Array(name).ToFloat32());
            if (!(e <= tol)) failures.Add($"{name}: scaled error {e:E2}");
        }
        void CheckInts(string name, Tensor t)
        {
            if (!c.Array(name).ToInt64().Select(v => (int)v).SequenceEqual(t.ToIntArray())) failures.Add($"{name}: integers differ");
        }

        foreach (var prefix in new[] { "", "soft." })
        {
            q.Train();
            var z = c.Tensor($"{prefix}z", requiresGrad: true);
            var (zq, r) = q.Forward(z);
            var scalar = r.QuantizerLoss.Add(zq.Mul(c.Tensor("R")).Sum());
            Check($"{prefix}z_quantized", zq);
            CheckInts($"{prefix}min_encoding_indices", r.MinEncodingIndices);
            Check($"{prefix}commitment_loss", r.CommitmentLoss);
            Check($"{prefix}per_sample_entropy", r.PerSampleEntropy);
            Check($"{prefix}avg_entropy", r.AvgEntropy);
            Check($"{prefix}entropy_loss", r.EntropyLoss);
            Check($"{prefix}quantizer_loss", r.QuantizerLoss);
            Check($"{prefix}scalar", scalar);
            Check($"{prefix}grad_commitment.z", Tape.Grad(r.CommitmentLoss, new[] { z })[0]);
            Check($"{prefix}grad_entropy.z", Tape.Grad(r.EntropyLoss, new[] { z })[0]);
            scalar.Backward();
            Check($"{prefix}grad.z", z.Grad);
        }

        q.Eval();
        var (ezq, er) = q.Forward(c.Tensor("z"));
        Check("eval.z_quantized", ezq);
        Check("eval.quantizer_loss", er.QuantizerLoss);
        Check("eval.entropy_loss", er.EntropyLoss);

        var entries = q.GetCodebookEntry(c.Tensor("codebook_query.indices"));
        Check("codebook_query.entries", entries);
        CheckInts("codebook_query.roundtrip_indices", LookupFreeQuantizer.BitsToIndices(entries));

        var x = c.Tensor("clamp_log.x", requiresGrad: true);
        var y = F.ClampLog(x);
        y.Mul(c.Tensor("clamp_log.R")).Sum().Backward();
        Check("clamp_log.y", y, 2e-6);
        Check("clamp_log.grad_x", x.Grad, 2e-6);

        foreach (var v in c.Meta.GetProperty("entropy_fn_variants").EnumerateArray())
        {
            string pre = $"entropy_fn.{v.GetProperty("name").GetString()}";
            float temperature = (float)v.GetProperty("temperature").GetDouble(), gamma = (float)v.GetProperty("gamma").GetDouble();
            var affinity = c.Tensor($"{pre}.affinity", requiresGrad: true);
            var (perSampleTerm, avgTerm) = F.EntropyLoss(affinity, temperature, gamma);
            Check($"{pre}.per_sample_entropy", perSampleTerm);
            Check($"{pre}.avg_entropy", avgTerm);
            Check($"{pre}.grad_affinity_per_sample", Tape.Grad(perSampleTerm, new[] { affinity })[0]);
            Check($"{pre}.grad_affinity_avg", Tape.Grad(avgTerm, new[] { affinity })[0]);
            Check($"{pre}.grad_affinity", Tape.Grad(perSampleTerm.Sub(avgTerm), new[] { affinity })[0]);
        }

        // The codebook buffer equals the reference's (the checkpoint loader checks the file itself).
        var codebook = q.StateDict().First(s => s.Name == "codebook").Tensor.ToArray();
        Assert.That(codebook.Length, Is.EqualTo(q.CodebookSize * q.TokenBits));

        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }
}
