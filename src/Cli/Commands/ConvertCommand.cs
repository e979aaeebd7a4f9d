using System.CommandLine;
using System.Runtime.InteropServices;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit convert IN OUT`: any supported weights file (PyTorch zip or legacy, npz, safetensors) to
/// safetensors, tensors and dtypes unchanged, metadata (e.g. a checkpoint's step) kept as strings. With --model,
/// IN is loaded into that model first (a training checkpoint gives its EMA weights) and only the model's weights
/// are written; --dtype float16 or bfloat16 halves the file (the shipped model is stored in float16).</summary>
internal static class ConvertCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Argument<string>("in") { Description = "A PyTorch .bin/.pth (zip or legacy), .npz or .safetensors file." };
        var output = new Argument<string>("out") { Description = "The .safetensors file to write (written atomically)." };
        var model = new Option<string?>("--model") { Description = "tokenizer, generator or classifier: write only that model's weights, read from IN (the EMA weights of a training checkpoint); needs --config." };
        model.AcceptOnlyFromAmong("tokenizer", "generator", "classifier");
        var config = new Option<string?>("--config") { Description = "The config describing the --model." };
        var dtype = new Option<string?>("--dtype") { Description = "Store floating-point tensors as float32, float16 or bfloat16 (default: unchanged)." };
        dtype.AcceptOnlyFromAmong("float16", "bfloat16", "float32");
        var command = new Command("convert", CommandSupport.Describe("Convert a weights file to safetensors, e.g. an official MaskBit .bin checkpoint.",
            "maskbit convert maskbit_tokenizer_12bit.bin tokenizer.safetensors",
            "maskbit convert runs/tokenizer/checkpoint-800.safetensors tokenizer.safetensors --model tokenizer --config configs/fashion_mnist_tokenizer.yaml --dtype float16"))
        {
            input, output, model, config, dtype,
        };
        command.SetAction(parse => CommandSupport.Guard(stderr, () =>
        {
            string from = CommandSupport.RequireFile(parse.GetValue(input)!, "IN", "give the path of a weights file"), to = parse.GetValue(output)!;
            if (Path.GetFullPath(from) == Path.GetFullPath(to)) throw new IOException($"{to}: output would overwrite the input");
            IReadOnlyList<TensorRecord> records;
            IEnumerable<KeyValuePair<string, string>> metadata;
            if (parse.GetValue(model) is { } part)
            {
                string configPath = parse.GetValue(config) ?? throw new UsageException("--model needs --config (the config the weights were trained with)");
                records = ModelRecords(part, CommandSupport.LoadConfig(configPath, null), from);
                metadata = new Dictionary<string, string> { ["source"] = Path.GetFileName(from) };
            }
            else
            {
                var sd = CheckpointFile.Load(from);
                records = sd.ToList();
                metadata = sd.Metadata.Select(kv => KeyValuePair.Create(kv.Key, StateDict.FormatValue(kv.Value)));
            }
            if (parse.GetValue(dtype) is { } stored)
            {
                var target = stored switch { "float16" => TensorDType.Float16, "bfloat16" => TensorDType.BFloat16, _ => TensorDType.Float32 };
                records = records.Select(r => r.To(target)).ToList();
            }
            SafeTensors.Save(to, records, metadata);
            stdout.WriteLine($"wrote {to}: {records.Count} tensors, {records.Sum(r => r.Count):N0} values, {records.Sum(r => r.ByteCount):N0} bytes");
            return Program.ExitOk;
        }));
        return command;
    }

    /// <summary>The state dict of <paramref name="part"/> as loaded for evaluation or sampling (EMA weights when kept).</summary>
    private static List<TensorRecord> ModelRecords(string part, Models.Config.MaskBitConfig config, string path)
    {
        Module module = part switch
        {
            "tokenizer" => PretrainedModels.Tokenizer(config, path),
            "classifier" => PretrainedModels.Classifier(config, path),
            _ => PretrainedModels.Generator(config, path),
        };
        return module.StateDict().Select(kv => TensorRecord.FromTensor(kv.Name, kv.Tensor)).ToList();
    }
}
