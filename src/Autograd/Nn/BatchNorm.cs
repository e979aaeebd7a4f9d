namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.BatchNorm2d (affine, running statistics tracked; see <see cref="F.BatchNorm"/>): train mode
/// normalises with the batch statistics and updates running_mean / running_var with <see cref="Momentum"/>, eval
/// mode uses the running statistics. State-dict entries as torch: <c>weight</c>, <c>bias</c>,
/// <c>running_mean</c>, <c>running_var</c>, <c>num_batches_tracked</c> (int64 in torch, an Int32 scalar here;
/// counts the train-mode forwards).</summary>
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
        var y = F.BatchNorm(x, RunningMean, RunningVar, Weight, Bias, Training, Momentum, Eps);
        if (Training)
            NumBatchesTracked.CopyFrom_(Tensor.FromInts([NumBatchesTracked.ToIntArray()[0] + 1], [], NumBatchesTracked.Device));
        return y;
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
