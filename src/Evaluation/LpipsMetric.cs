using MaskBit.Autograd;
using MaskBit.Models.Interop;
using MaskBit.Models.Perceptual;

namespace MaskBit.Models.Metrics;

/// <summary>LPIPS as a reconstruction metric (the reference TokenizerEvaluator's <c>enable_lpips_score</c>): the
/// VGG16 LPIPS of <see cref="Lpips"/> between originals and reconstructions, summed per batch (the evaluator
/// averages over images).</summary>
public sealed class LpipsMetric(Lpips network)
{
    /// <summary>Where the weights come from, for messages.</summary>
    public const string WeightsDescription =
        "the state dict of the reference's LPIPS module (modeling/modules/lpips.py: VGG16 features and the linear heads of vgg.pth), " +
        "e.g. torch.save(LPIPS().state_dict(), 'lpips_vgg16.pth'), or a safetensors copy";

    /// <summary>Loads the weights (keys <c>scaling_layer.shift</c>, <c>net.slice1.0.weight</c>, …,
    /// <c>lin4.model.1.weight</c>); a missing, unexpected or mis-shaped entry is an error naming the file.</summary>
    public static LpipsMetric Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"LPIPS weights not found: {path} ({WeightsDescription})", path);
        var network = new Lpips();
        using (TensorScope.Begin())
        {
            var problems = ModuleCheckpoint.LoadInto(network, CheckpointFile.Load(path), strict: false);
            if (problems.Count > 0)
                throw new InvalidDataException($"{path}: not the LPIPS weights ({WeightsDescription}): {problems.Count} problems:\n  " +
                                               string.Join("\n  ", problems.Take(5)) + (problems.Count > 5 ? $"\n  … and {problems.Count - 5} more" : ""));
        }
        return new LpipsMetric(network);
    }

    /// <summary>Σ over the batch of LPIPS(real_i, fake_i), in float64.</summary>
    public double Sum(ImageBatch real, ImageBatch fake)
    {
        using var scope = TensorScope.Begin();
        using var noGrad = Tape.NoGrad();
        int[] shape = { real.N, real.C, real.H, real.W };
        var distances = network.Forward(Tensor.FromArray(real.Data, shape), Tensor.FromArray(fake.Data, shape)).ToArray();
        double sum = 0;
        foreach (float d in distances) sum += d;
        return sum;
    }
}
