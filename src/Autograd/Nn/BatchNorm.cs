namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.BatchNorm2d (affine, running statistics tracked). State-dict entries as torch: <c>weight</c>,
/// <c>bias</c>, <c>running_mean</c>, <c>running_var</c>, <c>num_batches_tracked</c> (int64 in torch, an Int32
/// scalar here).
/// <para>Train mode normalises with the batch statistics of each channel over (N, H, W) — the biased variance —
/// and updates the running statistics with <see cref="Momentum"/>: running = (1 − m)·running + m·batch, where
/// the variance entering running_var is the unbiased one (× n/(n − 1)). Eval mode is the per-channel affine map
/// of the running statistics.</para></summary>
public sealed class BatchNorm2d : Module
{
    public int NumFeatures { get; }
    public float Eps { get; }
    public float Momentum { get; }
    public Tensor Weight { get; }
    public Tensor Bias { get; }
    public Tensor RunningMean { get; }
    public Tensor RunningVar { get; }
    public Tensor NumBatchesTracked { get; }

    private static readonly int[] StatisticsAxes = [0, 2, 3];

    public BatchNorm2d(int numFeatures, float eps = 1e-5f, float momentum = 0.1f)
    {
        NumFeatures = numFeatures; Eps = eps; Momentum = momentum;
        Weight = Parameter("weight", Tensor.Ones(numFeatures));
        Bias = Parameter("bias", Tensor.Zeros(numFeatures));
        RunningMean = Buffer("running_mean", Tensor.Zeros(numFeatures));
        RunningVar = Buffer("running_var", Tensor.Ones(numFeatures));
        NumBatchesTracked = Buffer("num_batches_tracked", Tensor.Zeros(Array.Empty<int>(), dtype: Kernels.DType.Int32));
    }

    public Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Size(1) != NumFeatures)
            throw new ArgumentException($"BatchNorm2d({NumFeatures}) needs (N, {NumFeatures}, H, W), got {x}");
        var channel = new[] { 1, NumFeatures, 1, 1 };
        if (!Training)
        {
            var (scale, shift) = ScaleShift();
            return x.Mul(scale.Reshape(channel)).Add(shift.Reshape(channel));
        }

        long count = x.Numel / NumFeatures;
        if (count < 2) throw new ArgumentException($"BatchNorm2d in train mode needs more than one value per channel, got {x}");
        // Composed from differentiable ops, so the backward (through mean and variance) comes from the tape.
        var mean = x.Mean(StatisticsAxes, keepDim: true);
        var centered = x.Sub(mean);
        var variance = centered.Square().Mean(StatisticsAxes, keepDim: true);
        var y = centered.Mul(variance.AddScalar(Eps).Rsqrt().Mul(Weight.Reshape(channel))).Add(Bias.Reshape(channel));
        UpdateRunningStatistics(mean, variance, count);
        return y;
    }

    private void UpdateRunningStatistics(Tensor batchMean, Tensor biasedVariance, long count)
    {
        using var _ = Tape.NoGrad();
        float keep = 1f - Momentum, unbiased = count / (float)(count - 1);
        RunningMean.CopyFrom_(RunningMean.MulScalar(keep).Add(batchMean.Reshape(NumFeatures).MulScalar(Momentum)));
        RunningVar.CopyFrom_(RunningVar.MulScalar(keep).Add(biasedVariance.Reshape(NumFeatures).MulScalar(Momentum * unbiased)));
        NumBatchesTracked.CopyFrom_(Tensor.FromInts([NumBatchesTracked.ToIntArray()[0] + 1], [], NumBatchesTracked.Device));
    }

    /// <summary>The eval-mode map y = x·scale + shift per channel, as aten computes it: scale = weight/√(var + eps),
    /// shift = bias − mean·scale. A preceding conv can absorb it (scaled weights, shift as bias).</summary>
    public (Tensor Scale, Tensor Shift) ScaleShift()
    {
        if (Training)
            throw new NotSupportedException("BatchNorm2d.ScaleShift maps the running statistics (eval mode); call Eval() on the network");
        var scale = Weight.Mul(RunningVar.AddScalar(Eps).Rsqrt());
        return (scale, Bias.Sub(RunningMean.Mul(scale)));
    }
}
