using System.CommandLine;
using System.Runtime.Intrinsics.X86;
using MaskBit.Cli.Commands;
using MaskBit.Kernels.Cpu;
using MaskBit.Models.Interop;

namespace MaskBit.Cli;

/// <summary>The `maskbit` command: `info` reports the compute devices this machine offers, `inspect` lists the
/// tensors of a weights file; `train tokenizer`, `eval tokenizer` and `reconstruct` live in Commands/.</summary>
public static partial class Program
{
    /// <summary>Exit codes of every command (README "Exit codes"): 0 done; 1 the run failed (a missing or
    /// unreadable file, a diverged training run, an op the device cannot run); 2 usage (unknown command, bad
    /// flag or value, bad config key or type); 130 training stopped by Ctrl-C / SIGTERM after writing a
    /// resumable checkpoint (128 + SIGINT, as shells report an interrupted program).</summary>
    public const int ExitOk = 0, ExitFailed = 1, ExitUsage = 2, ExitInterrupted = 130;
    /// <summary>Same code as <see cref="ExitFailed"/>: a missing or unreadable input file.</summary>
    public const int ExitBadFile = ExitFailed;

    public const string ExitCodesHelp = "Exit codes: 0 done; 1 failed (missing or bad file, diverged run, op not supported on the device); " +
                                        "2 usage (unknown command, bad flag, bad config key or type); 130 training stopped by Ctrl-C with a resumable checkpoint.";

    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the command line with explicit output streams (tests call this in-process).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        // The CPU kernels' ISA is fixed at start-up: a bad MASKBIT_ISA is a usage error before any command runs.
        try { _ = CpuIsa.Current; }
        catch (NotSupportedException e) { stderr.WriteLine($"error: {e.Message}"); return ExitUsage; }
        var root = new RootCommand(CommandSupport.Describe(
            "MaskBit in .NET: bit-token image tokenizer and generator on a from-scratch engine. " +
            "Run 'maskbit COMMAND --help' for a command's flags and examples. " + ExitCodesHelp,
            "maskbit generate --classes 0,1,2 --per-class 8 --seed 1 --out samples   # the shipped Fashion-MNIST model",
            "maskbit train tokenizer --config configs/fashion_mnist_tokenizer.yaml --out runs/tokenizer"));
        var info = new Command("info", "Show the compute devices and CPU features MaskBit will use.");
        info.SetAction(_ =>
        {
            stdout.WriteLine($"cpu: {Environment.ProcessorCount} cores, AVX2 {Avx2.IsSupported}, FMA {Fma.IsSupported}, " +
                             $"AVX-512F {Avx512F.IsSupported}, worker threads {CpuParallel.Workers}");
            stdout.WriteLine($"cpu kernels: {CpuIsa.Name(CpuIsa.Current)} (best {CpuIsa.Name(CpuIsa.Best)}; {CpuIsa.Variable}=avx512|avx2|scalar forces one), " +
                             $"caches {CpuCaches.Current}");
            foreach (var line in MaskBit.Kernels.Ilgpu.IlgpuBackend.DescribeCuda()) stdout.WriteLine(line);
            stdout.WriteLine($"default device: {CpuBackend.Instance.Name}");
            return ExitOk;
        });
        root.Subcommands.Add(info);
        root.Subcommands.Add(InspectCommand(stdout, stderr));
        root.Subcommands.Add(ConvertCommand.Create(stdout, stderr));
        root.Subcommands.Add(TrainCommand.Create(stdout, stderr));
        root.Subcommands.Add(EvalCommand.Create(stdout, stderr));
        root.Subcommands.Add(ReconstructCommand.Create(stdout, stderr));
        root.Subcommands.Add(ShardCommand.Create(stdout, stderr));
        GeneratorCommands.Register(root, stdout, stderr);   // adds `train generator`, `eval generator`, `generate`
        root.Subcommands.Add(BenchCommand.Create(stdout, stderr));
        root.Subcommands.Add(ProfileCommand.Create(stdout, stderr));
        root.Subcommands.Add(LabCommand.Create(stdout, stderr));
        root.Subcommands.Add(DemoCommand.Create(stdout, stderr));
        ExamplesHelp.Install(root);

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && parsed.Action is not ExamplesHelp)   // --help works even when required flags are missing
        {
            foreach (var message in UsageErrors(parsed.Errors.Select(e => e.Message))) stderr.WriteLine($"error: {message}");
            stderr.WriteLine($"usage: see 'maskbit {string.Join(' ', CommandPath(parsed.CommandResult))}{(parsed.CommandResult.Command is RootCommand ? "" : " ")}--help'");
            return ExitUsage;
        }
        // Ctrl-C is handled by the commands that need a clean stop (train), not by System.CommandLine's timeout.
        return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, ProcessTerminationTimeout = null });
    }

    private static Command InspectCommand(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string?>("file") { Arity = ArgumentArity.ZeroOrOne, Description = "A torch checkpoint (zip or legacy), .safetensors or .npz file." };
        var config = new Option<string?>("--config") { Description = "Instead of a file: build the models this config describes and print their parameter counts." };
        var overrides = new Option<string[]>("--set") { Description = "Config overrides a.b.c=value (with --config).", AllowMultipleArgumentsPerToken = true };
        var inspect = new Command("inspect", CommandSupport.Describe(
            "List the tensors of a weights file (name, dtype, shape, bytes), totals and metadata. Reads torch checkpoints " +
            "without running any pickled code. With --config, print the parameter counts of the models a config describes.",
            "maskbit inspect runs/tokenizer/checkpoint-600.safetensors",
            "maskbit inspect --config configs/tokenizer/maskbit_tokenizer_12bit.yaml")) { file, config, overrides };
        inspect.SetAction(parse =>
        {
            if (parse.GetValue(config) is { } configPath)
                return CommandSupport.Guard(stderr, () => parse.GetValue(file) is { } both
                    ? throw new UsageException($"inspect takes a FILE or --config CONFIG, not both (got {both} and --config {configPath})")
                    : InspectConfigCommand.Run(configPath, parse.GetValue(overrides) ?? Array.Empty<string>(), stdout));
            return CommandSupport.Guard(stderr, () =>
            {
                if (parse.GetValue(file) is not { } path) throw new UsageException("inspect needs a FILE or --config CONFIG (see 'maskbit inspect --help')");
                PrintInspection(CheckpointFile.List(CommandSupport.RequireFile(path, "FILE", "give the path of a weights file")), stdout);
                return ExitOk;
            });
        });
        return inspect;
    }

    /// <summary>System.CommandLine's parse errors in our words: a value of the wrong type is named with its flag
    /// and the type in words (not a CLR type name), and an unknown command is not also reported as a missing one.</summary>
    internal static IEnumerable<string> UsageErrors(IEnumerable<string> messages)
    {
        var list = messages.ToList();
        bool unknown = list.Any(m => m.StartsWith("Unrecognized command or argument", StringComparison.Ordinal));
        foreach (var message in list)
        {
            if (unknown && message == "Required command was not provided.") continue;
            var typed = CannotParse().Match(message);
            yield return typed.Success ? $"{typed.Groups["symbol"].Value}: '{typed.Groups["value"].Value}' is not {TypeInWords(typed.Groups["type"].Value)}" : message;
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for (?:option|argument) '(?<symbol>[^']*)' (?:of|as expected) type '(?<type>[^']*)'\.?$", System.Text.RegularExpressions.RegexOptions.Singleline)]
    private static partial System.Text.RegularExpressions.Regex CannotParse();

    private static string TypeInWords(string clrType) =>
        System.Text.RegularExpressions.Regex.Match(clrType, @"System\.(Int16|Int32|Int64|UInt16|UInt32|UInt64|Single|Double|Decimal|Boolean)").Groups[1].Value switch
        {
            "Int16" or "Int32" or "Int64" or "UInt16" or "UInt32" or "UInt64" => "an integer",
            "Single" or "Double" or "Decimal" => "a number",
            "Boolean" => "true or false",
            _ => "a valid value",
        };

    private static IEnumerable<string> CommandPath(System.CommandLine.Parsing.CommandResult? result)
    {
        var names = new Stack<string>();
        for (var r = result; r != null && r.Command is not RootCommand; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Push(r.Command.Name);
        return names;
    }

    private static void PrintInspection(CheckpointListing sd, TextWriter o)
    {
        o.WriteLine($"{sd.Source}: {sd.Format}");
        var rows = sd.Tensors.Select(t => (t.Name, Dtype: t.DType.Name(), Shape: "[" + string.Join(", ", t.Shape) + "]", Bytes: t.ByteCount.ToString("N0"))).ToList();
        int nameW = rows.Select(r => r.Name.Length).Append(4).Max();
        int dtypeW = rows.Select(r => r.Dtype.Length).Append(5).Max();
        int shapeW = rows.Select(r => r.Shape.Length).Append(5).Max();
        int bytesW = rows.Select(r => r.Bytes.Length).Append(5).Max();
        o.WriteLine($"  {"name".PadRight(nameW)}  {"dtype".PadRight(dtypeW)}  {"shape".PadRight(shapeW)}  {"bytes".PadLeft(bytesW)}");
        foreach (var r in rows)
            o.WriteLine($"  {r.Name.PadRight(nameW)}  {r.Dtype.PadRight(dtypeW)}  {r.Shape.PadRight(shapeW)}  {r.Bytes.PadLeft(bytesW)}");
        o.WriteLine($"{sd.Tensors.Count} tensors, {sd.ParameterCount:N0} parameters, {sd.ByteCount:N0} bytes");
        if (sd.Metadata.Count > 0)
        {
            o.WriteLine("metadata:");
            foreach (var (key, value) in sd.Metadata) o.WriteLine($"  {key}: {StateDict.FormatValue(value)}");
        }
    }
}
