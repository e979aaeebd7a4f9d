using System.Text.Json;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Generator;

/// <summary>Golden `sampler`: every run of case.json replayed from the stored categorical uniforms and Gumbel
/// values, every per-step intermediate checked (tokens, masks and counts exact; logits and probabilities
/// |Δ| ≤ 1e-4; noise, confidence and thresholds with the same +inf pattern and |Δ| ≤ 1e-4), then the final and
/// combined tokens (exact) and the decoded image (|Δ| ≤ 1e-4). On a test device only the first run with guidance.</summary>
public static class SamplerGolden
{
    [GoldenKind("sampler", OnDevices = true)]
    public static void Run(GoldenCase c)
    {
        var (sampler, config) = Load(c.Dir);
        var checks = new GoldenChecks(c);
        var runs = c.Json.GetProperty("runs").EnumerateArray().ToList();
        if (SamplerOptions.FromConfig(config) != Options(runs[0]))
            checks.Fail("config.yaml's sampling settings do not read as the first run's");

        // On a test device, one run with guidance (conditional and unconditional passes) stands for all.
        foreach (var run in GoldenDevice.IsCpu ? runs : runs.Where(r => r.GetProperty("guidance_scale").GetDouble() > 0).Take(1))
        {
            string p = run.GetProperty("prefix").GetString()!;
            var options = Options(run);
            var g = sampler.Generator.Config;
            if (run.GetProperty("mask_token").GetInt32() != g.MaskToken || run.GetProperty("codebook_splits").GetInt32() != g.Splits
                || run.GetProperty("codebook_size").GetInt32() != g.CodebookSize || Math.Pow(run.GetProperty("patch_size").GetInt32(), 2) != g.SeqLen)
                checks.Fail($"{p}: mask token, splits, codebook size or token grid differ from the models'");
            var labels = c.Array($"{p}.labels").ToInt32();
            var random = new ReplayRandomSource();
            for (int i = 0; i < options.NumSteps; i++)
            {
                random.CategoricalUniforms.Enqueue(c.Array($"{p}.step{i}.categorical_u").ToFloat32());
                random.Gumbels.Enqueue(c.Array($"{p}.step{i}.gumbel").ToFloat32());
            }
            int stepsSeen = 0;
            var result = sampler.Sample(labels, options, random, step => { CheckStep(checks, $"{p}.step{step.Step}", step); stepsSeen++; });
            if (stepsSeen != options.NumSteps) checks.Fail($"{p}: {stepsSeen} steps reported, expected {options.NumSteps}");
            if (!random.Exhausted) checks.Fail($"{p}: not every stored draw was consumed");
            checks.Exact($"{p}.labels", labels);
            checks.Exact($"{p}.tokens", result.Tokens.ToIntArray());
            checks.Exact($"{p}.combined_tokens", result.CombinedTokens.ToIntArray());
            checks.Close($"{p}.image", result.Images.ToArray(), 1e-4);
        }
        checks.AssertAll();
    }

    private static void CheckStep(GoldenChecks checks, string s, SamplerStep step)
    {
        checks.Exact($"{s}.input_masked_tokens", step.InputMaskedTokens);
        checks.Exact($"{s}.input_mask", step.InputMask);
        if (step.LogitsCond != null) checks.Close($"{s}.logits_cond", step.LogitsCond, 1e-4);
        if (step.LogitsUncond != null) checks.Close($"{s}.logits_uncond", step.LogitsUncond, 1e-4);
        if (step.GuidanceScale is float scale) checks.Close($"{s}.guidance_scale_effective", scale, 1e-6);
        checks.Close($"{s}.logits", step.Logits, 1e-4);
        checks.Close($"{s}.softmax_temperature", step.Temperature, 0);
        checks.Close($"{s}.probabilities", step.Probabilities, 1e-4);
        checks.Exact($"{s}.sampled_tokens", step.SampledTokens);
        checks.Exact($"{s}.predicted_tokens", step.PredictedTokens);
        checks.Close($"{s}.noise", step.Noise, 1e-4);
        checks.Close($"{s}.confidence", step.Confidence, 1e-4);
        checks.Close($"{s}.mask_ratio", step.MaskRatio, 1.2e-7);
        checks.Close($"{s}.mask_len", step.MaskLen, 0);
        checks.Exact($"{s}.num_masked", new[] { step.NumMasked });
        checks.Exact($"{s}.num_tokens_to_mask", new[] { step.NumTokensToMask });
        checks.Close($"{s}.threshold", step.Threshold, 1e-4);
        checks.Exact($"{s}.masked_tokens", step.MaskedTokens);
        checks.Exact($"{s}.mask", step.Mask);
    }

    /// <summary>The generator and tokenizer of a sampler case folder, built from its config.yaml.</summary>
    public static (Sampler Sampler, MaskBitConfig Config) Load(string dir)
    {
        var config = MaskBitConfig.Load(Path.Combine(dir, "config.yaml"));
        var generator = new MaskedGenerator(GeneratorConfig.From(config));
        ModuleCheckpoint.LoadInto(generator, Path.Combine(dir, "model.bin"));
        var tokenizer = new ConvVQModel(TokenizerConfig.From(config));
        ModuleCheckpoint.LoadInto(tokenizer, Path.Combine(dir, "tokenizer.bin"));
        return (new Sampler(generator, tokenizer), config);
    }

    private static SamplerOptions Options(JsonElement run) => new()
    {
        NumSteps = run.GetProperty("num_steps").GetInt32(),
        GuidanceScale = run.GetProperty("guidance_scale").GetDouble(),
        GuidanceAnnealing = SamplerOptions.ParseAnnealing(run.GetProperty("guidance_annealing").GetString()!),
        ScalePow = run.GetProperty("scale_pow").GetDouble(),
        SoftmaxTemperature = run.GetProperty("softmax_temperature").GetDouble(),
        UseSamplingAnnealing = run.GetProperty("use_sampling_annealing").GetBoolean(),
        RandomizeTemperature = run.GetProperty("randomize_temperature").GetDouble(),
        MaskSchedule = Masking.ParseSchedule(run.GetProperty("mask_schedule_strategy").GetString()!),
    };
}
