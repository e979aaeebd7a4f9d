namespace MaskBit.Cli.Commands;

/// <summary>
/// The pretrained Fashion-MNIST tokenizer, generator and classifier that ship in <c>models/fashion_mnist/</c> (copied next
/// to the <c>maskbit</c> binary by the build): what <c>generate</c> and <c>reconstruct</c> use when no weights
/// are given. README.md records the commands that trained them.
/// </summary>
internal static class ShippedModel
{
    public const string DisplayFolder = "models/fashion_mnist";
    public static string Folder { get; } = Path.Combine(AppContext.BaseDirectory, "models", "fashion_mnist");
    public static string TokenizerConfig => Path.Combine(Folder, "tokenizer.yaml");
    public static string TokenizerWeights => Path.Combine(Folder, "tokenizer.safetensors");
    public static string GeneratorConfig => Path.Combine(Folder, "generator.yaml");
    public static string GeneratorWeights => Path.Combine(Folder, "generator.safetensors");
    /// <summary>The Fashion-MNIST classifier that scores samples (class agreement, Fréchet distance in its features).</summary>
    public static string ClassifierConfig => Path.Combine(Folder, "classifier.yaml");
    public static string ClassifierWeights => Path.Combine(Folder, "classifier.safetensors");

    /// <summary>Checks that the shipped files are there (a build copies them; a stripped install may not).</summary>
    public static void Require(params string[] files)
    {
        foreach (var file in files)
            if (!File.Exists(file))
                throw new FileNotFoundException($"the shipped model is missing {file} (rebuild maskbit from the repository, or pass your own weights and --config)", file);
    }
}
