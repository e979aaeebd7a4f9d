// The README's "Use it from C#" example, compiled and run by ReadmeSnippetTests: the lines between the two
// "README" markers are quoted in README.md and docs/nuget/README.md verbatim (the test checks that they match).
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Training;

namespace MaskBit.Tests.Snippets;

public static class UseFromCSharp
{
    /// <summary>Runs the example in the current directory (a copy of the repository's models/ is all it reads);
    /// returns the token grid it encoded.</summary>
    public static int[] Run()
    {
        // README begin
        // The shipped Fashion-MNIST model, from the repository's root. An official tokenizer loads the same way:
        // PretrainedModels.Tokenizer(MaskBitConfig.Load("configs/tokenizer/maskbit_tokenizer_10bit.yaml"), "maskbit_tokenizer_10bit.bin").
        string folder = "models/fashion_mnist";
        var config = MaskBitConfig.Load(Path.Combine(folder, "generator.yaml"));
        var tokenizer = PretrainedModels.Tokenizer(config, Path.Combine(folder, "tokenizer.safetensors"));
        var generator = PretrainedModels.Generator(config, Path.Combine(folder, "generator.safetensors"));

        // Sample 4 T-shirts (class 0) and 4 ankle boots (class 9): images (8, 3, 32, 32) in [0, 1], one row per class.
        var sampler = new Sampler(generator, tokenizer);
        var samples = sampler.Sample([0, 0, 0, 0, 9, 9, 9, 9], SamplerOptions.FromConfig(config), new SeededRandomSource(seed: 1));
        ImageIO.SaveGrid("samples.png", samples.Images.Clamp(0f, 1f), nrow: 4);
        ImageIO.Write("boot.png", ImageIO.FromTensor(samples.Images.Clamp(0f, 1f).Select0(4)));

        // An image → 8×8 tokens of 10 bits → an image.
        var image = ImageIO.ToTensor(ImageIO.Read("boot.png")).Unsqueeze(0);   // (1, 3, 32, 32)
        var (_, quantized) = tokenizer.Encode(image);
        var tokens = quantized.MinEncodingIndices;                                 // (1, 8, 8) token ids
        var decoded = tokenizer.DecodeTokens(tokens.Reshape(1, 64));
        ImageIO.Write("boot_reconstructed.png", ImageIO.FromTensor(decoded.Clamp(0f, 1f).Select0(0)));
        // README end
        return tokens.ToIntArray();
    }
}
