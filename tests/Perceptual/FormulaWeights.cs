using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels;
using MaskBit.Models.Interop;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Perceptual;

/// <summary>The deterministic "formula" weights of the golden `formula_nets` case (README section
/// `formula_nets`): <c>&lt;net&gt;_params.json</c> lists every state-dict entry with its position t and rule;
/// element k of entry t is a function of h = (31k² + 17k + 7919t + 12345) mod 65521 (64-bit integers),
/// evaluated in float64 as written and rounded to float32. `fixed` entries are read from io.npz.</summary>
public static class FormulaWeights
{
    private const int Chunk = 1 << 16;

    /// <summary>Builds the state dict of a params file and loads it strictly into <paramref name="module"/>.</summary>
    public static void LoadInto(Module module, string paramsPath, IReadOnlyDictionary<string, NpyArray>? io = null)
    {
        using var scope = TensorScope.Begin();    // the built tensors are copied into the module, then released
        module.LoadStateDict(Build(paramsPath, io), strict: true);
    }

    public static Dictionary<string, Tensor> Build(string paramsPath, IReadOnlyDictionary<string, NpyArray>? io = null)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(paramsPath));
        double gain = doc.RootElement.GetProperty("gain").GetDouble();
        var result = new Dictionary<string, Tensor>();
        foreach (var e in doc.RootElement.GetProperty("entries").EnumerateArray())
        {
            string name = e.GetProperty("name").GetString()!, rule = e.GetProperty("rule").GetString()!;
            long t = e.GetProperty("t").GetInt64();
            int[] shape = e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray();
            int numel = shape.Aggregate(1, (a, d) => a * d);
            if (rule == "num_batches_tracked") { result[name] = Tensor.Zeros(shape, dtype: DType.Int32); continue; }
            if (rule == "fixed")
            {
                var stored = (io ?? throw new InvalidDataException($"{name} is a fixed entry: io.npz is needed"))[$"lpips.fixed.{name}"];
                result[name] = Tensor.FromArray(stored.ToFloat32(), stored.Shape);
                continue;
            }
            // Every rule is offset + (v·factor)·gain, which for the non-weight rules (gain 1) is the formula as written.
            var (offset, factor, ruleGain) = rule switch
            {
                "conv_or_linear_weight" => (0.0, Math.Sqrt(3.0 / (numel / shape[0])), gain),
                "bias" => (0.0, 0.02, 1.0),
                "bn_weight" => (1.0, 0.1, 1.0),
                "bn_bias" => (0.0, 0.05, 1.0),
                "bn_running_mean" => (0.0, 0.05, 1.0),
                "bn_running_var" => (1.0, 0.1, 1.0),
                // perceptual_nets (ConvNeXt's LayerNorms and layer scales)
                "ln_weight" => (1.0, 0.1, 1.0),
                "ln_bias" => (0.0, 0.05, 1.0),
                "layer_scale" => (0.1, 0.05, 1.0),
                _ => throw new InvalidDataException($"{paramsPath}: unknown rule '{rule}' of {name}"),
            };
            var data = new float[numel];
            Parallel.For(0, (numel + Chunk - 1) / Chunk, chunk =>
            {
                for (long k = (long)chunk * Chunk, end = Math.Min(k + Chunk, numel); k < end; k++)
                {
                    long h = (31 * k * k + 17 * k + 7919 * t + 12345) % 65521;
                    data[k] = (float)(offset + (2.0 * h / 65521.0 - 1.0) * factor * ruleGain);
                }
            });
            result[name] = Tensor.FromArray(data, shape);
        }
        return result;
    }

    /// <summary>Writes the formula state dict of a params file as a safetensors file, the form in which training reads
    /// its perceptual network (losses.perceptual_weights / --perceptual-weights); `fixed` entries come from <paramref name="io"/>.</summary>
    public static void SaveSafeTensors(string paramsPath, string file, IReadOnlyDictionary<string, NpyArray>? io = null)
    {
        using var scope = TensorScope.Begin();
        SafeTensors.Save(file, Build(paramsPath, io).Select(kv => Training.GeneratorTrainerTests.Record(kv.Key, kv.Value)).ToList());
    }

    /// <summary>The params file of a network in the case itself, else where the case's files.&lt;net&gt;_params names it,
    /// else next to it (a sibling `formula_nets` folder), else the repository's own fixture.</summary>
    public static string ParamsPath(GoldenCase near, string net)
    {
        string own = Path.Combine(near.Dir, $"{net}_params.json");
        if (File.Exists(own)) return own;
        if (near.Json.TryGetProperty("files", out var files) && files.TryGetProperty($"{net}_params", out var named))
            return Path.GetFullPath(Path.Combine(near.Dir, named.GetString()!));
        string sibling = Path.Combine(Path.GetDirectoryName(near.Dir)!, "formula_nets", $"{net}_params.json");
        return File.Exists(sibling) ? sibling : Path.Combine(GoldenCases.RepoDir, "formula_nets", $"{net}_params.json");
    }
}
