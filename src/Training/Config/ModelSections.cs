using MaskBit.Models.Classifier;
using MaskBit.Models.Generator;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Config;

// The model sections of a config read into the models' records (TokenizerConfig.From(config) and the like, as
// static extensions, one class each): the models themselves only know their records, never MaskBitConfig. Each
// reader names the key and the file of a value it refuses.

public static class TokenizerConfigSection
{
    extension(TokenizerConfig)
    {
        public static TokenizerConfig From(MaskBitConfig c)
        {
            const string p = "model.vq_model.";
            int resBlocks = (int)c.GetInt(p + "num_res_blocks", 2);
            var cfg = new TokenizerConfig(
                c.GetString(p + "quantizer_type"), (int)c.GetInt(p + "codebook_size", 0), (int)c.GetInt(p + "token_size"),
                (float)c.GetDouble(p + "commitment_cost", 0.25), (float)c.GetDouble(p + "entropy_loss_weight", 0.0),
                (float)c.GetDouble(p + "entropy_loss_temperature", 0.01), (float)c.GetDouble(p + "entropy_gamma", 1.0),
                c.GetBool(p + "use_l2_normalisation", false), (int)c.GetInt(p + "num_channels", 3),
                (int)c.GetInt(p + "hidden_channels", 128), c.Has(p + "channel_mult") ? c.GetIntList(p + "channel_mult") : new[] { 1, 1, 2, 2, 4 },
                (int)c.GetInt(p + "num_resolutions", 5), resBlocks, (int)c.GetInt(p + "num_res_blocks_decoder", resBlocks),
                c.GetBool(p + "sample_with_conv", true), c.GetString(p + "model_class", "vqgan+"));
            if (cfg.ModelClass == TamingConfig.ModelClass)
                throw new ConfigException($"{c.File}: model.vq_model.model_class taming (the Taming VQGAN) serves evaluation, reconstruction " +
                                          "and the generator's tokenizer; this needs the conv tokenizer (vqgan+, maskgit), as training does");
            if (cfg.ModelClass is not ("vqgan+" or "maskgit"))
                throw new ConfigException($"{c.File}: model.vq_model.model_class '{cfg.ModelClass}' is not supported (vqgan+, maskgit, taming)");
            if (cfg.QuantizerType is not ("lookup" or "lookup-free"))
                throw new ConfigException($"{c.File}: model.vq_model.quantizer_type '{cfg.QuantizerType}' is not supported (lookup, lookup-free)");
            // Like the reference, a lookup-free quantizer's codebook is every sign pattern of token_size bits; the
            // config's codebook_size is not read for it (the official 14/16/18-bit tokenizer configs leave it at 4096).
            // The schema (ConfigSchema) has checked ranges, token_size against the lookup-free codebook and
            // channel_mult against num_resolutions.
            if (cfg.QuantizerType == "lookup-free")
                cfg = cfg with { CodebookSize = 1 << cfg.TokenSize };
            if (cfg.ChannelMult.Any(m => cfg.HiddenChannels * m % 32 != 0))
                throw new ConfigException($"{c.File}: hidden_channels × channel_mult must be multiples of 32 (GroupNorm(32))");
            return cfg;
        }
    }
}

public static class TamingConfigSection
{
    extension(TamingConfig)
    {
        public static TamingConfig From(MaskBitConfig c)
        {
            const string p = "model.vq_model.", d = p + "ddconfig.";
            var o = TamingConfig.Official;
            string quantizer = c.GetString(p + "quantizer_type", "lookup");
            if (quantizer != "lookup")
                throw new ConfigException($"{c.File}: model.vq_model.quantizer_type '{quantizer}' is not supported by model_class taming (lookup)");
            var cfg = new TamingConfig(
                (int)c.GetInt(p + "codebook_size", o.CodebookSize), (int)c.GetInt(p + "token_size", o.TokenSize),
                (float)c.GetDouble(p + "commitment_cost", o.CommitmentCost), (int)c.GetInt(d + "ch", o.Ch),
                c.Has(d + "ch_mult") ? c.GetIntList(d + "ch_mult") : o.ChMult, (int)c.GetInt(d + "num_res_blocks", o.NumResBlocks),
                c.Has(d + "attn_resolutions") ? c.GetIntList(d + "attn_resolutions") : o.AttnResolutions,
                (int)c.GetInt(d + "resolution", o.Resolution), (int)c.GetInt(d + "z_channels", o.ZChannels),
                (int)c.GetInt(d + "in_channels", o.InChannels), (int)c.GetInt(d + "out_ch", o.OutChannels));
            if (cfg.CodebookSize <= 0 || cfg.TokenSize <= 0)
                throw new ConfigException($"{c.File}: model.vq_model.codebook_size and token_size must be positive (got {cfg.CodebookSize}, {cfg.TokenSize})");
            if (cfg.ChMult.Length == 0 || cfg.NumResBlocks < 1 || cfg.ZChannels < 1 || cfg.InChannels < 1 || cfg.OutChannels < 1)
                throw new ConfigException($"{c.File}: model.vq_model.ddconfig needs a non-empty ch_mult and positive num_res_blocks, z_channels, in_channels, out_ch");
            if (cfg.ChMult.Any(m => m <= 0 || cfg.Ch * m % 32 != 0))
                throw new ConfigException($"{c.File}: model.vq_model.ddconfig ch × ch_mult must be positive multiples of 32 (GroupNorm(32)); ch {cfg.Ch}, ch_mult [{string.Join(", ", cfg.ChMult)}]");
            if (cfg.Resolution % cfg.DownsampleFactor != 0)
                throw new ConfigException($"{c.File}: model.vq_model.ddconfig.resolution {cfg.Resolution} is not divisible by the downsampling factor {cfg.DownsampleFactor}");
            return cfg;
        }
    }
}

public static class DiscriminatorConfigSection
{
    extension(DiscriminatorConfig)
    {
        public static DiscriminatorConfig From(MaskBitConfig c)
        {
            const string p = "model.discriminator.";
            var cfg = new DiscriminatorConfig(c.GetString(p + "name"), (int)c.GetInt(p + "num_channels", 3),
                (int)c.GetInt(p + "hidden_channels", 64), (int)c.GetInt(p + "num_stages", 3), c.GetBool(p + "blur_resample", false),
                (int)c.GetInt(p + "blur_kernel_size", 4));
            if (cfg.Name is not (DiscriminatorConfig.VqganPlusName or DiscriminatorConfig.PatchGanName))
                throw new ConfigException($"{c.File}: model.discriminator.name '{cfg.Name}' is not supported ({DiscriminatorConfig.VqganPlusName}, {DiscriminatorConfig.PatchGanName})");
            if (cfg.NumStages < 1)
                throw new ConfigException($"{c.File}: model.discriminator.num_stages must be at least 1");
            if (cfg.HiddenChannels < 1)
                throw new ConfigException($"{c.File}: model.discriminator.hidden_channels must be positive");
            if (cfg.Name == DiscriminatorConfig.PatchGanName) return cfg;
            if (cfg.BlurResample && cfg.BlurKernelSize is < 3 or > 5)
                throw new ConfigException($"{c.File}: model.discriminator.blur_kernel_size must be 3, 4 or 5 with blur_resample");
            if (cfg.HiddenChannels % 32 != 0)
                throw new ConfigException($"{c.File}: model.discriminator.hidden_channels must be a multiple of 32 (GroupNorm(32))");
            return cfg;
        }
    }
}

public static class VqganLossConfigSection
{
    extension(VqganLossConfig)
    {
        public static VqganLossConfig From(MaskBitConfig c)
        {
            const string p = "losses.";
            string rec = c.GetString(p + "reconstruction_loss");
            if (rec is not ("l1" or "l2"))
                throw new ConfigException($"{c.File}: losses.reconstruction_loss '{rec}' is not supported (l1, l2)");
            string penalty = c.GetString(p + "discriminator_gradient_penalty");
            if (penalty is not ("none" or "adopt_weight"))
                throw new ConfigException($"{c.File}: losses.discriminator_gradient_penalty '{penalty}' is not supported (none, adopt_weight)");
            string perceptual = c.GetString(p + "perceptual_loss");
            if (perceptual is not ("resnet50" or "convnext_s" or "lpips"))
                throw new ConfigException($"{c.File}: losses.perceptual_loss '{perceptual}' is not supported (resnet50, convnext_s, lpips)");
            return new VqganLossConfig(
                (float)c.GetDouble(p + "quantizer_weight"), perceptual, (float)c.GetDouble(p + "perceptual_weight"),
                rec == "l1", (float)c.GetDouble(p + "reconstruction_weight", 1.0), c.GetInt(p + "discriminator_start"),
                ParseGanLoss(c.GetString(p + "discriminator_loss"), c.File), (float)c.GetDouble(p + "discriminator_factor"),
                (float)c.GetDouble(p + "discriminator_weight"), penalty == "adopt_weight",
                (float)c.GetDouble(p + "lecam_regularization_weight"), c.GetDouble(p + "ema_decay", 0.999),
                c.GetInt(p + "entropy_annealing_steps", 2000), (float)c.GetDouble(p + "entropy_annealing_factor", 0.0))
            {
                PerceptualOnLogits = c.GetBool(p + "perceptual_loss_on_logits", true),
            };
        }
    }

    private static GanLossType ParseGanLoss(string name, string source) => name switch
    {
        "hinge" => GanLossType.Hinge,
        "vanilla" => GanLossType.Vanilla,
        "non-saturating" => GanLossType.NonSaturating,
        _ => throw new ConfigException($"{source}: discriminator_loss '{name}' is not supported (hinge, vanilla, non-saturating)"),
    };
}

public static class VqganLossSection
{
    extension(VqganLoss)
    {
        public static VqganLoss From(MaskBitConfig c, IPerceptualLoss? perceptual = null) =>
            new(DiscriminatorConfig.From(c), VqganLossConfig.From(c), perceptual);
    }
}

public static class ImageTokenizerSection
{
    extension(ImageTokenizer)
    {
        /// <summary>The tokenizer model.vq_model describes (random init from <paramref name="seed"/>):
        /// model_class taming → <see cref="TamingVQModel"/>, otherwise <see cref="ConvVQModel"/>.</summary>
        public static ImageTokenizer FromConfig(MaskBitConfig config, int seed = 0) =>
            config.GetString("model.vq_model.model_class", "vqgan+") == TamingConfig.ModelClass
                ? new TamingVQModel(TamingConfig.From(config), seed)
                : new ConvVQModel(TokenizerConfig.From(config), seed: seed);
    }
}

public static class GeneratorConfigSection
{
    extension(GeneratorConfig)
    {
        public static GeneratorConfig From(MaskBitConfig c)
        {
            const string m = "model.mlm_model.", v = "model.vq_model.";
            bool lfq = c.GetString(v + "quantizer_type") == "lookup-free";
            var cfg = new GeneratorConfig(
                c.GetString(m + "model_cls"), (int)c.GetInt("dataset.preprocessing.resolution", 256),
                1 << (int)(c.GetInt(v + "num_resolutions", 5) - 1),
                lfq ? 1 << (int)c.GetInt(v + "token_size") : (int)c.GetInt(v + "codebook_size"),
                (int)c.GetInt(m + "codebook_splits", 1), (int)c.GetInt(m + "hidden_dim", 1024), (int)c.GetInt(m + "depth", 24),
                (int)c.GetInt(m + "heads", 16), (int)c.GetInt(m + "mlp_dim", 4096), (float)c.GetDouble(m + "dropout", 0.1),
                (int)c.GetInt(m + "nclass", 1000), c.GetBool(m + "use_prenorm", false));
            if (cfg.ModelClass is not ("lfq_bert" or "bert"))
                throw new ConfigException($"{c.File}: model.mlm_model.model_cls '{cfg.ModelClass}' is not supported (lfq_bert, bert)");
            if (1 << cfg.Bits != cfg.CodebookSize) throw new ConfigException($"{c.File}: codebook size {cfg.CodebookSize} is not a power of two");
            if (cfg.Bits % cfg.Splits != 0)
                throw new ConfigException($"{c.File}: {cfg.Bits} token bits cannot be split into {cfg.Splits} equal groups (model.mlm_model.codebook_splits)");
            if (cfg.HiddenDim % cfg.Heads != 0) throw new ConfigException($"{c.File}: hidden_dim {cfg.HiddenDim} is not divisible by heads {cfg.Heads}");
            return cfg;
        }
    }
}

public static class ClassifierConfigSection
{
    extension(ClassifierConfig)
    {
        /// <summary>model.classifier.* (defaults: <see cref="ClassifierConfig.FashionMnist"/>) at
        /// dataset.preprocessing.resolution.</summary>
        public static ClassifierConfig From(MaskBitConfig c)
        {
            const string p = "model.classifier.";
            var d = ClassifierConfig.FashionMnist;
            var cfg = new ClassifierConfig((int)c.GetInt(p + "num_channels", d.NumChannels),
                c.Has(p + "channels") ? c.GetIntList(p + "channels") : d.Channels, (int)c.GetInt(p + "feature_dim", d.FeatureDim),
                (int)c.GetInt(p + "num_classes", d.NumClasses), (int)c.GetInt("dataset.preprocessing.resolution", d.Resolution));
            if (cfg.FinalSize < 1 || cfg.Resolution % (1 << cfg.Channels.Count) != 0)
                throw new ConfigException($"{c.File}: model.classifier.channels has {cfg.Channels.Count} stages, each halving the size, " +
                                          $"which dataset.preprocessing.resolution {cfg.Resolution} does not divide into");
            return cfg;
        }
    }
}

public static class SamplerOptionsSection
{
    extension(SamplerOptions)
    {
        /// <summary>The generation settings of a config's model.mlm_model section (gen_mask_schedule_strategy etc.).</summary>
        public static SamplerOptions FromConfig(MaskBitConfig c)
        {
            const string m = "model.mlm_model.";
            var d = new SamplerOptions();
            return new SamplerOptions
            {
                NumSteps = (int)c.GetInt(m + "num_steps", d.NumSteps),
                GuidanceScale = c.GetDouble(m + "guidance_scale", d.GuidanceScale),
                GuidanceAnnealing = SamplerOptions.ParseAnnealing(c.GetString(m + "guidance_annealing", "none")),
                ScalePow = c.GetDouble(m + "scale_pow", d.ScalePow),
                SoftmaxTemperature = c.GetDouble(m + "softmax_temperature", d.SoftmaxTemperature),
                UseSamplingAnnealing = c.GetBool(m + "use_sampling_annealing", d.UseSamplingAnnealing),
                RandomizeTemperature = c.GetDouble(m + "randomize_temperature", d.RandomizeTemperature),
                MaskSchedule = Masking.ParseSchedule(c.GetString(m + "gen_mask_schedule_strategy", "linear")),
            };
        }
    }
}
