using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Config;

namespace MaskBit.Models.Benchmarks;

/// <summary>Model-level workloads (group "model") on the configs in configs/, random weights, synthetic inputs.
/// Their PyTorch counterparts are the rows of the same name in bench/peer/peer_models.py. Also the LFQ quantizer
/// module (group "lfq"), whose counterparts are the peer's lfq rows.</summary>
public static class ModelWorkloads
{
    public const string SmallTokenizerConfig = "configs/fashion_mnist_tokenizer.yaml";
    public const string SmallGeneratorConfig = "configs/fashion_mnist_generator.yaml";
    public const string Tokenizer12Config = "configs/tokenizer/maskbit_tokenizer_12bit.yaml";
    public const string Generator12Config = "configs/generator/maskbit_generator_12bit.yaml";

    public static IEnumerable<Workload> Build()
    {
        // Batch sizes are spelled out (not read from the configs) so that images/s counts what actually ran.
        const int smallTokenizerBatch = 32, smallGeneratorBatch = 64, sampledImages = 2;
        yield return Model("small_tokenizer_train_step", $"fashion_mnist_tokenizer: G + D step, batch {smallTokenizerBatch}, 32×32",
            () => new TokenizerStepWorkload(Load(SmallTokenizerConfig), smallTokenizerBatch), images: smallTokenizerBatch);
        yield return Model("tokenizer12_encode_decode_b1", "maskbit_tokenizer_12bit: x[1,3,256,256] → z[1,12,16,16] → x",
            () => new TokenizerReconstructStep(Load(Tokenizer12Config), batchSize: 1), images: 1);
        yield return Model("generator12_sample_step_b2_cfg", $"maskbit_generator_12bit: {sampledImages} images × (cond, uncond) = {2 * sampledImages}×257 tokens",
            () => new SamplingStep(Load(Generator12Config), sampledImages), images: sampledImages);
        // The same step as `generate --precision bf16` runs it (weights stored in bf16, bf16 autocast), for its peak
        // memory (issue 16); its peer is PyTorch's float32 step.
        yield return Model("generator12_sample_step_b2_cfg_bf16", $"maskbit_generator_12bit: {sampledImages} images × (cond, uncond), bf16 weights and autocast",
            () => new SamplingStep(Load(Generator12Config), sampledImages, DType.BFloat16), images: sampledImages, peer: [["generator12_sample_step_b2_cfg"]]);
        // The same sampling step on the small generator: small enough for ILGPU's CPU accelerator (bench/gpu-check.sh's
        // smoke run); no peer row.
        yield return Model("small_generator_sample_step_b2_cfg", $"fashion_mnist_generator: {sampledImages} images × (cond, uncond) = {2 * sampledImages}×65 tokens",
            () => new SamplingStep(Load(SmallGeneratorConfig), sampledImages), images: sampledImages, peer: []);
        yield return Model("small_generator_train_step", $"fashion_mnist_generator: batch {smallGeneratorBatch}, 8×8 tokens",
            () => new MlmStepWorkload(Load(SmallGeneratorConfig), smallGeneratorBatch), images: smallGeneratorBatch);

        // The 12-bit models' training steps, for their peak memory (issue 16's figures), with and without
        // training.activation_checkpointing; the checkpointed rows' peer is PyTorch's plain float32 step. The
        // tokenizer's perceptual term is off (its weights are not part of a benchmark; the peer replaces it by zero).
        const int generatorTrainBatch = 8, tokenizerTrainBatch = 1;
        // The bf16 rows add training.mixed_precision=bf16 (the peer stays float32, the issue's reference point).
        const string noPerceptual = "losses.perceptual_weight=0";
        foreach (string precision in new[] { "no", "bf16" })
            foreach (bool checkpointing in new[] { false, true })
            {
                string suffix = (precision == "no" ? "" : "_" + precision) + (checkpointing ? "_ckpt" : "");
                string[] settings = [$"training.activation_checkpointing={checkpointing}", $"training.mixed_precision=\"{precision}\""];
                string setting = string.Join(", ", settings);
                yield return Model($"generator12_train_step_b{generatorTrainBatch}{suffix}", $"maskbit_generator_12bit: batch {generatorTrainBatch} × 257 tokens, {setting}",
                    () => new MlmStepWorkload(Load(Generator12Config, settings), generatorTrainBatch), images: generatorTrainBatch,
                    peer: [[$"generator12_train_step_b{generatorTrainBatch}"]]);
                yield return Model($"tokenizer12_train_step_b{tokenizerTrainBatch}{suffix}", $"maskbit_tokenizer_12bit: G + D step, batch {tokenizerTrainBatch}, 256², {setting}",
                    () => new TokenizerStepWorkload(Load(Tokenizer12Config, [.. settings, noPerceptual]), tokenizerTrainBatch), images: tokenizerTrainBatch,
                    peer: [[$"tokenizer12_train_step_b{tokenizerTrainBatch}"]]);
            }

        // The generator's memory setting with AdamW's moments in bf16 as well (optimizer.params.moments_dtype).
        string[] memorySetting = ["training.activation_checkpointing=true", "training.mixed_precision=\"bf16\"", "optimizer.params.moments_dtype=bf16"];
        yield return Model($"generator12_train_step_b{generatorTrainBatch}_bf16_ckpt_bf16moments", $"maskbit_generator_12bit: batch {generatorTrainBatch} × 257 tokens, {string.Join(", ", memorySetting)}",
            () => new MlmStepWorkload(Load(Generator12Config, memorySetting), generatorTrainBatch), images: generatorTrainBatch,
            peer: [[$"generator12_train_step_b{generatorTrainBatch}"]]);

        // The LFQ quantizer module with autograd, the same work as the peer's lfq rows (the lfq kernel rows time
        // the kernels alone); FLOPs as the peer counts them (its einsum).
        foreach (int bits in new[] { 12, 18 })
            foreach (bool backward in new[] { false, true })
            {
                const int batch = 8;
                string mode = backward ? "fb" : "fwd";
                double einsum = 2.0 * batch * 256 * bits * (1 << bits);
                yield return Model($"lfq{bits}_b8_module_{mode}", $"LookupFreeQuantizer z[{batch},{bits},16,16] codebook 2^{bits}",
                    () => new LfqQuantizerStep(bits, batch, backward), group: "lfq", flops: backward ? 2 * einsum : einsum, peer: [[$"lfq{bits}_b8_{mode}"]]);
            }
    }

    private static MaskBitConfig Load(string relativePath, params string[] overrides) => MaskBitConfig.Load(RepositoryFiles.Find(relativePath), overrides);

    /// <summary>A model workload whose models live on the given device while they are built and run; its peer row
    /// has the same name unless <paramref name="peer"/> says otherwise.</summary>
    private static Workload Model(string name, string shape, Func<IModelStep> create, string group = "model", double flops = 0,
        string[][]? peer = null, int images = 0) =>
        new(name, group, shape, flops, 0, peer ?? [[name]], device =>
        {
            var step = OnDevice(device, create);
            return new PreparedWorkload(() => OnDevice(device, step.Run), []);
        }, images);

    private static T OnDevice<T>(IBackend device, Func<T> body)
    {
        var previous = Device.Default;
        Device.Default = device;
        try { return body(); }
        finally { Device.Default = previous; }
    }
}
