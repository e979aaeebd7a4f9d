using System.CommandLine;
using System.Globalization;
using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Distributed;
using MaskBit.Kernels;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Metrics;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>The sampling flags shared by `generate` and `eval generator`, and the loaded models they act on.</summary>
internal sealed class SamplingFlags
{
    public Option<string?> Config { get; } = CommandSupport.OptionalConfigOption();
    public Argument<string[]> Overrides { get; } = CommandSupport.OverridesArgument();
    public Option<string?> Tokenizer { get; } = new("--tokenizer") { Description = $"Tokenizer weights (MaskBit training checkpoint or official .bin; default: the config's experiment.vqgan_checkpoint with --generator, else the shipped model's, {ShippedModel.DisplayFolder})." };
    public Option<string?> Generator { get; } = new("--generator") { Description = $"Generator weights: generator.safetensors, a training checkpoint (its EMA weights) or an official .bin (default: the shipped model's, {ShippedModel.DisplayFolder})." };
    public Option<string> Device { get; } = CommandSupport.DeviceOption();
    public Option<int?> Steps { get; } = new("--steps") { Description = "Sampling steps (default: model.mlm_model.num_steps)." };
    public Option<double?> Guidance { get; } = new("--guidance") { Description = "Classifier-free guidance scale, 0 for none (default: model.mlm_model.guidance_scale)." };
    public Option<double?> Temperature { get; } = new("--temperature") { Description = "Softmax temperature (default: model.mlm_model.softmax_temperature)." };
    public Option<long> Seed { get; } = new("--seed") { Description = "Seed of the sampling draws; the same seed gives the same images.", DefaultValueFactory = _ => 0 };
    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Images sampled per forward batch.", DefaultValueFactory = _ => 32 };
    public Option<bool> NonStrict { get; } = CommandSupport.NonStrictOption();
    public Option<string> Precision { get; } = CommandSupport.PrecisionOption("the sampling forwards");

    public void AddTo(Command command)
    {
        command.Arguments.Add(Overrides);
        foreach (var o in new Option[] { Config, Tokenizer, Generator, Steps, Guidance, Temperature, Seed, BatchSize, NonStrict, Precision, Device }) command.Options.Add(o);
    }

    /// <summary>Checks the values, loads config and both models (the shipped model when no weights are given; says
    /// so on <paramref name="stdout"/>). Null with <paramref name="exitCode"/> set on a usage error.</summary>
    public Loaded? Load(ParseResult parse, TextWriter stdout, TextWriter stderr, out int exitCode)
    {
        exitCode = Program.ExitUsage;
        if (parse.GetValue(Steps) is < 1) { GeneratorCommands.Usage(stderr, "--steps", $"must be at least 1, got {parse.GetValue(Steps)}"); return null; }
        if (parse.GetValue(Guidance) is { } g && (g < 0 || !double.IsFinite(g))) { GeneratorCommands.Usage(stderr, "--guidance", $"must be a finite number ≥ 0, got {g}"); return null; }
        if (parse.GetValue(Temperature) is { } t && (t <= 0 || !double.IsFinite(t))) { GeneratorCommands.Usage(stderr, "--temperature", $"must be a positive number, got {t}"); return null; }
        if (parse.GetValue(BatchSize) < 1) { GeneratorCommands.Usage(stderr, "--batch-size", $"must be at least 1, got {parse.GetValue(BatchSize)}"); return null; }
        var (configPath, tokenizerPath, generatorPath) = Files(parse, stdout);
        var config = CommandSupport.LoadConfig(configPath, parse.GetValue(Overrides));
        if (tokenizerPath == null)
        {
            // As the reference's scripts: the tokenizer of a generator config is experiment.vqgan_checkpoint.
            tokenizerPath = config.Has(VqganCheckpointKey) ? config.GetString(VqganCheckpointKey)
                : throw new UsageException($"--tokenizer is missing: pass the tokenizer weights or set {VqganCheckpointKey} in {config.File}");
            CommandSupport.RequireFile(tokenizerPath, $"{config.File}: {VqganCheckpointKey}", "set it to the tokenizer weights, or pass --tokenizer");
        }
        var defaults = SamplerOptions.FromConfig(config);
        var options = defaults with
        {
            NumSteps = parse.GetValue(Steps) ?? defaults.NumSteps,
            GuidanceScale = parse.GetValue(Guidance) ?? defaults.GuidanceScale,
            SoftmaxTemperature = parse.GetValue(Temperature) ?? defaults.SoftmaxTemperature,
        };
        Action<string>? Warn(string path) => parse.GetValue(NonStrict) ? problem => stdout.WriteLine($"warning: {path}: {problem}") : null;
        var precision = Autocast.Parse(parse.GetValue(Precision), "--precision");
        ImageTokenizer tokenizer;
        MaskedGenerator generator;
        // 16-bit sampling keeps the GEMM and conv weights in that type: half the model's memory.
        using (Module.StoreWeightsIn(precision))
        {
            tokenizer = PretrainedModels.Tokenizer(config, tokenizerPath, warn: Warn(tokenizerPath));
            generator = PretrainedModels.Generator(config, generatorPath, warn: Warn(generatorPath));
        }
        exitCode = Program.ExitOk;
        string weights = string.Join(", ", new[] { ("config", configPath), ("tokenizer", tokenizerPath), ("generator", generatorPath) }
            .Select(f => $"{f.Item1} {Path.GetFullPath(f.Item2)} ({new FileInfo(f.Item2).Length} bytes)"))
            + $", overrides [{string.Join(" ", parse.GetValue(Overrides) ?? Array.Empty<string>())}]";
        return new Loaded(config, new Sampler(generator, tokenizer), options, parse.GetValue(Seed), parse.GetValue(BatchSize), weights, precision);
    }

    private const string VqganCheckpointKey = "experiment.vqgan_checkpoint";

    /// <summary>The config and weights files: as given, or all three of the shipped model when neither weights
    /// file is given. The tokenizer may be left to the config's experiment.vqgan_checkpoint (null here).</summary>
    private (string Config, string? Tokenizer, string Generator) Files(ParseResult parse, TextWriter stdout)
    {
        string? config = parse.GetValue(Config), tokenizer = parse.GetValue(Tokenizer), generator = parse.GetValue(Generator);
        if (tokenizer == null && generator == null)
        {
            ShippedModel.Require(config ?? ShippedModel.GeneratorConfig, ShippedModel.TokenizerWeights, ShippedModel.GeneratorWeights);
            stdout.WriteLine($"no --tokenizer/--generator given: using the shipped Fashion-MNIST model ({ShippedModel.DisplayFolder})");
            return (config ?? ShippedModel.GeneratorConfig, ShippedModel.TokenizerWeights, ShippedModel.GeneratorWeights);
        }
        if (generator == null || config == null)
            throw new UsageException($"{(generator == null ? "--generator" : "--config")} is missing: with your own weights pass " +
                                     "--config, --generator and --tokenizer (or experiment.vqgan_checkpoint in the config), or none of them for the shipped model");
        const string remedy = "pass the weights of a `maskbit train tokenizer` / `maskbit train generator` run or official weights, or omit --tokenizer and --generator for the shipped model";
        return (config, tokenizer == null ? null : CommandSupport.RequireFile(tokenizer, "--tokenizer", remedy), CommandSupport.RequireFile(generator, "--generator", remedy));
    }

    /// <param name="Files">The config, weights and overrides the samples depend on (an evaluation state records them).</param>
    /// <param name="Precision">The autocast type of the sampling forwards (--precision), null for float32.</param>
    internal sealed record Loaded(MaskBitConfig Config, Sampler Sampler, SamplerOptions Options, long Seed, int BatchSize, string Files,
        DType? Precision)
    {
        public int NumClasses => Sampler.Generator.Config.NumClasses;

        /// <summary>The host copy of the last batch's images, reused by the next batch of the same size.</summary>
        private float[] _images = [];

        /// <summary>One batch of samples drawn with <paramref name="random"/>: images (N,3,H,W) clamped to [0,1], valid
        /// until the next call.</summary>
        public ImageBatch SampleBatch(int[] labels, IRandomSource random)
        {
            using var scope = TensorScope.Begin();
            using var autocast = Autocast.Enable(Precision);
            var batch = ImageBatch.FromTensor(Sampler.Sample(labels, Options, random).Images.Clamp(0f, 1f), _images);
            _images = batch.Data;
            return batch;
        }

        /// <summary>Samples labels [<paramref name="first"/>, <paramref name="end"/>) in batches of <see cref="BatchSize"/>
        /// that start at multiples of it, each from its own seed (<see cref="GeneratorEvaluation.BatchSeed"/>, as
        /// eval generator), so a sample depends on the seed, the batch size and its index, not on which rank draws
        /// it: images (n,C,H,W) clamped to [0,1] as a flat array, the shape (C,H,W) of one (empty for no labels) and
        /// combined tokens (n, seq_len). <paramref name="progress"/> sees the images done after each batch.</summary>
        public (float[] Images, int[] ImageShape, int[] Tokens) Sample(IReadOnlyList<int> labels, long first, long end, ProgressDisplay? progress = null)
        {
            var images = new List<float>();
            var tokens = new List<int>();
            int[] shape = [];
            for (long start = first; start < end; start += BatchSize)
            {
                using var scope = TensorScope.Begin();
                using var autocast = Autocast.Enable(Precision);
                var batch = labels.Skip((int)start).Take((int)Math.Min(BatchSize, end - start)).ToArray();
                var result = Sampler.Sample(batch, Options, new SeededRandomSource(GeneratorEvaluation.BatchSeed(Seed, start)));
                images.AddRange(result.Images.Clamp(0f, 1f).ToArray());
                tokens.AddRange(result.CombinedTokens.ToIntArray());
                shape = result.Images.Shape[1..];
                progress?.Report(start - first + batch.Length, end - first);
            }
            return (images.ToArray(), shape, tokens.ToArray());
        }
    }
}

/// <summary>`maskbit generate --config C --tokenizer W1 --generator W2 --classes 1,7,282 [--per-class N] [--steps S]
/// [--guidance G] [--temperature T] [--seed K] --out DIR`: one PNG per sample, grid.png (one row per class) and
/// samples.npz (images (N,3,H,W) float32 in [0,1], labels int64, tokens (N, seq_len) int64).</summary>
public static class GenerateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var flags = new SamplingFlags();
        var classes = new Option<string>("--classes") { Description = "Comma-separated class ids, e.g. 1,7,282.", Required = true };
        var perClass = new Option<int>("--per-class") { Description = "Samples per class.", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out") { Description = "Output folder.", Required = true };
        var command = new Command("generate", CommandSupport.Describe(
            $"Sample class-conditional images with a trained generator and tokenizer (the shipped Fashion-MNIST model in {ShippedModel.DisplayFolder} " +
            "when no weights are given): one PNG per sample, grid.png (a row per class) and samples.npz (images N,C,H,W float32 in [0,1], labels, tokens).",
            "maskbit generate --classes 0,1,2 --per-class 8 --seed 1 --out samples",
            "maskbit generate --config configs/fashion_mnist_generator.yaml --tokenizer runs/tokenizer/checkpoint-600.safetensors --generator runs/generator/generator.safetensors --classes 7 --out samples"));
        flags.AddTo(command);
        command.Options.Add(classes);
        command.Options.Add(perClass);
        command.Options.Add(output);
        command.SetAction(parse => CommandSupport.Guard(stderr, parse.GetValue(flags.Device), () =>
        {
            // Under mpirun each rank samples a share of whole batches; rank 0 gathers them and writes every file.
            var group = ProcessGroup.World;
            var log = group.IsMain() ? stdout : TextWriter.Null;
            var classIds = new List<int>();
            foreach (var part in parse.GetValue(classes)!.Split(',', StringSplitOptions.TrimEntries))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                    return GeneratorCommands.Usage(stderr, "--classes", $"'{part}' is not a class id (expected comma-separated non-negative integers, e.g. 1,7,282)");
                classIds.Add(id);
            }
            int n = parse.GetValue(perClass);
            if (n < 1) return GeneratorCommands.Usage(stderr, "--per-class", $"must be at least 1, got {n}");
            var loaded = flags.Load(parse, log, stderr, out int code);
            if (loaded == null) return code;
            if (classIds.FirstOrDefault(c => c >= loaded.NumClasses, -1) is var bad and >= 0)
                return GeneratorCommands.Usage(stderr, "--classes", $"class {bad} is outside 0…{loaded.NumClasses - 1} (model.mlm_model.nclass = {loaded.NumClasses})");

            var labels = classIds.SelectMany(c => Enumerable.Repeat(c, n)).ToArray();
            var (first, end) = GeneratorEvaluation.Share(labels.Length, loaded.BatchSize, group.Rank, group.WorldSize);
            var (myImages, imageShape, myTokens) = loaded.Sample(labels, first, end, new ProgressDisplay(log, "generate", unit: "img"));
            var images = group.AllGather<float>(myImages).SelectMany(part => part).ToArray();
            var tokens = group.AllGather<int>(myTokens).SelectMany(part => part).ToArray();
            // Rank 0's share is never empty: its images give the shape.
            if (!group.IsMain()) return Program.ExitOk;
            int size = images.Length / labels.Length;
            int[] shape = [labels.Length, .. imageShape];
            string outDir = parse.GetValue(output)!;
            Directory.CreateDirectory(outDir);
            var batch = Tensor.FromArray(images, shape);
            for (int i = 0; i < labels.Length; i++)
                ImageIO.Write(Path.Combine(outDir, $"class{labels[i]:D4}_{i % n:D3}.png"),
                    ImageIO.FromTensor(Tensor.FromArray(images.AsSpan(i * size, size), shape[1..])));
            ImageIO.SaveGrid(Path.Combine(outDir, "grid.png"), batch, nrow: n);
            Npy.WriteNpz(Path.Combine(outDir, "samples.npz"), new Dictionary<string, NpyArray>
            {
                ["images"] = NpyArray.FromFloats(images, shape),
                ["labels"] = NpyArray.FromInt64(labels.Select(l => (long)l).ToArray(), labels.Length),
                ["tokens"] = NpyArray.FromInt64(tokens.Select(t => (long)t).ToArray(), labels.Length, tokens.Length / labels.Length),
            });
            stdout.WriteLine($"wrote {labels.Length} samples, grid.png and samples.npz to {outDir}");
            return Program.ExitOk;
        }));
        return command;
    }
}
