using System.CommandLine;
using MaskBit.Distributed;
using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>A mistake in how a command was called (a flag's value, a missing flag): exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>Options and error handling shared by the model commands.</summary>
internal static class CommandSupport
{
    /// <summary>Set to 1 to see the stack trace of an unexpected error instead of its one-line summary.</summary>
    public const string TraceVariable = "MASKBIT_TRACE";

    public static Option<string> ConfigOption() =>
        new("--config") { Required = true, Description = "A config YAML in the original MaskBit schema." };

    /// <summary>--config for commands that fall back to the shipped model's config when it is omitted.</summary>
    public static Option<string?> OptionalConfigOption() =>
        new("--config") { Description = $"A config YAML in the original MaskBit schema (default: the shipped model's, {ShippedModel.DisplayFolder})." };

    public static Argument<string[]> OverridesArgument()
    {
        var overrides = new Argument<string[]>("overrides") { Arity = ArgumentArity.ZeroOrMore, Description = "Config overrides a.b.c=value (YAML values), e.g. training.max_train_steps=20." };
        // Unknown flags would otherwise land here as overrides; report them as the flags they look like.
        overrides.Validators.Add(result =>
        {
            foreach (var token in result.Tokens.Where(t => t.Value.StartsWith('-')))
                result.AddError($"unknown option '{token.Value}'");
        });
        return overrides;
    }

    /// <summary>Tokenizer weights: --checkpoint (the issues' name), also accepted as --weights.</summary>
    public static Option<string> CheckpointOption() =>
        new("--checkpoint", "--weights") { Required = true, Description = "Tokenizer weights: a training checkpoint or official weights (.bin, .safetensors)." };

    public static Option<bool> NoEmaOption() =>
        new("--no-ema") { Description = "Use the raw weights of a training checkpoint instead of its EMA weights." };

    /// <summary>--seed: the seed of every random draw of a command (training.seed for training).</summary>
    public static Option<int?> SeedOption(string description) => new("--seed") { Description = description };

    /// <summary>--device cpu|cuda|ilgpu-cpu (see <see cref="DeviceChoice"/>).</summary>
    public static Option<string> DeviceOption() => DeviceChoice.Option();

    /// <summary>A command description with its examples, which <see cref="ExamplesHelp"/> prints at the end of the
    /// command's --help.</summary>
    public static string Describe(string summary, params string[] examples) =>
        summary + ExamplesHelp.Marker + string.Join("\n", examples.Select(e => "  " + e));

    /// <summary>Loads a config and validates its sections once (<see cref="ConfigSections.Validate"/>): a missing file
    /// is a missing input (exit 1), a bad or unimplemented key, type, value or override a usage error (exit 2).</summary>
    public static MaskBitConfig LoadConfig(string path, IReadOnlyList<string>? overrides)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"--config: file not found: {path} (the configs that come with MaskBit are in configs/, e.g. configs/fashion_mnist_tokenizer.yaml)", path);
        var config = MaskBitConfig.Load(path, overrides ?? Array.Empty<string>());
        ConfigSections.Validate(config);
        return config;
    }

    /// <summary>Checks that an input file exists; the message names the flag and says what to do instead.</summary>
    public static string RequireFile(string path, string flag, string remedy) =>
        File.Exists(path) ? path : throw new FileNotFoundException($"{flag}: file not found: {path} ({remedy})", path);

    /// <summary>
    /// Runs a command body on the chosen device and turns failures into one line on stderr and an exit code:
    /// 2 for usage (bad flag values, bad config keys or types), 1 for a failed run (missing or unreadable
    /// files, a diverged training run, an op the device cannot run, anything unexpected). Set MASKBIT_TRACE=1
    /// for the stack trace of an unexpected error.
    /// </summary>
    public static int Guard(TextWriter stderr, Func<int> body) => Guard(stderr, null, body);

    /// <summary><see cref="Guard(TextWriter, Func{int})"/> with the command's <c>--device</c> value: the body runs
    /// with that device as <see cref="MaskBit.Autograd.Device.Default"/>.</summary>
    public static int Guard(TextWriter stderr, string? device, Func<int> body)
    {
        try
        {
            using var scope = device != null ? DeviceChoice.Use(device) : null;
            try { return body(); }
            catch (NotSupportedException e) when (device is not null and not DeviceChoice.Cpu)
            {
                return Fail(stderr, $"--device {device}: {e.Message}; use --device cpu for this command", Program.ExitFailed);
            }
        }
        catch (UsageException e) { return Fail(stderr, e.Message, Program.ExitUsage); }
        catch (ConfigException e) { return Fail(stderr, e.Message, Program.ExitUsage); }
        catch (TrainingDivergedException e) { return Fail(stderr, e.Message, Program.ExitFailed); }
        catch (CheckpointFormatException e) { return Fail(stderr, e.Message, Program.ExitFailed); }
        catch (DeviceUnavailableException e) { return Fail(stderr, e.Message, Program.ExitFailed); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or InvalidDataException or IOException
                                      or UnauthorizedAccessException or NotSupportedException)
        {
            return Fail(stderr, e.Message, Program.ExitFailed);
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable(TraceVariable) != "1")
        {
            return Fail(stderr, $"internal error: {e.Message} (a bug in MaskBit: set {TraceVariable}=1 to see where, and report it)", Program.ExitFailed);
        }
    }

    /// <summary>A trainer's log: under mpirun only rank 0 writes (the others' notices would repeat its lines).</summary>
    public static TextWriter RankLog(TextWriter log) => LaunchInfo.FromEnvironment() is { Rank: > 0 } ? TextWriter.Null : log;

    /// <summary>The one-line error and the exit code. A rank of a job launched by mpirun cannot just return: its
    /// peers would wait for it in their next collective, so it aborts the whole job with the line naming it.</summary>
    private static int Fail(TextWriter stderr, string message, int code)
    {
        // A name or value read from a hostile file may hold NULs or other control characters.
        message = string.Concat(message.Select(c => c == '\n' || !char.IsControl(c) ? c : '?'));
        if (ProcessGroup.IsCreated && ProcessGroup.World is { WorldSize: > 1 } group)
        {
            stderr.Flush();
            group.Abort($"error: rank {group.Rank} of {group.WorldSize}: {message}", code);
        }
        stderr.WriteLine($"error: {message}");
        return code;
    }

    /// <summary>The tokenizer of a config with the given weights (training checkpoint or official file).</summary>
    public static Option<bool> NonStrictOption() =>
        new("--non-strict") { Description = "Load a weights file even if keys are missing or unexpected or shapes differ; list them as warnings." };

    /// <summary>--precision of the commands that run models without training them (generate, eval): the autocast
    /// type of their forwards, no (float32), bf16 or fp16; <see cref="MaskBit.Autograd.Autocast.Parse"/> reads it.</summary>
    public static Option<string> PrecisionOption(string forwards)
    {
        var option = new Option<string>("--precision")
        {
            Description = $"Autocast of {forwards}: no (float32), bf16 or fp16 (matmul, conv and attention in 16 bits with float32 accumulation, their weights stored in 16 bits).",
            DefaultValueFactory = _ => "no",
        };
        option.AcceptOnlyFromAmong("no", "bf16", "fp16");
        return option;
    }

    public static ImageTokenizer LoadTokenizer(MaskBitConfig config, string weights, bool preferEma, TextWriter stdout, bool nonStrict = false) =>
        PretrainedModels.Tokenizer(config, weights, preferEma, line => stdout.WriteLine($"loaded {line}"),
            nonStrict ? problem => stdout.WriteLine($"warning: {weights}: {problem}") : null);
}
