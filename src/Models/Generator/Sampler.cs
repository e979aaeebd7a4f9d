using MaskBit.Autograd;
using MaskBit.Kernels;
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
/// tokens and decoded. Everything per step runs on the models' device without a tape, inside its own
/// <see cref="TensorScope"/>: the forwards, guidance, softmax, the categorical draws, confidences and re-masking
/// (<see cref="F.SampleMaskedGroups"/>, <see cref="F.RemaskLeastConfident"/>), and at the end the combination of
/// the groups into tokens. A run uploads its labels and starting tokens once; a step's random draws (two floats per
/// group) come from the <see cref="IRandomSource"/>'s tensor overloads — made on the device by a
/// <see cref="SeededRandomSource"/>, uploaded by a replay source — and a step downloads nothing unless
/// <c>onStep</c> asks to see the intermediates.
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
    /// and then one Gumbel value per group (B, n, m); <paramref name="onStep"/> sees every intermediate (downloaded
    /// from the device for it).</summary>
    public SampleResult Sample(IReadOnlyList<int> labels, SamplerOptions options, IRandomSource random, Action<SamplerStep>? onStep = null)
    {
        if (options.NumSteps < 1) throw new ArgumentOutOfRangeException(nameof(options), $"num_steps {options.NumSteps} must be at least 1");
        var cfg = _generator.Config;
        int batch = labels.Count, perSample = cfg.SeqLen * cfg.Splits, groups = batch * perSample;
        int maskToken = cfg.MaskToken, steps = options.NumSteps;
        var device = _generator.PosEmb.Device;
        var tokenShape = new[] { batch, cfg.SeqLen, cfg.Splits };
        _generator.Eval();
        _tokenizer.Eval();
        using var noGrad = Tape.NoGrad();

        Tensor predicted;
        using (var run = TensorScope.Begin())
        {
            // Carried from step to step; each step's are kept out of its scope into this one.
            var maskedTokens = Tensor.FromInts(Enumerable.Repeat(maskToken, groups).ToArray(), tokenShape, device);
            var mask = Tensor.FromInts(Enumerable.Repeat(1, groups).ToArray(), tokenShape, device);
            predicted = maskedTokens;
            var forward = new GuidedForward(_generator, labels, options, device);
            for (int i = 0; i < steps; i++)
            {
                double progress = (i + 1) / (double)steps;
                using var scope = TensorScope.Begin();
                var logits = forward.Logits(maskedTokens, i, onStep != null, out var halves);
                // torch divides by the Python-float temperature rounded to float32.
                float temperature = (float)(options.UseSamplingAnnealing ? 0.5 + 0.8 * (1 - progress) : options.SoftmaxTemperature);
                var probabilities = logits.Div(Tensor.Scalar(temperature, device)).Softmax(-1);

                var uniform = random.CategoricalUniform(tokenShape, device);
                var gumbel = random.Gumbel(tokenShape, device);   // drawn for every group, fixed ones included (their confidence stays +inf)
                float noiseScale = (float)options.RandomizeTemperature, fade = (float)(1 - progress);
                var (sampled, stepPredicted, confidence) = F.SampleMaskedGroups(probabilities, uniform, gumbel, mask, maskedTokens, noiseScale, fade);

                float maskRatio = Masking.GetMaskingRatio(progress, options.MaskSchedule);
                float maskLen = Masking.MaskLen(maskRatio, perSample);
                var (nextTokens, nextMask, threshold, counts) = F.RemaskLeastConfident(confidence, stepPredicted, mask, maskLen, maskToken);

                if (onStep != null)
                {
                    var seen = counts.ToIntArray();
                    var gumbelValues = gumbel.ToArray();
                    onStep(new SamplerStep
                    {
                        Step = i, Progress = progress, InputMaskedTokens = maskedTokens.ToIntArray(), InputMask = Flags(mask),
                        LogitsCond = halves?.Cond, LogitsUncond = halves?.Uncond, GuidanceScale = halves?.Scale,
                        Logits = logits.ToArray(), Temperature = temperature, Probabilities = probabilities.ToArray(),
                        CategoricalU = uniform.ToArray(), SampledTokens = sampled.ToIntArray(),
                        PredictedTokens = stepPredicted.ToIntArray(), Gumbel = gumbelValues,
                        Noise = gumbelValues.Select(g => SamplerMath.Noise(g, noiseScale, fade)).ToArray(), Confidence = confidence.ToArray(),
                        MaskRatio = maskRatio, MaskLen = maskLen, NumMasked = seen[0], NumTokensToMask = seen[1],
                        Threshold = threshold.ToArray(), MaskedTokens = nextTokens.ToIntArray(), Mask = Flags(nextMask),
                    });
                }
                predicted = scope.Keep(stepPredicted);
                maskedTokens = scope.Keep(nextTokens);
                mask = scope.Keep(nextMask);
            }
            // The last step's re-masking is computed but unused: every group of the last prediction is kept.
            run.Keep(predicted);
        }

        var tokens = predicted.To(_tokenizer.LastLayer.Device);
        var combined = Factorization.Combine(tokens, cfg.CodebookSize, cfg.Splits);
        using var decodeScope = TensorScope.Begin();
        var images = decodeScope.Keep(_tokenizer.DecodeTokens(combined));
        return new SampleResult(tokens, combined, images);
    }

    private static bool[] Flags(Tensor mask) => mask.ToIntArray().Select(m => m != 0).ToArray();

    /// <summary>The conditional / unconditional logits of a guided step and its scale, for inspection.</summary>
    private sealed record GuidanceHalves(float[] Cond, float[] Uncond, float Scale);

    /// <summary>One step's logits (B, n, m, C) on the device: the conditional forward, or with guidance one forward
    /// on [tokens; tokens] with the second half's labels dropped and cond + scale·(cond − uncond).</summary>
    private sealed class GuidedForward
    {
        private readonly MaskedGenerator _generator;
        private readonly SamplerOptions _options;
        private readonly int _batch;
        private readonly Tensor _labels;

        /// <summary>Uploads the labels once (in the caller's scope) for every step.</summary>
        public GuidedForward(MaskedGenerator generator, IReadOnlyList<int> labels, SamplerOptions options, IBackend device)
        {
            _generator = generator;
            _options = options;
            _batch = labels.Count;
            bool guided = options.GuidanceScale != 0;
            // Unguided sampling is conditional: no label is dropped.
            var dropLabels = Enumerable.Range(0, guided ? 2 * _batch : _batch).Select(b => b >= _batch).ToArray();
            _labels = generator.EffectiveLabels(guided ? labels.Concat(labels).ToArray() : labels.ToArray(), dropLabels, device);
        }

        public Tensor Logits(Tensor maskedTokens, int step, bool inspect, out GuidanceHalves? halves)
        {
            halves = null;
            if (_options.GuidanceScale == 0) return _generator.ForwardEffective(maskedTokens, _labels);

            var both = _generator.ForwardEffective(Tensor.Cat(new[] { maskedTokens, maskedTokens }, 0), _labels);
            var withClass = both.Narrow(0, 0, _batch);
            var withoutClass = both.Narrow(0, _batch, _batch);
            float scale = GuidanceScale(_options, step);
            if (inspect) halves = new GuidanceHalves(withClass.ToArray(), withoutClass.ToArray(), scale);
            return withClass.Add(withClass.Sub(withoutClass).MulScalar(scale));
        }
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
}
