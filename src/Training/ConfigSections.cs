using MaskBit.Models.Classifier;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>
/// A config validated once into its section records: every section present is read (the tokenizer, Taming's
/// tokenizer, the discriminator, the VQGAN+ losses, the generator and its sampler, the preprocessing, and the
/// training settings of the stage the config describes — the generator's when it has model.mlm_model, the
/// classifier's when it has model.classifier). Keys the
/// reference reads but that have no effect here are read in <see cref="Acknowledge"/>, each with its reason; a value
/// that would need a feature MaskBit .NET lacks is refused naming the key and the file. After <see cref="Read"/>,
/// <see cref="MaskBitConfig.UnreadKeys"/> of a shipped config is empty (tests/Config walks them all).
/// </summary>
public sealed record ConfigSections(
    TokenizerConfig? Tokenizer, TamingConfig? Taming, DiscriminatorConfig? Discriminator, VqganLossConfig? Losses,
    GeneratorConfig? Generator, SamplerOptions? Sampler, ImageTransform? Preprocessing, RunSettings Run,
    TokenizerTrainingSettings? TokenizerTraining, GeneratorTrainingSettings? GeneratorTraining,
    ClassifierConfig? Classifier = null, ClassifierTrainingSettings? ClassifierTraining = null)
{
    public static ConfigSections Read(MaskBitConfig c)
    {
        bool generator = c.Has("model.mlm_model"), classifier = c.Has("model.classifier");
        bool taming = c.GetString("model.vq_model.model_class", "vqgan+") == TamingConfig.ModelClass;
        Acknowledge(c);
        return new ConfigSections(
            Tokenizer: c.Has("model.vq_model") && !taming ? TokenizerConfig.From(c) : null,
            Taming: taming ? TamingConfig.From(c) : null,
            Discriminator: c.Has("model.discriminator") ? DiscriminatorConfig.From(c) : null,
            Losses: !generator && !classifier && c.Has("losses") ? VqganLossConfig.From(c) : null,
            Generator: generator ? GeneratorConfig.From(c) : null,
            Sampler: generator ? SamplerOptions.FromConfig(c) : null,
            Preprocessing: c.Has("dataset.preprocessing.resolution") ? TrainingData.Transform(c) : null,
            Run: RunSettings.From(c, generator ? TrainingStage.Generator : classifier ? TrainingStage.Classifier : TrainingStage.Tokenizer),
            TokenizerTraining: !generator && !classifier && c.Has("training.max_train_steps") ? TokenizerTrainingSettings.From(c) : null,
            GeneratorTraining: generator && c.Has("training.max_train_steps") ? GeneratorTrainingSettings.From(c) : null,
            Classifier: classifier ? ClassifierConfig.From(c) : null,
            ClassifierTraining: classifier && c.Has("training.max_train_steps") ? ClassifierTrainingSettings.From(c) : null);
    }

    /// <summary><see cref="Read"/>, then refuses a key no section read (one the schema knows from the reference but
    /// MaskBit .NET does not implement), naming it and the file.</summary>
    public static ConfigSections Validate(MaskBitConfig c)
    {
        var sections = Read(c);
        if (c.UnreadKeys().FirstOrDefault() is { } key)
            throw new ConfigException($"{c.File}: '{key}' is not implemented by MaskBit .NET; remove it from the config");
        return sections;
    }

    /// <summary>Keys of the reference that change nothing here (read, so they count as consumed), and values that
    /// would need what is not implemented (refused).</summary>
    private static void Acknowledge(MaskBitConfig c)
    {
        // Names of the reference's accelerate set-up (TensorBoard event files go to the run folder's logs/); the logger
        // and the gradient-norm cadence are read with the training settings (LoopSettings).
        foreach (var key in new[] { "experiment.project", "experiment.logger", "experiment.logging_dir", "experiment.log_grad_norm_every" })
            c.Has(key);
        // The loader shuffles whole epochs (no buffer) on its own threads; these tune torch's DataLoader.
        foreach (var key in new[] { "dataset.params.shuffle_buffer_size", "dataset.params.pin_memory", "dataset.params.persistent_workers" })
            c.Has(key);
        // TF32 is a CUDA matmul mode; every kernel here computes in float32.
        c.Has("training.enable_tf32");
        // The reference's VQGANLoss stores the penalty cost but never uses it (modeling/modules/losses.py).
        c.Has("losses.discriminator_penalty_cost");
        // Resume options and experiment.init_checkpoint belong to training (LoopSettings); a config that only
        // evaluates carries them unused.
        foreach (var key in new[] { "experiment.dont_resume_optimizer", "experiment.resume_lr_scheduler", "experiment.init_checkpoint" })
            c.Has(key);
        // Both scripts give the optimizer optimizer.params.learning_rate; the scheduler key only restates it.
        if (c.Has("lr_scheduler.params.learning_rate") && c.Has("optimizer.params.learning_rate")
            && c.GetDouble("lr_scheduler.params.learning_rate") != c.GetDouble("optimizer.params.learning_rate"))
            throw new ConfigException($"{c.File}: lr_scheduler.params.learning_rate differs from optimizer.params.learning_rate; " +
                                      "the optimizer's rate is the one used (as in both reference scripts): set them equal");
    }
}
