using System.CommandLine;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>Options and error handling shared by the model commands.</summary>
internal static class CommandSupport
{
    public static Option<string> ConfigOption() =>
        new("--config") { Required = true, Description = "A config YAML in the original MaskBit schema." };

    public static Argument<string[]> OverridesArgument() =>
        new("overrides") { Arity = ArgumentArity.ZeroOrMore, Description = "Config overrides a.b.c=value (YAML values), e.g. training.max_train_steps=20." };

    /// <summary>Tokenizer weights: --checkpoint (the issues' name), also accepted as --weights.</summary>
    public static Option<string> CheckpointOption() =>
        new("--checkpoint", "--weights") { Required = true, Description = "Tokenizer weights: a training checkpoint or official weights (.bin, .safetensors)." };

    public static Option<bool> NoEmaOption() =>
        new("--no-ema") { Description = "Use the raw weights of a training checkpoint instead of its EMA weights." };

    /// <summary>Runs a command body, turning the expected failures into a message on stderr and an exit code:
    /// 2 for a bad config or usage, 1 for missing or unreadable files, 3 for a diverged training run.</summary>
    public static int Guard(TextWriter stderr, Func<int> body)
    {
        try { return body(); }
        catch (ConfigException e) { return Fail(stderr, e.Message, Program.ExitUsage); }
        catch (TrainingDivergedException e) { return Fail(stderr, e.Message, Program.ExitFailed); }
        catch (CheckpointFormatException e) { return Fail(stderr, e.Message, Program.ExitBadFile); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return Fail(stderr, e.Message, Program.ExitBadFile);
        }
    }

    private static int Fail(TextWriter stderr, string message, int code)
    {
        stderr.WriteLine($"error: {message}");
        return code;
    }

    /// <summary>The tokenizer of a config with the given weights (training checkpoint or official file).</summary>
    public static Option<bool> NonStrictOption() =>
        new("--non-strict") { Description = "Load a weights file even if keys are missing or unexpected or shapes differ; list them as warnings." };

    public static ImageTokenizer LoadTokenizer(MaskBitConfig config, string weights, bool preferEma, TextWriter stdout, bool nonStrict = false)
    {
        var model = ImageTokenizer.FromConfig(config);
        var source = TokenizerWeights.Load(model, weights, preferEma, nonStrict ? problem => stdout.WriteLine($"warning: {weights}: {problem}") : null);
        stdout.WriteLine($"loaded {weights} ({source switch { WeightsSource.TrainingEma => "EMA weights of a training checkpoint", WeightsSource.TrainingRaw => "raw weights of a training checkpoint", _ => "weights file" }})");
        model.Eval();
        return model;
    }
}
