using System.Globalization;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Config;

public enum ConfigType { Int, Float, Bool, String, IntList, FloatList }

/// <summary>What a key accepts: its type and, for numbers, a range. Every number must be finite. A bare
/// <see cref="ConfigType"/> converts to a spec of any value of that type (integers within int32).</summary>
public sealed record KeySpec(ConfigType Type, double Min, double Max, bool MinExclusive = false, bool MaxExclusive = false, int MinCount = 1)
{
    public static implicit operator KeySpec(ConfigType type) => type is ConfigType.Float or ConfigType.FloatList
        ? new(type, double.NegativeInfinity, double.PositiveInfinity)
        : new(type, int.MinValue, int.MaxValue);

    /// <summary>The allowed values in words, e.g. "an integer in [1, 64]", "a number in [0, 1)", "a number > 0".</summary>
    public string Allowed
    {
        get
        {
            string what = Type switch { ConfigType.Int => "an integer", ConfigType.IntList => "a list of integers", ConfigType.FloatList => "a list of numbers", _ => "a number" };
            string range = (double.IsFinite(Min) && Min > int.MinValue, double.IsFinite(Max) && Max < int.MaxValue) switch
            {
                (true, true) => $" in {(MinExclusive ? '(' : '[')}{Format(Min)}, {Format(Max)}{(MaxExclusive ? ')' : ']')}",
                (true, false) => $" {(MinExclusive ? ">" : "≥")} {Format(Min)}{(Type is ConfigType.Int or ConfigType.IntList && Max <= int.MaxValue ? $" and ≤ {Format(Max)}" : "")}",
                (false, true) => $" {(MaxExclusive ? "<" : "≤")} {Format(Max)}",
                _ => Type is ConfigType.Int or ConfigType.IntList ? $" in [{Format(Min)}, {Format(Max)}]" : " (finite)",
            };
            return Type is ConfigType.IntList or ConfigType.FloatList ? $"{what}, each{range}" : what + range;
        }
    }

    private static string Format(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Null when the (correctly typed) node is allowed, else what is wrong with it.</summary>
    public string? Check(ConfigNode node)
    {
        if (node is ConfigList list)
        {
            if (list.Items.Count < MinCount) return $"is an empty list; allowed: {Allowed}, at least {MinCount}";
            foreach (var item in list.Items)
                if (!InRange(((ConfigScalar)item).Value)) return $"holds {item} (at {item.Source}); allowed: {Allowed}";
            return null;
        }
        return node is ConfigScalar { Value: long or double } s && !InRange(s.Value) ? $"is {s}; allowed: {Allowed}" : null;
    }

    private bool InRange(object? value)
    {
        double v = value switch { long l => l, double d => d, _ => double.NaN };
        if (value is not (long or double)) return true;
        return double.IsFinite(v) && (MinExclusive ? v > Min : v >= Min) && (MaxExclusive ? v < Max : v <= Max);
    }
}

/// <summary>Every key the original MaskBit configs (and this port) use, with its type and allowed range, and the
/// relations between keys. A key not listed here is a typo or an unsupported option, and loading fails naming it;
/// a value out of range or breaking a relation fails naming the key, its file and line, the value and what is
/// allowed. To add a key, add it to its section below (a bare <see cref="ConfigType"/> allows any value of that
/// type; <see cref="Int"/>, <see cref="Float"/> and <see cref="IntList"/> give a range).</summary>
public static class ConfigSchema
{
    private const int MaxChannels = 8192;
    private const int MaxResolution = 4096;
    /// <summary>A lookup-free codebook is every sign pattern of token_size bits and is materialised (2^bits × bits
    /// floats, as in the reference): 20 bits is 80 MB; the paper goes to 18.</summary>
    public const int MaxLookupFreeBits = 20;

    private static KeySpec Int(long min, long max = int.MaxValue) => new(ConfigType.Int, min, max);
    private static KeySpec Float(double min, double max = double.PositiveInfinity, bool minExclusive = false, bool maxExclusive = false) =>
        new(ConfigType.Float, min, max, minExclusive, maxExclusive);
    private static KeySpec IntList(long min, long max, int minCount = 1) => new(ConfigType.IntList, min, max, MinCount: minCount);

    public static readonly IReadOnlyDictionary<string, KeySpec> Specs = Build(
        ("experiment", new (string, KeySpec)[]
        {
            ("project", ConfigType.String), ("name", ConfigType.String), ("output_dir", ConfigType.String),
            ("logging_dir", ConfigType.String), ("max_train_examples", Int(1, long.MaxValue)), ("save_every", Int(0, long.MaxValue)),
            ("eval_every", Int(0, long.MaxValue)), ("generate_every", Int(0, long.MaxValue)), ("log_every", Int(1, long.MaxValue)),
            ("log_grad_norm_every", Int(0, long.MaxValue)), ("logger", ConfigType.String), ("resume", ConfigType.Bool),
            ("init_checkpoint", ConfigType.String), ("vqgan_checkpoint", ConfigType.String),
            ("dont_resume_optimizer", ConfigType.Bool), ("resume_lr_scheduler", ConfigType.Bool),
        }),
        ("model.vq_model", new (string, KeySpec)[]
        {
            ("model_class", ConfigType.String), ("quantizer_type", ConfigType.String), ("codebook_size", Int(1, 1 << 30)),
            ("token_size", Int(1, 4096)), ("commitment_cost", Float(0)), ("entropy_loss_weight", Float(0)),
            ("entropy_loss_temperature", Float(0, minExclusive: true)), ("entropy_gamma", Float(0)),
            ("use_l2_normalisation", ConfigType.Bool), ("num_channels", Int(1, 4)), ("hidden_channels", Int(1, MaxChannels)),
            ("channel_mult", IntList(1, 64)), ("num_resolutions", Int(1, 8)), ("num_res_blocks", Int(1, 64)),
            ("num_res_blocks_decoder", Int(1, 64)), ("sample_with_conv", ConfigType.Bool),
            // model_class taming: overrides of taming's ddconfig (defaults: the official model)
            ("ddconfig.ch", Int(1, MaxChannels)), ("ddconfig.ch_mult", IntList(1, 64)), ("ddconfig.num_res_blocks", Int(1, 64)),
            ("ddconfig.attn_resolutions", IntList(1, MaxResolution, minCount: 0)), ("ddconfig.resolution", Int(1, MaxResolution)),
            ("ddconfig.z_channels", Int(1, MaxChannels)), ("ddconfig.in_channels", Int(1, 4)), ("ddconfig.out_ch", Int(1, 4)),
        }),
        ("model.mlm_model", new (string, KeySpec)[]
        {
            ("model_cls", ConfigType.String), ("hidden_dim", Int(1, 65536)), ("depth", Int(1, 1024)), ("heads", Int(1, 1024)),
            ("mlp_dim", Int(1, 1 << 20)), ("dropout", Float(0, 1, maxExclusive: true)), ("guidance_scale", Float(0)),
            ("guidance_annealing", ConfigType.String), ("num_steps", Int(1, 65536)),
            ("train_mask_schedule_strategy", ConfigType.String), ("gen_mask_schedule_strategy", ConfigType.String),
            ("softmax_temperature", Float(0, minExclusive: true)), ("randomize_temperature", Float(0)),
            ("class_label_dropout", Float(0, 1)), ("scale_pow", Float(0)), ("use_sampling_annealing", ConfigType.Bool),
            ("codebook_splits", Int(1, 64)), ("use_prenorm", ConfigType.Bool), ("mask_token", ConfigType.Int),
            ("nclass", Int(1, 1 << 20)), ("min_masking_ratio", Float(0, 1)),
        }),
        ("model.classifier", new (string, KeySpec)[]
        {
            ("num_channels", Int(1, 4)), ("channels", IntList(1, MaxChannels)), ("feature_dim", Int(1, 65536)), ("num_classes", Int(1, 1 << 20)),
        }),
        ("model.discriminator", new (string, KeySpec)[]
        {
            ("name", ConfigType.String), ("num_channels", Int(1, 4)), ("num_stages", Int(1, 16)),
            ("hidden_channels", Int(1, MaxChannels)), ("blur_resample", ConfigType.Bool), ("blur_kernel_size", Int(1, 16)),
        }),
        ("losses", new (string, KeySpec)[]
        {
            ("quantizer_weight", Float(0)), ("perceptual_loss", ConfigType.String), ("perceptual_weight", Float(0)),
            ("perceptual_loss_on_logits", ConfigType.Bool), ("perceptual_weights", ConfigType.String), ("reconstruction_loss", ConfigType.String),
            ("reconstruction_weight", Float(0)), ("discriminator_start", Int(0, long.MaxValue)),
            ("discriminator_loss", ConfigType.String), ("discriminator_factor", Float(0)),
            ("discriminator_weight", Float(0)), ("discriminator_gradient_penalty", ConfigType.String),
            ("discriminator_penalty_cost", Float(0)), ("lecam_regularization_weight", Float(0)),
            ("entropy_annealing_steps", Int(0, long.MaxValue)), ("entropy_annealing_factor", Float(0)),
            ("ema_decay", Float(0, 1, maxExclusive: true)), ("mlm.label_smoothing", Float(0, 1, maxExclusive: true)), ("mlm.sum_splits", ConfigType.Bool),
        }),
        ("dataset", new (string, KeySpec)[]
        {
            ("params.train_shards_path_or_url", ConfigType.String), ("params.eval_shards_path_or_url", ConfigType.String),
            ("params.shuffle_buffer_size", Int(0)), ("params.num_workers_per_gpu", Int(0, 1024)),
            ("params.pin_memory", ConfigType.Bool), ("params.persistent_workers", ConfigType.Bool),
            ("preprocessing.resolution", Int(2, MaxResolution)), ("preprocessing.use_aspect_ratio_aug", ConfigType.Bool),
            ("preprocessing.use_random_crop", ConfigType.Bool), ("preprocessing.min_scale", Float(0, 1, minExclusive: true)),
            ("preprocessing.interpolation", ConfigType.String),
        }),
        ("optimizer", new (string, KeySpec)[]
        {
            ("name", ConfigType.String), ("params.learning_rate", Float(0, minExclusive: true)),
            ("params.discriminator_learning_rate", Float(0, minExclusive: true)), ("params.scale_lr", ConfigType.Bool),
            ("params.beta1", Float(0, 1, maxExclusive: true)), ("params.beta2", Float(0, 1, maxExclusive: true)), ("params.weight_decay", Float(0)),
            ("params.epsilon", Float(0, minExclusive: true)), ("params.moments_dtype", ConfigType.String),
        }),
        ("lr_scheduler", new (string, KeySpec)[]
        {
            ("scheduler", ConfigType.String), ("params.learning_rate", Float(0, minExclusive: true)), ("params.warmup_steps", Int(0, long.MaxValue)),
            ("params.minimum_rate", Float(0)),
        }),
        ("training", new (string, KeySpec)[]
        {
            ("gradient_accumulation_steps", Int(1, 1 << 20)), ("per_gpu_batch_size", Int(1, 1 << 20)),
            ("mixed_precision", ConfigType.String), ("activation_checkpointing", ConfigType.Bool), ("finetune_decoder", ConfigType.Bool), ("enable_tf32", ConfigType.Bool), ("use_ema", ConfigType.Bool),
            ("seed", ConfigType.Int), ("max_train_steps", Int(1, long.MaxValue)), ("overfit_batch", ConfigType.Bool),
            ("overfit_batch_num", Int(1)), ("num_generated_images", Int(0, 1024)), ("max_grad_norm", Float(0)),
        }));

    /// <summary>Every key with its type.</summary>
    public static readonly IReadOnlyDictionary<string, ConfigType> Keys = Specs.ToDictionary(kv => kv.Key, kv => kv.Value.Type, StringComparer.Ordinal);

    private static Dictionary<string, KeySpec> Build(params (string Section, (string Key, KeySpec Spec)[] Keys)[] sections)
    {
        var d = new Dictionary<string, KeySpec>(StringComparer.Ordinal);
        foreach (var (section, keys) in sections)
            foreach (var (key, spec) in keys) d[$"{section}.{key}"] = spec;
        return d;
    }

    /// <summary>Relations between keys, checked once every value is in range; each returns null or a message
    /// naming the keys, their file and line, and the values.</summary>
    public static readonly IReadOnlyList<Func<MaskBitConfig, string?>> Relations =
    [
        LookupFreeCodebook,
        ChannelMultCoversResolutions,
        ResolutionDividesByDownsampling,
    ];

    private const string Vq = "model.vq_model.";

    private static string? LookupFreeCodebook(MaskBitConfig c)
    {
        if (Scalar(c, Vq + "quantizer_type")?.Value is not "lookup-free" || Scalar(c, Vq + "token_size") is not { Value: long bits } tokenSize) return null;
        if (bits > MaxLookupFreeBits)
            return $"{tokenSize.Source}: '{Vq}token_size' is {bits}; allowed with quantizer_type lookup-free: an integer in [1, {MaxLookupFreeBits}] (the codebook holds 2^token_size entries)";
        // The official 14–18-bit tokenizer configs keep codebook_size 4096, which the reference ignores for a
        // lookup-free quantizer; a value that could not be a sub-codebook of 2^token_size entries is a mistake.
        if (Scalar(c, Vq + "codebook_size") is { Value: long size } codebook && (size < 2 || (size & (size - 1)) != 0 || size > 1L << (int)bits))
            return $"{codebook.Source}: '{Vq}codebook_size' is {size}; allowed with quantizer_type lookup-free and token_size {bits}: " +
                   $"2^token_size = {1L << (int)bits} (or a smaller power of two, which is ignored as in the reference)";
        return null;
    }

    private static string? ChannelMultCoversResolutions(MaskBitConfig c)
    {
        if (c.Node(Vq + "channel_mult") is not ConfigList mult || Scalar(c, Vq + "num_resolutions") is not { Value: long levels } resolutions) return null;
        return mult.Items.Count >= levels ? null
            : $"{mult.Source}: '{Vq}channel_mult' has {mult.Items.Count} entries; allowed: at least num_resolutions = {levels} ({resolutions.Source})";
    }

    private static string? ResolutionDividesByDownsampling(MaskBitConfig c)
    {
        if (Scalar(c, "dataset.preprocessing.resolution") is not { Value: long size } resolution || Scalar(c, Vq + "model_class")?.Value is TamingConfig.ModelClass
            || c.Node("model.vq_model") is null) return null;
        long levels = Scalar(c, Vq + "num_resolutions")?.Value as long? ?? 5;
        long factor = 1L << (int)(levels - 1);
        return size % factor == 0 ? null
            : $"{resolution.Source}: 'dataset.preprocessing.resolution' is {size}; allowed: a multiple of the tokenizer's downsampling 2^(num_resolutions-1) = {factor}";
    }

    private static ConfigScalar? Scalar(MaskBitConfig c, string path) => c.Node(path) as ConfigScalar;

    /// <summary>True if <paramref name="path"/> is a known leaf or a prefix of one (a section).</summary>
    public static bool IsSection(string path) => Keys.Keys.Any(k => k.StartsWith(path + ".", StringComparison.Ordinal));

    /// <summary>The known key closest to a misspelt one (for "did you mean").</summary>
    public static string? Suggest(string path)
    {
        string? best = null; int bestD = int.MaxValue;
        foreach (var k in Keys.Keys)
        {
            int d = Levenshtein(k, path);
            if (d < bestD) { bestD = d; best = k; }
        }
        return bestD <= Math.Max(2, path.Length / 5) ? best : null;
    }

    private static int Levenshtein(string a, string b)
    {
        var prev = new int[b.Length + 1]; var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
