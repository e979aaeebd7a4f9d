using MaskBit.Autograd.Nn;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>The models of a config with the weights of a file, through <see cref="WeightsLoader"/>: the tokenizer
/// (evaluation, reconstruction, the generator's frozen tokenizer) and the generator (sampling, conversion).</summary>
public static class PretrainedModels
{
    /// <summary>Official generator checkpoints call the LFQBert input projection `token_emb`.</summary>
    public static readonly IReadOnlyDictionary<string, string> OfficialGeneratorRenames = new Dictionary<string, string> { ["token_emb."] = "input_proj." };

    public static readonly WeightsLayout GeneratorLayout = new(["model", "generator", "mlm_model"], OfficialGeneratorRenames);

    /// <summary>Entries a tokenizer declares foreign (such as the loss weights in Taming's official checkpoint) are dropped.</summary>
    public static WeightsLayout TokenizerLayout(ImageTokenizer tokenizer) =>
        new(["model", "tokenizer", "vq_model"], ForeignPrefixes: tokenizer.ForeignCheckpointPrefixes);

    /// <summary>Loads tokenizer weights into <paramref name="tokenizer"/> (see <see cref="WeightsLoader.Load"/>).</summary>
    public static LoadedWeights LoadTokenizerWeights(ImageTokenizer tokenizer, string path, bool preferEma = true, Action<string>? warn = null) =>
        WeightsLoader.Load(tokenizer, path, TokenizerLayout(tokenizer), preferEma, warn);

    /// <summary>The tokenizer of a config in eval mode without gradients, with the weights of <paramref name="path"/>
    /// (non-strict when <paramref name="warn"/> is given).</summary>
    public static ImageTokenizer Tokenizer(MaskBitConfig config, string path, bool preferEma = true, Action<string>? log = null,
        Action<string>? warn = null)
    {
        ImageTokenizer tokenizer;
        using (SkipInitWhenStrict(strict: warn == null)) tokenizer = ImageTokenizer.FromConfig(config);
        var loaded = LoadTokenizerWeights(tokenizer, path, preferEma, warn);
        log?.Invoke($"tokenizer: {loaded}");
        tokenizer.Eval();
        tokenizer.RequiresGrad_(false);
        return tokenizer;
    }

    /// <summary>A generator for sampling: eval mode, weights from <paramref name="path"/> (the EMA weights of a
    /// training checkpoint when it has them; non-strict when <paramref name="warn"/> is given).</summary>
    public static MaskedGenerator Generator(MaskBitConfig config, string path, Action<string>? log = null, Action<string>? warn = null)
    {
        MaskedGenerator generator;
        using (SkipInitWhenStrict(strict: warn == null)) generator = new MaskedGenerator(GeneratorConfig.From(config));
        var loaded = WeightsLoader.Load(generator, path, GeneratorLayout, preferEma: true, warn);
        log?.Invoke($"generator: {loaded}");
        generator.Eval();
        generator.RequiresGrad_(false);
        return generator;
    }

    /// <summary>A strict load overwrites every parameter, so the model is built without drawing its random init
    /// (a 305M-parameter generator: ~30 s of draws); a non-strict one keeps the init of what the file lacks.</summary>
    public static IDisposable? SkipInitWhenStrict(bool strict) => strict ? Init.ShapesOnly() : null;
}
