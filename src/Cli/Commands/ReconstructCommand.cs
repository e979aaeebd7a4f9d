using System.CommandLine;
using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit reconstruct`: encodes and decodes images with a tokenizer; writes each reconstruction and a
/// grid (rows of originals, each above its reconstructions).</summary>
internal static class ReconstructCommand
{
    public const string GridFileName = "grid.png";
    private const int GridColumns = 8;
    private static readonly HashSet<string> ImageExtensions = new(StringComparer.OrdinalIgnoreCase) { ".png", ".jpg", ".jpeg" };

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.OptionalConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var weights = new Option<string?>("--weights") { Description = $"A training checkpoint or official tokenizer weights (.bin, .safetensors); default: the shipped model's ({ShippedModel.DisplayFolder})." };
        var images = new Option<string[]>("--images")
        {
            Required = true, AllowMultipleArgumentsPerToken = true,
            Description = "Image files, or folders whose .png/.jpg/.jpeg files are read (resized and centre-cropped to dataset.preprocessing.resolution).",
        };
        var output = new Option<string>("--out") { Required = true, Description = "Folder for the reconstructions and grid.png." };
        var noEma = CommandSupport.NoEmaOption();
        var nonStrict = CommandSupport.NonStrictOption();
        var device = CommandSupport.DeviceOption();
        var command = new Command("reconstruct", CommandSupport.Describe(
            $"Reconstruct images with a tokenizer (the shipped Fashion-MNIST one in {ShippedModel.DisplayFolder} when no --weights are given): " +
            "writes <name>.png per image and grid.png.",
            "maskbit reconstruct --images photos/ --out recon",
            "maskbit reconstruct --config configs/fashion_mnist_tokenizer.yaml --weights runs/tokenizer/checkpoint-600.safetensors --images a.png b.png --out recon"))
        {
            config, overrides, weights, images, output, noEma, nonStrict, device,
        };
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(device), () =>
        {
            var (configPath, weightsPath) = (parse.GetValue(config), parse.GetValue(weights));
            if (weightsPath == null)
            {
                configPath ??= ShippedModel.TokenizerConfig;
                weightsPath = ShippedModel.TokenizerWeights;
                ShippedModel.Require(configPath, weightsPath);
                stdout.WriteLine($"no --weights given: using the shipped Fashion-MNIST tokenizer ({ShippedModel.DisplayFolder})");
            }
            else if (configPath == null) throw new UsageException("--config is missing: with your own --weights pass the config they were trained with");
            else CommandSupport.RequireFile(weightsPath, "--weights", "pass a checkpoint of `maskbit train tokenizer`, or omit --weights for the shipped model");
            var cfg = CommandSupport.LoadConfig(configPath, parse.GetValue(overrides));
            var files = ImageFiles(parse.GetValue(images)!);
            var model = CommandSupport.LoadTokenizer(cfg, weightsPath, !parse.GetValue(noEma), stdout, parse.GetValue(nonStrict));
            var transform = TrainingData.Transform(cfg);
            int channels = TrainingData.Channels(cfg);
            string outputDir = parse.GetValue(output)!;
            Directory.CreateDirectory(outputDir);

            int columns = Math.Min(GridColumns, files.Count);
            var gridTiles = new List<HostImage>();
            foreach (var chunk in files.Chunk(GridColumns))
            {
                var originals = chunk.Select(f => transform.Eval(ImageIO.Read(f, channels))).ToList();
                using var scope = TensorScope.Begin();
                var batch = Tensor.Stack(originals.Select(o => ImageIO.ToTensor(o)).ToList(), 0);
                var reconstructions = TokenizerEvaluation.Reconstruct(model, batch).Reconstructions;
                var reconstructed = Enumerable.Range(0, chunk.Length).Select(i => ImageIO.FromTensor(reconstructions.Select0(i))).ToList();
                for (int i = 0; i < chunk.Length; i++)
                    ImageIO.Write(Path.Combine(outputDir, Path.GetFileNameWithoutExtension(chunk[i]) + ".png"), reconstructed[i]);
                gridTiles.AddRange(Padded(originals, columns));
                gridTiles.AddRange(Padded(reconstructed, columns));
            }
            string gridPath = Path.Combine(outputDir, GridFileName);
            ImageIO.Write(gridPath, ImageIO.MakeGrid(gridTiles, nrow: columns));
            stdout.WriteLine($"reconstructed {files.Count} images into {outputDir} (grid: {gridPath})");
            return Program.ExitOk;
        }));
        return command;
    }

    /// <summary>Files as given, folders expanded to their image files (sorted); duplicate names are an error
    /// since each reconstruction is written as &lt;name&gt;.png.</summary>
    private static List<string> ImageFiles(IEnumerable<string> arguments)
    {
        var files = new List<string>();
        foreach (var a in arguments)
        {
            if (Directory.Exists(a))
                files.AddRange(Directory.EnumerateFiles(a).Where(f => ImageExtensions.Contains(Path.GetExtension(f))).Order(StringComparer.Ordinal));
            else if (File.Exists(a)) files.Add(a);
            else throw new FileNotFoundException($"--images: no such file or folder: {a}", a);
        }
        if (files.Count == 0) throw new FileNotFoundException("--images: no .png/.jpg/.jpeg files found");
        var duplicate = files.GroupBy(f => Path.GetFileNameWithoutExtension(f), StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate != null) throw new UsageException($"--images: two images are named '{duplicate.Key}' ({string.Join(", ", duplicate)})");
        return files;
    }

    /// <summary>A grid row of <paramref name="columns"/> tiles, black where the last chunk is short.</summary>
    private static IEnumerable<HostImage> Padded(List<HostImage> row, int columns)
    {
        foreach (var image in row) yield return image;
        for (int i = row.Count; i < columns; i++) yield return new HostImage(row[0].Height, row[0].Width, row[0].Channels);
    }
}
