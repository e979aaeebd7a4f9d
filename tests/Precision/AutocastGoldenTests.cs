using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Precision;

/// <summary>
/// The golden tokenizer (tokenizer_lfq) and generator (lfq_bert) cases run under autocast bf16 and fp16 on cpu and
/// ilgpu-cpu, against the reference's float32 values (the golden files). Looser tolerances than the float32 parity
/// tests, stated per dtype in <see cref="For"/>: autocast rounds every GEMM/conv/attention operand to 16 bits (relative
/// rounding u = 2⁻⁸ for bf16, 2⁻¹¹ for fp16) and a network chains tens of such ops, so outputs move by a few u relative
/// to their scale and gradients (with the incoming gradient rounded as well) by more. Measured (both devices):
/// bf16 activations ≤ 1.5e-2, losses ≤ 2.9e-4, pooled gradients ≤ 2.2e-2; fp16 2.1e-3, 2.9e-5, 2.8e-3. The limits are
/// about 3× those, fp16's about 8× tighter than bf16's as its u is. fp16 backpropagates a loss scaled by 2¹⁶ as training
/// does (unscaled, small gradients underflow in fp16: pooled error 6e-2 on the tokenizer).
/// </summary>
[NonParallelizable]
public class AutocastGoldenTests
{
    /// <summary>Scaled errors (max|Δ| / max|ref|) allowed for activations and outputs, for losses, and the pooled
    /// L2 error allowed over all gradients.</summary>
    private sealed record Limits(double Activations, double Losses, double Gradients);

    private static Limits For(DType dtype) => dtype == DType.BFloat16 ? new(5e-2, 1e-3, 7e-2) : new(6e-3, 1e-4, 1e-2);

    private static IEnumerable<TestCaseData> Cases() =>
        from device in TestDevices.Names
        from dtype in new[] { DType.BFloat16, DType.Float16 }
        select new TestCaseData(device, dtype).SetName($"{{m}}({device},{dtype})");

    private static GoldenCase Case(string name) => GoldenCases.All().First(c => c.Name == name);

    /// <summary>Collects the measured errors (printed) and the ones over their limit.</summary>
    private sealed class Errors(string what)
    {
        public readonly List<string> Failures = new();

        public void Check(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double limit)
        {
            double e = Compare.ScaledError(actual, expected);
            TestContext.Out.WriteLine($"{what} {name}: scaled error {e:E2} (limit {limit:E0})");
            if (!(e <= limit)) Failures.Add($"{name}: scaled error {e:E2} > {limit:E0}");
        }

        public void CheckPooled(string name, IEnumerable<(float[] Actual, float[] Expected)> pairs, double limit)
        {
            double num = 0, den = 0;
            foreach (var (a, b) in pairs)
                for (int i = 0; i < a.Length; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
            double e = Math.Sqrt(num / den);
            TestContext.Out.WriteLine($"{what} {name}: pooled L2 error {e:E2} (limit {limit:E0})");
            if (!(e <= limit)) Failures.Add($"{name}: pooled L2 error {e:E2} > {limit:E0}");
        }

        public void AssertNone()
        {
            if (Failures.Count > 0) Assert.Fail($"{what}:\n  " + string.Join("\n  ", Failures));
        }
    }

    private static IDisposable OnDevice(string device)
    {
        var previous = Device.Default;
        Device.Default = TestDevices.GetForModels(device);
        return new Restore(() => Device.Default = previous);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    /// <summary>ConvVQModel with LFQ under autocast: the encoder's latents; the tokens (the latents' signs, so a latent
    /// within rounding of 0 may flip: at most 1% of the bits may differ); the decoder, its reconstruction loss and its
    /// parameters' gradients on the reference's quantized latents (one flipped bit moves a whole latent, so the decoder
    /// is compared on the same input).</summary>
    [TestCaseSource(nameof(Cases))]
    public void TokenizerUnderAutocast(string device, DType dtype)
    {
        var c = Case("tokenizer_lfq");
        var limits = For(dtype);
        var errors = new Errors($"tokenizer {device} {dtype}");
        using var _ = OnDevice(device);
        var model = new ConvVQModel(TokenizerConfig.From(MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"))));
        ModuleCheckpoint.LoadInto(model, Path.Combine(c.Dir, "model.bin"));
        model.Train();
        Tensor z, indices, decoded, reconstruction;
        using (Autocast.Enable(dtype))
        {
            z = model.Encoder.Forward(c.Tensor("input"));
            indices = model.QuantizeLatents(z).Result.MinEncodingIndices;
            decoded = model.Decode(c.Tensor("z_quantized"));
            reconstruction = F.MseLoss(decoded, c.Tensor("target"));
        }
        errors.Check("z", z.ToArray(), c.Array("z").ToFloat32(), limits.Activations);
        var expectedTokens = c.Array("min_encoding_indices").ToInt64();
        var actualTokens = indices.ToIntArray();
        int differing = 0;
        for (int i = 0; i < actualTokens.Length; i++) differing += System.Numerics.BitOperations.PopCount((uint)(actualTokens[i] ^ (int)expectedTokens[i]));
        double flipped = differing / (double)(actualTokens.Length * model.Config.TokenSize);
        TestContext.Out.WriteLine($"tokenizer {device} {dtype} token bits flipped: {flipped:P3}");
        if (flipped > 0.01) errors.Failures.Add($"{flipped:P2} of the token bits differ");
        errors.Check("decoded", decoded.ToArray(), c.Array("decoded").ToFloat32(), limits.Activations);
        errors.Check("reconstruction_loss", reconstruction.ToArray(), c.Array("reconstruction_loss").ToFloat32(), limits.Losses);

        Backward(reconstruction, dtype);
        var decoderGradients = model.NamedParameters().Where(p => p.Name.StartsWith("decoder.", StringComparison.Ordinal));
        errors.CheckPooled("decoder gradients", Gradients(c, decoderGradients, dtype), limits.Gradients);
        errors.AssertNone();
    }

    /// <summary>fp16's backward as training runs it: the loss scaled by GradScaler's initial 2¹⁶ so that small
    /// gradients do not underflow in 16 bits (the gradients are unscaled in <see cref="Gradients"/>).</summary>
    private static void Backward(Tensor loss, DType dtype) =>
        (dtype == DType.Float16 ? loss.MulScalar((float)MixedPrecision.InitialScale) : loss).Backward();

    private static IEnumerable<(float[] Actual, float[] Expected)> Gradients(GoldenCase c, IEnumerable<(string Name, Tensor Tensor)> parameters, DType dtype)
    {
        float unscale = dtype == DType.Float16 ? (float)(1 / MixedPrecision.InitialScale) : 1f;
        return parameters.Select(p => ((p.Tensor.Grad?.ToArray() ?? new float[p.Tensor.Numel]).Select(g => g * unscale).ToArray(),
            c.Array($"grad.{p.Name}").ToFloat32()));
    }

    /// <summary>LFQBert: logits, the MLM loss and every gradient under autocast.</summary>
    [TestCaseSource(nameof(Cases))]
    public void GeneratorUnderAutocast(string device, DType dtype)
    {
        var c = Case("lfq_bert");
        var limits = For(dtype);
        var errors = new Errors($"generator {device} {dtype}");
        using var _ = OnDevice(device);
        var cfg = MaskBitConfig.Load(Path.Combine(c.Dir, "config.yaml"));
        var model = new MaskedGenerator(GeneratorConfig.From(cfg));
        ModuleCheckpoint.LoadInto(model, Path.Combine(c.Dir, "model.bin"));
        model.Train();
        var drop = c.Array("drop_label_mask").ToInt64().Select(v => v != 0).ToArray();
        var targets = c.Tensor("targets");
        var mask = Tensor.FromInts(c.Array("mask").ToInt64().Select(v => v != 0 ? 1 : 0).ToArray(), targets.Shape);
        Tensor logits, loss;
        using (Autocast.Enable(dtype))
        {
            logits = model.Forward(c.Tensor("img_tokens"), c.Tensor("class_labels"), drop);
            var mlm = new MlmLoss((float)cfg.GetDouble("losses.mlm.label_smoothing", 0.1), cfg.GetBool("losses.mlm.sum_splits", false));
            loss = mlm.Forward(logits, targets, mask).Loss;
        }
        errors.Check("logits", logits.ToArray(), c.Array("logits").ToFloat32(), limits.Activations);
        errors.Check("loss", loss.ToArray(), c.Array("loss").ToFloat32(), limits.Losses);
        Backward(loss, dtype);
        errors.CheckPooled("gradients", Gradients(c, model.NamedParameters().Select(p => (p.Name, p.Tensor)), dtype), limits.Gradients);
        errors.AssertNone();
    }
}
