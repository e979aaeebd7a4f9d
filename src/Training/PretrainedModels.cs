using MaskBit.Autograd.Nn;
using MaskBit.Models.Classifier;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Perceptual;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>The models of a config with the weights of a file, through <see cref="WeightsLoader"/>: the tokenizer
/// (evaluation, reconstruction, the generator's frozen tokenizer), the generator (sampling, conversion) and the
/// perceptual network of tokenizer training.</summary>
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

    public static readonly WeightsLayout ClassifierLayout = new(["model", "classifier"]);

    /// <summary>Loads classifier weights (a training checkpoint's EMA weights when it has them).</summary>
    public static LoadedWeights LoadClassifierWeights(ImageClassifier classifier, string path, Action<string>? warn = null) =>
        WeightsLoader.Load(classifier, path, ClassifierLayout, preferEma: true, warn);

    /// <summary>The classifier of a config (model.classifier.*) for scoring: eval mode, no gradients, the weights of
    /// <paramref name="path"/>.</summary>
    public static ImageClassifier Classifier(MaskBitConfig config, string path, Action<string>? log = null)
    {
        ImageClassifier classifier;
        using (SkipInitWhenStrict(strict: true)) classifier = new ImageClassifier(ClassifierConfig.From(config));
        var loaded = LoadClassifierWeights(classifier, path);
        log?.Invoke($"classifier: {loaded}");
        classifier.Eval();
        classifier.RequiresGrad_(false);
        return classifier;
    }

    /// <summary>A strict load overwrites every parameter, so the model is built without drawing its random init
    /// (a 305M-parameter generator: ~30 s of draws); a non-strict one keeps the init of what the file lacks.</summary>
    public static IDisposable? SkipInitWhenStrict(bool strict) => strict ? Init.ShapesOnly() : null;

    /// <summary>The files each losses.perceptual_loss needs, in the order they are given, with where users get them:
    /// the official torchvision ImageNet weights (IMAGENET1K_V1, what the reference downloads) and, for LPIPS, the
    /// linear heads of LPIPS v0.1 (the reference's pretrained/vgg_lpips.pth holds the same five tensors).</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlyList<(string File, string Source)>> PerceptualWeightFiles =
        new Dictionary<string, IReadOnlyList<(string, string)>>
        {
            ["resnet50"] = [("resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth")],
            ["convnext_s"] = [("convnext_small-0c510722.pth", "https://download.pytorch.org/models/convnext_small-0c510722.pth")],
            ["lpips"] =
            [
                ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
                ("vgg.pth", "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"),
            ],
        };

    /// <summary>torchvision's VGG16 <c>features.&lt;i&gt;</c> as LPIPS slices them (relu1_2 … relu5_3 end at 4, 9, 16, 23, 30).</summary>
    private static readonly IReadOnlyDictionary<string, string> Vgg16ToLpipsSlices = Enumerable.Range(0, 30)
        .ToDictionary(i => $"features.{i}.", i => $"slice{(i < 4 ? 1 : i < 9 ? 2 : i < 16 ? 3 : i < 23 ? 4 : 5)}.{i}.");

    /// <summary>What <see cref="LpipsNetwork"/> reads, for messages and --help.</summary>
    public const string LpipsWeightsDescription =
        "torchvision's VGG16 (vgg16-397923af.pth) and the linear heads of LPIPS v0.1 (vgg.pth), in that order (as losses.perceptual_loss " +
        "'lpips' takes them), or one file with the state dict of the reference's LPIPS module (modeling/modules/lpips.py, saved by " +
        "torch.save(LPIPS().state_dict(), 'lpips_vgg16.pth')); safetensors copies load as well";

    /// <summary>The one LPIPS loader, of the lpips perceptual loss and of the LPIPS metric: VGG16 + heads
    /// (<see cref="PerceptualWeightFiles"/>), or one LPIPS module state dict (keys <c>scaling_layer.shift</c>,
    /// <c>net.slice1.0.weight</c>, …, <c>lin4.model.1.weight</c>). Frozen, eval mode.</summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is not what it should be; the message names it and
    /// <see cref="LpipsWeightsDescription"/>.</exception>
    public static Lpips LpipsNetwork(IReadOnlyList<string> files)
    {
        var lpips = new Lpips();
        void Load(Module module, string file, WeightsLayout layout, string what)
        {
            try { WeightsLoader.Load(module, file, layout); }
            catch (Exception e) when (e is InvalidDataException or CheckpointFormatException)
            {
                throw new InvalidDataException($"{file} is not {what} (LPIPS weights: {LpipsWeightsDescription}): {e.Message}", e);
            }
        }
        switch (files.Count)
        {
            case 1:
                Load(lpips, files[0], new WeightsLayout([]), "the state dict of the reference's LPIPS module");
                break;
            case 2:
                Load(lpips.Net, files[0], new WeightsLayout([], Vgg16ToLpipsSlices, ForeignPrefixes: ["classifier."]), "torchvision's VGG16");
                Load(new LpipsHeads(lpips.Lins), files[1], new WeightsLayout([]), "the linear heads of LPIPS v0.1 (vgg.pth)");
                break;
            default:
                throw new InvalidDataException($"LPIPS takes one or two weights files, got {files.Count}: {LpipsWeightsDescription}");
        }
        return lpips;
    }

    /// <summary>The perceptual network of losses.perceptual_loss (frozen, eval mode) with the weights of
    /// <paramref name="files"/> (<see cref="PerceptualWeightFiles"/>), or null when losses.perceptual_weight is 0.</summary>
    /// <exception cref="ConfigException">The files are missing, too few or too many, or not the expected networks:
    /// the message names each expected file and where to get it. LPIPS also takes one file, the state dict of the
    /// reference's LPIPS module (<see cref="LpipsNetwork"/>).</exception>
    public static IPerceptualLoss? PerceptualLoss(VqganLossConfig loss, IReadOnlyList<string> files)
    {
        if (loss.PerceptualWeight == 0f) return null;
        string kind = loss.PerceptualLoss;
        var expected = PerceptualWeightFiles[kind];
        string Expected() => string.Join(" and ", expected.Select(e => $"{e.File} ({e.Source})"));
        bool lpipsModuleFile = kind == "lpips" && files.Count == 1;   // the state dict of the reference's LPIPS module
        if (files.Count != expected.Count && !lpipsModuleFile)
            throw new ConfigException(files.Count == 0
                ? $"losses.perceptual_loss '{kind}' (losses.perceptual_weight {loss.PerceptualWeight}) needs its weights: {Expected()}; " +
                  "pass --perceptual-weights FILE[,FILE] or set losses.perceptual_weights"
                : $"losses.perceptual_loss '{kind}' needs {expected.Count} weights file(s), {Expected()}, in that order; got {string.Join(", ", files)}");

        void Load(Module module, int i, WeightsLayout layout)
        {
            var (name, source) = expected[i];
            if (!File.Exists(files[i]))
                throw new ConfigException($"perceptual weights file not found: {files[i]} (losses.perceptual_loss '{kind}' expects {name}, from {source})");
            try { WeightsLoader.Load(module, files[i], layout); }
            catch (Exception e) when (e is InvalidDataException or CheckpointFormatException)
            {
                throw new ConfigException($"{files[i]} is not {name} (losses.perceptual_loss '{kind}'; get it from {source}): {e.Message}");
            }
        }

        var plain = new WeightsLayout([]);
        switch (kind)
        {
            case "lpips":
                for (int i = 0; i < files.Count; i++)
                    if (!File.Exists(files[i]))
                        throw new ConfigException($"perceptual weights file not found: {files[i]} (losses.perceptual_loss 'lpips' expects " +
                                                  (lpipsModuleFile ? LpipsWeightsDescription : $"{expected[i].File}, from {expected[i].Source}") + ")");
                try { return LpipsNetwork(files); }
                catch (InvalidDataException e) { throw new ConfigException($"losses.perceptual_loss 'lpips' expects {Expected()}: {e.Message}"); }
            case "convnext_s":
                var convnext = ConvNeXt.Small();
                Load(convnext, 0, plain);
                return new PerceptualLoss(convnext, loss.PerceptualOnLogits);
            default:
                var resnet = new ResNet50();
                Load(resnet, 0, plain);
                return new PerceptualLoss(resnet, loss.PerceptualOnLogits);
        }
    }
}
