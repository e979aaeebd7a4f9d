namespace MaskBit.Models.Config;

public enum ConfigType { Int, Float, Bool, String, IntList, FloatList }

/// <summary>Every key the original MaskBit configs (and this port) use, with its type. A key not listed here
/// is a typo or an unsupported option, and loading fails naming it.</summary>
public static class ConfigSchema
{
    public static readonly IReadOnlyDictionary<string, ConfigType> Keys = Build(
        ("experiment", new (string, ConfigType)[]
        {
            ("project", ConfigType.String), ("name", ConfigType.String), ("output_dir", ConfigType.String),
            ("logging_dir", ConfigType.String), ("max_train_examples", ConfigType.Int), ("save_every", ConfigType.Int),
            ("eval_every", ConfigType.Int), ("generate_every", ConfigType.Int), ("log_every", ConfigType.Int),
            ("log_grad_norm_every", ConfigType.Int), ("logger", ConfigType.String), ("resume", ConfigType.Bool),
            ("init_checkpoint", ConfigType.String), ("vqgan_checkpoint", ConfigType.String),
            ("dont_resume_optimizer", ConfigType.Bool), ("resume_lr_scheduler", ConfigType.Bool),
        }),
        ("model.vq_model", new (string, ConfigType)[]
        {
            ("model_class", ConfigType.String), ("quantizer_type", ConfigType.String), ("codebook_size", ConfigType.Int),
            ("token_size", ConfigType.Int), ("commitment_cost", ConfigType.Float), ("entropy_loss_weight", ConfigType.Float),
            ("entropy_loss_temperature", ConfigType.Float), ("entropy_gamma", ConfigType.Float),
            ("use_l2_normalisation", ConfigType.Bool), ("num_channels", ConfigType.Int), ("hidden_channels", ConfigType.Int),
            ("channel_mult", ConfigType.IntList), ("num_resolutions", ConfigType.Int), ("num_res_blocks", ConfigType.Int),
            ("num_res_blocks_decoder", ConfigType.Int), ("sample_with_conv", ConfigType.Bool),
            // model_class taming: overrides of taming's ddconfig (defaults: the official model)
            ("ddconfig.ch", ConfigType.Int), ("ddconfig.ch_mult", ConfigType.IntList), ("ddconfig.num_res_blocks", ConfigType.Int),
            ("ddconfig.attn_resolutions", ConfigType.IntList), ("ddconfig.resolution", ConfigType.Int),
            ("ddconfig.z_channels", ConfigType.Int), ("ddconfig.in_channels", ConfigType.Int), ("ddconfig.out_ch", ConfigType.Int),
        }),
        ("model.mlm_model", new (string, ConfigType)[]
        {
            ("model_cls", ConfigType.String), ("hidden_dim", ConfigType.Int), ("depth", ConfigType.Int), ("heads", ConfigType.Int),
            ("mlp_dim", ConfigType.Int), ("dropout", ConfigType.Float), ("guidance_scale", ConfigType.Float),
            ("guidance_annealing", ConfigType.String), ("num_steps", ConfigType.Int),
            ("train_mask_schedule_strategy", ConfigType.String), ("gen_mask_schedule_strategy", ConfigType.String),
            ("softmax_temperature", ConfigType.Float), ("randomize_temperature", ConfigType.Float),
            ("class_label_dropout", ConfigType.Float), ("scale_pow", ConfigType.Float), ("use_sampling_annealing", ConfigType.Bool),
            ("codebook_splits", ConfigType.Int), ("use_prenorm", ConfigType.Bool), ("mask_token", ConfigType.Int),
            ("nclass", ConfigType.Int), ("min_masking_ratio", ConfigType.Float),
        }),
        ("model.discriminator", new (string, ConfigType)[]
        {
            ("name", ConfigType.String), ("num_channels", ConfigType.Int), ("num_stages", ConfigType.Int),
            ("hidden_channels", ConfigType.Int), ("blur_resample", ConfigType.Bool), ("blur_kernel_size", ConfigType.Int),
        }),
        ("losses", new (string, ConfigType)[]
        {
            ("quantizer_weight", ConfigType.Float), ("perceptual_loss", ConfigType.String), ("perceptual_weight", ConfigType.Float),
            ("perceptual_loss_on_logits", ConfigType.Bool), ("perceptual_weights", ConfigType.String), ("reconstruction_loss", ConfigType.String),
            ("reconstruction_weight", ConfigType.Float), ("discriminator_start", ConfigType.Int),
            ("discriminator_loss", ConfigType.String), ("discriminator_factor", ConfigType.Float),
            ("discriminator_weight", ConfigType.Float), ("discriminator_gradient_penalty", ConfigType.String),
            ("discriminator_penalty_cost", ConfigType.Float), ("lecam_regularization_weight", ConfigType.Float),
            ("entropy_annealing_steps", ConfigType.Int), ("entropy_annealing_factor", ConfigType.Float),
            ("ema_decay", ConfigType.Float), ("mlm.label_smoothing", ConfigType.Float), ("mlm.sum_splits", ConfigType.Bool),
        }),
        ("dataset", new (string, ConfigType)[]
        {
            ("params.train_shards_path_or_url", ConfigType.String), ("params.eval_shards_path_or_url", ConfigType.String),
            ("params.shuffle_buffer_size", ConfigType.Int), ("params.num_workers_per_gpu", ConfigType.Int),
            ("params.pin_memory", ConfigType.Bool), ("params.persistent_workers", ConfigType.Bool),
            ("preprocessing.resolution", ConfigType.Int), ("preprocessing.use_aspect_ratio_aug", ConfigType.Bool),
            ("preprocessing.use_random_crop", ConfigType.Bool), ("preprocessing.min_scale", ConfigType.Float),
            ("preprocessing.interpolation", ConfigType.String),
        }),
        ("optimizer", new (string, ConfigType)[]
        {
            ("name", ConfigType.String), ("params.learning_rate", ConfigType.Float),
            ("params.discriminator_learning_rate", ConfigType.Float), ("params.scale_lr", ConfigType.Bool),
            ("params.beta1", ConfigType.Float), ("params.beta2", ConfigType.Float), ("params.weight_decay", ConfigType.Float),
            ("params.epsilon", ConfigType.Float),
        }),
        ("lr_scheduler", new (string, ConfigType)[]
        {
            ("scheduler", ConfigType.String), ("params.learning_rate", ConfigType.Float), ("params.warmup_steps", ConfigType.Int),
            ("params.minimum_rate", ConfigType.Float),
        }),
        ("training", new (string, ConfigType)[]
        {
            ("gradient_accumulation_steps", ConfigType.Int), ("per_gpu_batch_size", ConfigType.Int),
            ("mixed_precision", ConfigType.String), ("enable_tf32", ConfigType.Bool), ("use_ema", ConfigType.Bool),
            ("seed", ConfigType.Int), ("max_train_steps", ConfigType.Int), ("overfit_batch", ConfigType.Bool),
            ("overfit_batch_num", ConfigType.Int), ("num_generated_images", ConfigType.Int), ("max_grad_norm", ConfigType.Float),
        }));

    private static Dictionary<string, ConfigType> Build(params (string Section, (string Key, ConfigType Type)[] Keys)[] sections)
    {
        var d = new Dictionary<string, ConfigType>(StringComparer.Ordinal);
        foreach (var (section, keys) in sections)
            foreach (var (key, type) in keys) d[$"{section}.{key}"] = type;
        return d;
    }

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
