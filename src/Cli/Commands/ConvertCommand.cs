using System.CommandLine;
using MaskBit.Models.Interop;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit convert IN OUT`: any supported weights file (PyTorch zip or legacy, npz, safetensors) to
/// safetensors, tensors and dtypes unchanged, metadata (e.g. a checkpoint's step) kept as strings.</summary>
internal static class ConvertCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "A PyTorch .bin/.pth (zip or legacy), .npz or .safetensors file." };
        var output = new Argument<string>("out") { Description = "The .safetensors file to write (written atomically)." };
        var command = new Command("convert", "Convert a weights file to safetensors, e.g. an official MaskBit .bin checkpoint.\n" +
                                             "Example: maskbit convert maskbit_tokenizer_12bit.bin tokenizer.safetensors") { input, output };
        command.SetAction(parse => CommandSupport.Guard(stderr, () =>
        {
            string from = parse.GetValue(input)!, to = parse.GetValue(output)!;
            if (Path.GetFullPath(from) == Path.GetFullPath(to)) throw new IOException($"{to}: output would overwrite the input");
            var sd = CheckpointFile.Load(from);
            SafeTensors.Save(to, sd);
            stdout.WriteLine($"wrote {to}: {sd.Count} tensors, {sd.ParameterCount:N0} values, {sd.ByteCount:N0} bytes");
            return Program.ExitOk;
        }));
        return command;
    }
}
