using System.CommandLine;
using MaskBit.Autograd;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit reconstruct`: encodes and decodes images (files, folders or the `images` array of an .npz)
/// with a tokenizer; writes each reconstruction, a grid (rows of originals, each above its reconstructions) and
/// out.npz (tokens, reconstructions, the input images).</summary>
internal static class ReconstructCommand
{
    public const string GridFileName = "grid.png";
    public const string NpzFileName = "out.npz";
    public const string NpzImagesKey = "images";
    private const int GridColumns = 8;
    private static readonly HashSet<string> ImageExtensions = new(StringComparer.OrdinalIgnoreCase) { ".png", ".jpg", ".jpeg" };

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.OptionalConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var weights = new Option<string?>("--checkpoint", "--weights") { Description = $"A training checkpoint or official tokenizer weights (.bin, .safetensors); default: the shipped model's ({ShippedModel.DisplayFolder})." };
        var images = new Option<string[]>("--images")
        {
            AllowMultipleArgumentsPerToken = true,
            Description = "Image files, or folders whose .png/.jpg/.jpeg files are read (resized and centre-cropped to dataset.preprocessing.resolution).",
        };
        var input = new Option<string?>("--input")
        {
            Description = "Instead of --images: an .npz whose 'images' array is float32 (N, 3, H, W) in [0, 1] or uint8 (N, H, W, 3), used as is.",
        };
        var output = new Option<string>("--out") { Required = true, Description = "Folder for the reconstructions, grid.png and out.npz." };
        var noEma = CommandSupport.NoEmaOption();
        var nonStrict = CommandSupport.NonStrictOption();
        var device = CommandSupport.DeviceOption();
        var strict = SkipReport.StrictOption();
        var command = new Command("reconstruct", CommandSupport.Describe(
            $"Reconstruct images with a tokenizer (the shipped Fashion-MNIST one in {ShippedModel.DisplayFolder} when no --checkpoint is given): " +
            "writes <name>.png per image, grid.png and out.npz (tokens int64, reconstructions and images float32 (N, 3, H, W) in [0, 1]).",
            "maskbit reconstruct --images photos/ --out recon",
            "maskbit reconstruct --input batch.npz --out recon",
            "maskbit reconstruct --config configs/fashion_mnist_tokenizer.yaml --checkpoint runs/tokenizer/checkpoint-600.safetensors --images a.png b.png --out recon"))
        {
            config, overrides, weights, images, input, output, noEma, nonStrict, device, strict,
        };
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(device), () =>
        {
            var (configPath, weightsPath) = (parse.GetValue(config), parse.GetValue(weights));
            if (weightsPath == null)
            {
                configPath ??= ShippedModel.TokenizerConfig;
                weightsPath = ShippedModel.TokenizerWeights;
                ShippedModel.Require(configPath, weightsPath);
                stdout.WriteLine($"no --checkpoint given: using the shipped Fashion-MNIST tokenizer ({ShippedModel.DisplayFolder})");
            }
            else if (configPath == null) throw new UsageException("--config is missing: with your own --checkpoint pass the config they were trained with");
            else CommandSupport.RequireFile(weightsPath, "--checkpoint", "pass a checkpoint of `maskbit train tokenizer`, or omit --checkpoint for the shipped model");
            var cfg = CommandSupport.LoadConfig(configPath, parse.GetValue(overrides));
            string[]? imageArguments = parse.GetValue(images) is { Length: > 0 } given ? given : null;
            string? npzPath = parse.GetValue(input);
            if ((imageArguments == null) == (npzPath == null))
                throw new ConfigException("reconstruct needs either --images FILES|FOLDERS or --input X.npz (one of them)");
            int channels = TrainingData.Channels(cfg);
            var skips = new SkipReport(stderr, parse.GetValue(strict));
            var source = npzPath != null ? ImageSource.FromNpz(npzPath, channels) : ImageSource.FromFiles(ImageFiles(imageArguments!), TrainingData.Transform(cfg), channels, skips);
            var model = CommandSupport.LoadTokenizer(cfg, weightsPath, !parse.GetValue(noEma), stdout, parse.GetValue(nonStrict));
            int factor = model.DownsampleFactor;
            if (npzPath != null && (source.Height % factor != 0 || source.Width % factor != 0))
                throw new InvalidDataException($"{npzPath}: '{NpzImagesKey}' images are {source.Height}×{source.Width}; the tokenizer needs multiples of {factor}");
            string outputDir = parse.GetValue(output)!;
            Directory.CreateDirectory(outputDir);

            int count = source.Names.Count, columns = Math.Min(GridColumns, count);
            var gridTiles = new List<HostImage>();
            var inputs = new List<float>();
            var reconstructions = new List<float>();
            var tokens = new List<long>();
            for (int start = 0; start < count; start += GridColumns)
            {
                int n = Math.Min(GridColumns, count - start);
                using var scope = TensorScope.Begin();
                var batch = source.Batch(start, n);
                var (decoded, batchTokens) = TokenizerEvaluation.Reconstruct(model, batch);
                var originals = Enumerable.Range(0, n).Select(i => ImageIO.FromTensor(batch.Select0(i))).ToList();
                var reconstructed = Enumerable.Range(0, n).Select(i => ImageIO.FromTensor(decoded.Select0(i))).ToList();
                for (int i = 0; i < n; i++)
                    ImageIO.Write(Path.Combine(outputDir, source.Names[start + i] + ".png"), reconstructed[i]);
                gridTiles.AddRange(Padded(originals, columns));
                gridTiles.AddRange(Padded(reconstructed, columns));
                inputs.AddRange(batch.ToArray());
                reconstructions.AddRange(decoded.ToArray());
                tokens.AddRange(batchTokens.Select(t => (long)t));
            }
            string gridPath = Path.Combine(outputDir, GridFileName);
            ImageIO.Write(gridPath, ImageIO.MakeGrid(gridTiles, nrow: columns));
            int[] shape = { count, channels, source.Height, source.Width };
            int tokenRows = source.Height / factor;
            Npy.WriteNpz(Path.Combine(outputDir, NpzFileName), new Dictionary<string, NpyArray>
            {
                ["tokens"] = NpyArray.FromInt64(tokens.ToArray(), count, tokenRows, tokens.Count / count / tokenRows),
                ["reconstructions"] = NpyArray.FromFloats(reconstructions.ToArray(), shape),
                [NpzImagesKey] = NpyArray.FromFloats(inputs.ToArray(), shape),
            });
            stdout.WriteLine($"reconstructed {count} images into {outputDir} (grid: {gridPath}, arrays: {NpzFileName})");
            return Program.ExitOk;
        }));
        return command;
    }

    /// <summary>The images to reconstruct, all of one size: their output names and batches (B, C, H, W) in [0, 1].</summary>
    private sealed record ImageSource(IReadOnlyList<string> Names, int Height, int Width, Func<int, int, Tensor> Batch)
    {
        /// <summary>The image files, each decoded once (resized and cropped to the config's resolution); an
        /// unreadable one is reported and left out (<see cref="SkipReport"/>).</summary>
        public static ImageSource FromFiles(List<string> files, ImageTransform transform, int channels, SkipReport skips)
        {
            var names = new List<string>();
            var images = new List<HostImage>();
            foreach (var file in files)
            {
                try { images.Add(transform.Eval(ImageIO.Read(file, channels))); }
                catch (InvalidDataException e) { skips.Skip(e.Message); continue; }
                names.Add(Path.GetFileNameWithoutExtension(file));
            }
            skips.Finish(files.Count, "images");
            return new ImageSource(names, images[0].Height, images[0].Width,
                (start, n) => Tensor.Stack(images.Skip(start).Take(n).Select(i => ImageIO.ToTensor(i)).ToList(), 0));
        }

        /// <summary>The `images` array of an .npz: float32 (N, C, H, W) in [0, 1], or uint8 (N, H, W, C) scaled by
        /// 1/255. Anything else is an error naming the file, the key and what was found.</summary>
        public static ImageSource FromNpz(string path, int channels)
        {
            var arrays = Npy.ReadNpz(path);
            if (!arrays.TryGetValue(NpzImagesKey, out var array))
            {
                const int listed = 8;
                string keys = arrays.Count == 0 ? "none" : string.Join(", ", arrays.Keys.Take(listed).Select(k => $"'{k}'")) + (arrays.Count > listed ? $", … ({arrays.Count} in all)" : "");
                throw new InvalidDataException($"{path}: no '{NpzImagesKey}' array (it has: {keys})");
            }
            string expected = $"expected float32 (N, {channels}, H, W) in [0, 1] or uint8 (N, H, W, {channels})";
            string found = $"'{NpzImagesKey}' is {array.Type.ToString().ToLowerInvariant()} [{string.Join(", ", array.Shape)}]";
            int[] s = array.Shape;
            bool channelsFirst = array.Type == NpyType.Float32;
            if (array.Type is not (NpyType.Float32 or NpyType.UInt8) || s.Length != 4 || s.Any(d => d < 1) || (channelsFirst ? s[1] : s[3]) != channels)
                throw new InvalidDataException($"{path}: {found}; {expected}");
            int count = s[0], height = channelsFirst ? s[2] : s[1], width = channelsFirst ? s[3] : s[2];
            float[] chw;
            if (channelsFirst)
            {
                chw = array.ToFloat32();
                int bad = Array.FindIndex(chw, v => !(v >= 0f && v <= 1f));
                if (bad >= 0) throw new InvalidDataException($"{path}: {found} holds {chw[bad]} at flat index {bad}; {expected}");
            }
            else
            {
                // NHWC bytes → NCHW floats.
                chw = new float[array.Count];
                int plane = height * width;
                for (int i = 0; i < count; i++)
                    for (int p = 0; p < plane; p++)
                        for (int c = 0; c < channels; c++)
                            chw[(i * channels + c) * plane + p] = array.Data[(i * plane + p) * channels + c] / 255f;
            }
            string stem = Path.GetFileNameWithoutExtension(path);
            int imageSize = channels * height * width;
            return new ImageSource(Enumerable.Range(0, count).Select(i => $"{stem}_{i:D4}").ToList(), height, width,
                (start, n) => Tensor.FromArray(chw.AsSpan(start * imageSize, n * imageSize), new[] { n, channels, height, width }));
        }
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
