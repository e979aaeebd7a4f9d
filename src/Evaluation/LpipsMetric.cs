using MaskBit.Autograd;
using MaskBit.Models.Perceptual;

namespace MaskBit.Models.Metrics;

/// <summary>LPIPS as a reconstruction metric (the reference TokenizerEvaluator's <c>enable_lpips_score</c>): the
/// VGG16 LPIPS of <see cref="Lpips"/> between originals and reconstructions, summed per batch (the evaluator
/// averages over images). The network comes from the one LPIPS loader, PretrainedModels.LpipsNetwork (src/Training).</summary>
public sealed class LpipsMetric(Lpips network)
{
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
