using MaskBit.Autograd;
using MaskBit.Autograd.Optim;
using MaskBit.Kernels;
using MaskBit.Models.Config;
using MaskBit.Models.Training;
using MaskBit.Tests.Engine;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Optim;

/// <summary>AdamW with bfloat16 moments (optimizer.params.moments_dtype: bf16): each step is float32's step on the
/// widened moments, which are then rounded to nearest; on every test device.</summary>
[NonParallelizable]
public class AdamWMomentTypeTests
{
    private static float[] Values(int seed, int n)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void Bf16MomentsAreFloat32sRoundedAndTheFirstUpdateIsFloat32s(string device)
    {
        var backend = TestDevices.Get(device);
        const int n = 1031;
        (Tensor Weight, AdamW Optimizer) Make(DType moments)
        {
            var weight = Tensor.FromArray(Values(1, n), [n], backend).RequiresGrad_();
            return (weight, new AdamW([weight], lr: 1e-2, beta2: 0.96, weightDecay: 0.045) { MomentDType = moments });
        }
        var (full, fullOptimizer) = Make(DType.Float32);
        var (half, halfOptimizer) = Make(DType.BFloat16);
        for (int step = 1; step <= 2; step++)
        {
            var gradient = Values(10 + step, n);
            foreach (var w in new[] { full, half }) w.Grad = Tensor.FromArray(gradient, [n], backend);
            // The second step starts from the same rounded moments in both, so it is compared the same way.
            if (step == 2)
                fullOptimizer.LoadState(full, halfOptimizer.ExpAvgOf(half)!.To(DType.Float32), halfOptimizer.ExpAvgSqOf(half)!.To(DType.Float32), 1);
            fullOptimizer.Step();
            halfOptimizer.Step();

            Assert.That(half.ToArray(), Is.EqualTo(full.ToArray()), $"step {step}: the parameters' update is float32's");
            foreach (var (mine, theirs, name) in new[] { (halfOptimizer.ExpAvgOf(half)!, fullOptimizer.ExpAvgOf(full)!, "exp_avg"), (halfOptimizer.ExpAvgSqOf(half)!, fullOptimizer.ExpAvgSqOf(full)!, "exp_avg_sq") })
            {
                Assert.That(mine.DType, Is.EqualTo(DType.BFloat16));
                Assert.That(mine.ToHalfBits(), Is.EqualTo(theirs.To(DType.BFloat16).ToHalfBits()), $"step {step}: {name} is float32's rounded to nearest");
            }
        }
    }

    [Test]
    public void LoadedMomentsTakeTheOptimizersType()
    {
        var weight = Tensor.FromArray(Values(1, 8), [8]).RequiresGrad_();
        var optimizer = new AdamW([weight]) { MomentDType = DType.BFloat16 };
        optimizer.LoadState(weight, Tensor.FromArray(Values(2, 8), [8]), Tensor.FromArray(Values(3, 8), [8]), 5);
        Assert.That(optimizer.ExpAvgOf(weight)!.DType, Is.EqualTo(DType.BFloat16));
        Assert.That(optimizer.ExpAvgSqOf(weight)!.DType, Is.EqualTo(DType.BFloat16));
        Assert.That(optimizer.StepOf(weight), Is.EqualTo(5));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new AdamW([weight]) { MomentDType = DType.Float16 });
    }

    [Test]
    public void ConfigKeyReachesTheOptimizersAndABadValueIsAConfigError()
    {
        var generator = MlmStep.From(TinyModelGradients.Tiny("optimizer.params.moments_dtype=bf16"));
        Assert.That(generator.Optimizer.MomentDType, Is.EqualTo(DType.BFloat16));
        Assert.That(MlmStep.From(TinyModelGradients.Tiny()).Optimizer.MomentDType, Is.EqualTo(DType.Float32));
        var e = Assert.Throws<ConfigException>(() => GeneratorTrainingSettings.From(TinyModelGradients.Tiny("optimizer.params.moments_dtype=fp16")))!;
        Assert.That(e.Message, Does.Contain("optimizer.params.moments_dtype").And.Contain("fp16"));
    }
}
