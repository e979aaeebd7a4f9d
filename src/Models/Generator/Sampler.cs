using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Generator;

/// <summary>How classifier-free guidance grows over the steps: constant, linear in i/S, or (1 − cos(π·(i/S)^p))/2.</summary>
public enum GuidanceAnnealing { None, Linear, Cosine }

/// <summary>The knobs of the reference sampler (modeling/modules/sampling.py), with its defaults. Scalars are
/// doubles because the reference computes them as Python floats and rounds to float32 where they meet a tensor.</summary>
public sealed record SamplerOptions
{
    public int NumSteps { get; init; } = 12;
    /// <summary>0 disables guidance: one conditional forward per step.</summary>
    public double GuidanceScale { get; init; } = 3.0;
    public GuidanceAnnealing GuidanceAnnealing { get; init; } = GuidanceAnnealing.None;
    /// <summary>Exponent of the cosine guidance annealing.</summary>
    public double ScalePow { get; init; } = 4.0;
    /// <summary>Softmax temperature; ignored when <see cref="UseSamplingAnnealing"/> is set.</summary>
    public double SoftmaxTemperature { get; init; } = 1.0;
    /// <summary>Temperature 0.5 + 0.8·(1 − progress) instead of a fixed one.</summary>
    public bool UseSamplingAnnealing { get; init; }
    /// <summary>Scale of the Gumbel noise added to the log-confidences (fading linearly to 0 at the last step).</summary>
    public double RandomizeTemperature { get; init; } = 4.5;
    public MaskSchedule MaskSchedule { get; init; } = MaskSchedule.Linear;

    /// <summary>The generation settings of a config's model.mlm_model section (gen_mask_schedule_strategy etc.).</summary>
    public static SamplerOptions FromConfig(MaskBitConfig c)
    {
        const string m = "model.mlm_model.";
        var d = new SamplerOptions();
        return new SamplerOptions
        {
            NumSteps = (int)c.GetInt(m + "num_steps", d.NumSteps),
            GuidanceScale = c.GetDouble(m + "guidance_scale", d.GuidanceScale),
            GuidanceAnnealing = ParseAnnealing(c.GetString(m + "guidance_annealing", "none")),
            ScalePow = c.GetDouble(m + "scale_pow", d.ScalePow),
            SoftmaxTemperature = c.GetDouble(m + "softmax_temperature", d.SoftmaxTemperature),
            UseSamplingAnnealing = c.GetBool(m + "use_sampling_annealing", d.UseSamplingAnnealing),
            RandomizeTemperature = c.GetDouble(m + "randomize_temperature", d.RandomizeTemperature),
            MaskSchedule = Masking.ParseSchedule(c.GetString(m + "gen_mask_schedule_strategy", "linear")),
        };
    }

    public static GuidanceAnnealing ParseAnnealing(string name) => name switch
    {
        "none" => GuidanceAnnealing.None,
        "linear" => GuidanceAnnealing.Linear,
        "cosine" => GuidanceAnnealing.Cosine,
        _ => throw new ArgumentException($"unknown guidance annealing '{name}' (none, linear, cosine)"),
    };
}

/// <summary>
/// Everything one sampling step computed, for inspection. Token-shaped arrays are (B, n, m) row-major;
/// logits and probabilities (B, n, m, C).
/// </summary>
public sealed class SamplerStep
{
    public required int Step { get; init; }
    public required double Progress { get; init; }
    public required int[] InputMaskedTokens { get; init; }
    public required bool[] InputMask { get; init; }
    /// <summary>The conditional / unconditional halves of a guided step's forward (null when unguided).</summary>
    public float[]? LogitsCond { get; init; }
    public float[]? LogitsUncond { get; init; }
    /// <summary>The step's guidance scale (null when unguided).</summary>
    public float? GuidanceScale { get; init; }
    public required float[] Logits { get; init; }
    public required float Temperature { get; init; }
    public required float[] Probabilities { get; init; }
    public required float[] CategoricalU { get; init; }
    public required int[] SampledTokens { get; init; }
    public required int[] PredictedTokens { get; init; }
    public required float[] Gumbel { get; init; }
    public required float[] Noise { get; init; }
    public required float[] Confidence { get; init; }
    public required float MaskRatio { get; init; }
    public required float MaskLen { get; init; }
    public required int NumMasked { get; init; }
    public required int NumTokensToMask { get; init; }
    public required float[] Threshold { get; init; }
    public required int[] MaskedTokens { get; init; }
    public required bool[] Mask { get; init; }
}

/// <summary>Final group tokens (B, n, m) and combined tokens (B, n), both Int32, and the decoded images
/// (B, 3, H, W), not clamped.</summary>
public sealed record SampleResult(Tensor Tokens, Tensor CombinedTokens, Tensor Images);

/// <summary>
/// The reference MaskGIT-style sampler: start fully masked; each step predicts every group (with classifier-free
/// guidance), samples a value for each masked group, scores the new values by log-probability plus fading Gumbel
/// noise and re-masks the least confident ones along the schedule; the last step's prediction is combined into
/// tokens and decoded. The forwards run on the models' device without a tape, each step inside its own
/// <see cref="TensorScope"/>; guidance and softmax also run there. Categorical sampling, confidences and the
/// re-masking thresholds are computed on the host for now (a few values per token; a device kernel for them
/// would save one download of the probabilities per step).
/// </summary>
public sealed class Sampler
{
    private readonly MaskedGenerator _generator;
    private readonly ImageTokenizer _tokenizer;

    public MaskedGenerator Generator => _generator;
    public ImageTokenizer Tokenizer => _tokenizer;

    public Sampler(MaskedGenerator generator, ImageTokenizer tokenizer)
    {
        var g = generator.Config;
        if (tokenizer.CodebookSize != g.CodebookSize)
            throw new ArgumentException($"tokenizer codebook size {tokenizer.CodebookSize} differs from the generator's {g.CodebookSize}");
        _generator = generator;
        _tokenizer = tokenizer;
    }

    /// <summary>Samples one image per label. <paramref name="random"/> provides, per step, one categorical uniform
    /// and then one Gumbel value per group (B, n, m); <paramref name="onStep"/> sees every intermediate.</summary>
    public SampleResult Sample(IReadOnlyList<int> labels, SamplerOptions options, IRandomSource random, Action<SamplerStep>? onStep = null)
    {
        if (options.NumSteps < 1) throw new ArgumentOutOfRangeException(nameof(options), $"num_steps {options.NumSteps} must be at least 1");
        var cfg = _generator.Config;
        int batch = labels.Count, perSample = cfg.SeqLen * cfg.Splits, groups = batch * perSample;
        int classes = cfg.EffectiveCodebookSize, maskToken = cfg.MaskToken, steps = options.NumSteps;
        _generator.Eval();
        _tokenizer.Eval();
        using var noGrad = Tape.NoGrad();

        var maskedTokens = Enumerable.Repeat(maskToken, groups).ToArray();
        var mask = Enumerable.Repeat(true, groups).ToArray();
        var predicted = new int[groups];
        for (int i = 0; i < steps; i++)
        {
            double progress = (i + 1) / (double)steps;
            using var scope = TensorScope.Begin();
            var logits = Logits(labels, maskedTokens, options, i, onStep != null, out var cond, out var uncond, out var scale);
            // torch divides by the Python-float temperature rounded to float32.
            float temperature = (float)(options.UseSamplingAnnealing ? 0.5 + 0.8 * (1 - progress) : options.SoftmaxTemperature);
            var probabilities = logits.Div(Tensor.Scalar(temperature, logits.Device)).Softmax(-1).ToArray();

            var categoricalU = new float[groups];
            random.CategoricalUniform(categoricalU);
            var sampled = new int[groups];
            for (int g = 0; g < groups; g++) sampled[g] = InverseCdf(probabilities.AsSpan(g * classes, classes), categoricalU[g]);

            int numMasked = mask.AsSpan(0, perSample).Count(true);   // sample 0 sets the count for the whole batch
            for (int g = 0; g < groups; g++) predicted[g] = mask[g] ? sampled[g] : maskedTokens[g];

            // Gumbel values are drawn for every group, fixed ones included (their confidence stays +inf).
            var gumbel = new float[groups];
            random.Gumbel(gumbel);
            float noiseScale = (float)options.RandomizeTemperature, fade = (float)(1 - progress);
            var noise = new float[groups];
            var confidence = new float[groups];
            for (int g = 0; g < groups; g++)
            {
                noise[g] = gumbel[g] * noiseScale * fade;
                confidence[g] = mask[g] ? MathF.Log(probabilities[g * classes + predicted[g]]) + noise[g] : float.PositiveInfinity;
            }

            float maskRatio = Masking.GetMaskingRatio(progress, options.MaskSchedule);
            var (maskLen, toMask) = Masking.TokensToMask(maskRatio, perSample, numMasked);
            // Python indexing of the sorted confidences: a count ≤ 0 (see TokensToMask) wraps to the end.
            int rank = toMask - 1 < 0 ? toMask - 1 + perSample : toMask - 1;
            var threshold = new float[batch];
            var inputMaskedTokens = onStep != null ? (int[])maskedTokens.Clone() : null;
            var inputMask = onStep != null ? (bool[])mask.Clone() : null;
            var sorted = new float[perSample];
            for (int b = 0; b < batch; b++)
            {
                var row = confidence.AsSpan(b * perSample, perSample);
                row.CopyTo(sorted);
                Array.Sort(sorted);
                threshold[b] = sorted[rank];
                for (int j = 0; j < perSample; j++)
                {
                    int g = b * perSample + j;
                    mask[g] = row[j] <= threshold[b];   // ties re-mask every equal confidence
                    maskedTokens[g] = mask[g] ? maskToken : predicted[g];
                }
            }

            onStep?.Invoke(new SamplerStep
            {
                Step = i, Progress = progress, InputMaskedTokens = inputMaskedTokens!, InputMask = inputMask!,
                LogitsCond = cond, LogitsUncond = uncond, GuidanceScale = scale, Logits = logits.ToArray(),
                Temperature = temperature, Probabilities = probabilities, CategoricalU = categoricalU,
                SampledTokens = sampled, PredictedTokens = (int[])predicted.Clone(), Gumbel = gumbel, Noise = noise,
                Confidence = confidence, MaskRatio = maskRatio, MaskLen = maskLen, NumMasked = numMasked,
                NumTokensToMask = toMask, Threshold = threshold, MaskedTokens = (int[])maskedTokens.Clone(), Mask = (bool[])mask.Clone(),
            });
        }

        // The last step's re-masking is computed but unused: every group of the last prediction is kept.
        var device = _tokenizer.LastLayer.Device;
        var tokens = Tensor.FromInts(predicted, new[] { batch, cfg.SeqLen, cfg.Splits }, device);
        var combined = Factorization.Combine(tokens, cfg.CodebookSize, cfg.Splits);
        using var decodeScope = TensorScope.Begin();
        var images = decodeScope.Keep(_tokenizer.DecodeTokens(combined));
        return new SampleResult(tokens, combined, images);
    }

    /// <summary>The step's logits (B, n, m, C) on the device: the conditional forward, or with guidance one
    /// forward on [tokens; tokens] with the second half's labels dropped and cond + scale·(cond − uncond).</summary>
    private Tensor Logits(IReadOnlyList<int> labels, int[] maskedTokens, SamplerOptions options, int step, bool keepHalves,
        out float[]? cond, out float[]? uncond, out float? scale)
    {
        var cfg = _generator.Config;
        var device = _generator.PosEmb.Device;
        int batch = labels.Count;
        cond = uncond = null;
        scale = null;
        if (options.GuidanceScale == 0)
        {
            var tokens = Tensor.FromInts(maskedTokens, new[] { batch, cfg.SeqLen, cfg.Splits }, device);
            // Unguided sampling is conditional: no label is dropped.
            return _generator.Forward(tokens, Tensor.FromInts(labels.ToArray(), new[] { batch }, device), new bool[batch]);
        }

        var doubled = Tensor.FromInts(maskedTokens.Concat(maskedTokens).ToArray(), new[] { 2 * batch, cfg.SeqLen, cfg.Splits }, device);
        var doubledLabels = Tensor.FromInts(labels.Concat(labels).ToArray(), new[] { 2 * batch }, device);
        var dropSecondHalf = Enumerable.Range(0, 2 * batch).Select(b => b >= batch).ToArray();
        var both = _generator.Forward(doubled, doubledLabels, dropSecondHalf);
        var withClass = both.Narrow(0, 0, batch);
        var withoutClass = both.Narrow(0, batch, batch);
        scale = GuidanceScale(options, step);
        if (keepHalves) { cond = withClass.ToArray(); uncond = withoutClass.ToArray(); }
        return withClass.Add(withClass.Sub(withoutClass).MulScalar(scale.Value));
    }

    /// <summary>guidance_scale · scale_step, with step index i (not i + 1): annealed guidance is off at step 0.
    /// The cosine form is evaluated in float32 as the reference's tensor arithmetic is.</summary>
    public static float GuidanceScale(SamplerOptions options, int step)
    {
        double fraction = step / (double)options.NumSteps;
        switch (options.GuidanceAnnealing)
        {
            case GuidanceAnnealing.None: return (float)options.GuidanceScale;
            case GuidanceAnnealing.Linear: return (float)(options.GuidanceScale * fraction);
            default:
                float powered = MathF.Pow((float)fraction, (float)options.ScalePow);
                float cosine = (float)Math.Cos(powered * (float)Math.PI);
                return (float)options.GuidanceScale * ((1f - cosine) / 2f);
        }
    }

    /// <summary>The categorical draw for uniform <paramref name="u"/>: the first k with u &lt; cdf_k, the CDF
    /// normalised by the total (accumulated in double); the last category with mass if rounding leaves u above it.</summary>
    public static int InverseCdf(ReadOnlySpan<float> probabilities, float u)
    {
        double total = 0;
        foreach (var p in probabilities) total += p;
        double threshold = u * total, cumulative = 0;
        int last = 0;
        for (int k = 0; k < probabilities.Length; k++)
        {
            if (probabilities[k] <= 0) continue;
            cumulative += probabilities[k];
            last = k;
            if (threshold < cumulative) return k;
        }
        return last;
    }
}
