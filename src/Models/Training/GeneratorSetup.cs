using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>
/// Building the Stage-II models and data from a config: the frozen tokenizer and the generator with their weights
/// (a MaskBit training checkpoint or a plain weights file such as the official .bin releases), and the training
/// images (Fashion-MNIST, an image folder or webdataset shards).
/// </summary>
public static class GeneratorSetup
{
    /// <summary>Official generator checkpoints call the LFQBert input projection `token_emb`.</summary>
    public static readonly IReadOnlyDictionary<string, string> OfficialGeneratorRenames = new Dictionary<string, string> { ["token_emb."] = "input_proj." };

    /// <summary>The value of dataset.params.train_shards_path_or_url that selects the embedded Fashion-MNIST loader.</summary>
    public const string FashionMnistName = "fashion-mnist";

    /// <summary>The frozen tokenizer in eval mode without gradients, with the weights of <paramref name="path"/>
    /// (non-strict when <paramref name="warn"/> is given, see <see cref="LoadWeights"/>).</summary>
    public static ImageTokenizer LoadTokenizer(MaskBitConfig config, string path, Action<string>? log = null, Action<string>? warn = null)
    {
        ImageTokenizer tokenizer;
        using (SkipInitWhenStrict(strict: warn == null)) tokenizer = ImageTokenizer.FromConfig(config);
        // Not inside log?.Invoke(...): a null log would skip evaluating the load.
        string loaded = LoadWeights(tokenizer, path, new[] { "model", "tokenizer", "vq_model" }, renames: null, warn, tokenizer.ForeignCheckpointPrefixes);
        log?.Invoke("tokenizer: " + loaded);
        tokenizer.Eval();
        tokenizer.RequiresGrad_(false);
        return tokenizer;
    }

    /// <summary>A generator for sampling: eval mode, weights from <paramref name="path"/> (the EMA weights of a
    /// training checkpoint when it has them; non-strict when <paramref name="warn"/> is given).</summary>
    public static MaskedGenerator LoadGenerator(MaskBitConfig config, string path, Action<string>? log = null, Action<string>? warn = null)
    {
        MaskedGenerator generator;
        using (SkipInitWhenStrict(strict: warn == null)) generator = new MaskedGenerator(GeneratorConfig.From(config));
        string loaded = LoadWeights(generator, path, new[] { "model", "generator", "mlm_model" }, OfficialGeneratorRenames, warn);
        log?.Invoke("generator: " + loaded);
        generator.Eval();
        generator.RequiresGrad_(false);
        return generator;
    }

    /// <summary>A strict load overwrites every parameter, so the model is built without drawing its random init
    /// (a 305M-parameter generator: ~30 s of draws); a non-strict one keeps the init of what the file lacks.</summary>
    public static IDisposable? SkipInitWhenStrict(bool strict) => strict ? Init.ShapesOnly() : null;

    /// <summary>
    /// Loads a module's weights. A MaskBit training checkpoint (safetensors with the training-checkpoint format tag)
    /// gives the part named by the first of <paramref name="partNames"/> present (or its only part), replaced by
    /// that part's EMA weights when stored; any other file is a state dict (without the entries under
    /// <paramref name="foreignPrefixes"/>) loaded strictly, with <paramref name="renames"/> applied when the file has
    /// keys under a renamed prefix that the module lacks. With <paramref name="warn"/>, missing/unexpected keys and
    /// shape mismatches are reported through it and skipped instead (and EMA weights that do not fit leave the raw
    /// ones). Returns what was loaded, for logs.
    /// </summary>
    public static string LoadWeights(Module module, string path, IReadOnlyList<string> partNames, IReadOnlyDictionary<string, string>? renames,
        Action<string>? warn = null, IReadOnlyList<string>? foreignPrefixes = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {path}", path);
        var stateDict = CheckpointFile.Load(path);
        bool strict = warn == null;
        if (!IsTrainingCheckpoint(stateDict))
        {
            stateDict = ModuleCheckpoint.WithoutPrefixes(stateDict, foreignPrefixes ?? []);
            static bool Under(IEnumerable<string> names, IEnumerable<string> prefixes) =>
                names.Any(n => prefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal)));
            bool renamed = renames != null && Under(stateDict.Names, renames.Keys) && !Under(module.StateDict().Select(o => o.Name), renames.Keys);
            foreach (var problem in ModuleCheckpoint.LoadInto(module, stateDict, strict, renamed ? renames : null)) warn!(problem);
            return $"{path} ({stateDict.Format})";
        }

        var parts = stateDict.Names.Where(n => n.StartsWith("module.", StringComparison.Ordinal))
            .Select(n => n.Split('.')[1]).Distinct().ToList();
        string part = partNames.FirstOrDefault(parts.Contains)
            ?? (parts.Count == 1 ? parts[0] : throw new InvalidDataException(
                $"{path}: training checkpoint parts [{string.Join(", ", parts)}] include none of [{string.Join(", ", partNames)}]"));
        string prefix = $"module.{part}.";
        var values = stateDict.Where(r => r.Name.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(r => r.Name[prefix.Length..], r => r.ToTensor());
        try { foreach (var problem in module.LoadStateDict(values, strict)) warn!($"{part}: {problem}"); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path} ({part}): {e.Message}", e); }

        var parameters = module.Parameters().ToList();
        if (!stateDict.TryGet($"ema.{part}.0", out _)) return $"{path} ({part})";
        for (int i = 0; i < parameters.Count; i++)
        {
            if (!stateDict.TryGet($"ema.{part}.{i}", out var shadow) || !shadow.Shape.AsSpan().SequenceEqual(parameters[i].Shape))
            {
                string problem = $"EMA weights of '{part}' do not match the model's parameters (at parameter {i})";
                if (strict) throw new InvalidDataException($"{path}: {problem}");
                warn!($"{problem}; using the raw weights");
                return $"{path} ({part})";
            }
        }
        for (int i = 0; i < parameters.Count; i++) parameters[i].CopyFrom_(stateDict[$"ema.{part}.{i}"].ToTensor());
        return $"{path} ({part}, EMA)";
    }

    public static bool IsTrainingCheckpoint(StateDict stateDict) =>
        stateDict.Metadata.Any(kv => kv.Key == "format" && kv.Value?.ToString() == TrainingCheckpoint.Format);

    /// <summary>The training images named by dataset.params.train_shards_path_or_url: "fashion-mnist" (the
    /// default; 32×32 RGB with a black border), an image-folder directory, or a webdataset shard pattern.
    /// Returns the dataset and a key identifying it (for the token cache).</summary>
    public static (IImageDataset Dataset, string Key) OpenTrainDataset(MaskBitConfig config)
    {
        string source = config.GetString("dataset.params.train_shards_path_or_url", FashionMnistName);
        if (source == FashionMnistName)
        {
            var fashion = new FashionMnist(train: true, padTo32: true, channels: 3);
            return (fashion, $"{FashionMnistName}:{fashion.Root}");
        }
        if (Directory.Exists(source)) return (new ImageFolderDataset(source), $"folder:{Path.GetFullPath(source)}");
        return (new WebDatasetShards(source), $"shards:{source}");
    }

    /// <summary>The first <paramref name="count"/> samples of a dataset (experiment.max_train_examples).</summary>
    public static IImageDataset Take(IImageDataset dataset, int count) => count >= dataset.Count ? dataset : new Prefix(dataset, count);

    private sealed class Prefix(IImageDataset inner, int count) : IImageDataset
    {
        public int Count => count;
        public string KeyOf(int index) => inner.KeyOf(Check(index));
        public RawSample Load(int index) => inner.Load(Check(index));
        private int Check(int index) => (uint)index < (uint)count ? index : throw new ArgumentOutOfRangeException(nameof(index), index, $"the dataset is cut to {count} samples");
    }

    /// <summary>The per-sample transform for training (augmenting) or token caching (deterministic): none when
    /// the images already have the configured resolution and no random crop is asked for.</summary>
    public static Func<HostImage, Random, HostImage>? Transform(MaskBitConfig config, bool augment)
    {
        const string p = "dataset.preprocessing.";
        int resolution = (int)config.GetInt(p + "resolution", 256);
        bool randomCrop = config.GetBool(p + "use_random_crop", false);
        var transform = new ImageTransform(resolution, config.GetBool(p + "use_aspect_ratio_aug", false), randomCrop,
            config.GetDouble(p + "min_scale", randomCrop ? 0.8 : 1.0), Preprocess.ParseInterpolation(config.GetString(p + "interpolation", "bicubic")));
        if (augment && randomCrop) return transform.Train;
        return (image, _) => image.Height == resolution && image.Width == resolution ? image : transform.Eval(image);
    }

    /// <summary>Tokens (B, h·w) of a batch of images (B, C, H, W) in [0, 1], as Int32 on the host.</summary>
    public static int[] Encode(ImageTokenizer tokenizer, Tensor images)
    {
        using var noGrad = Tape.NoGrad();
        using var scope = TensorScope.Begin();
        var (_, result) = tokenizer.Encode(images);
        return result.MinEncodingIndices.ToIntArray();
    }
}
