namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.BatchNorm2d in eval mode: y = (x − running_mean)/√(running_var + eps)·weight + bias, a
/// per-channel affine map. State-dict entries as torch: <c>weight</c>, <c>bias</c>, <c>running_mean</c>,
/// <c>running_var</c>, <c>num_batches_tracked</c> (int64 in torch, an Int32 scalar here). Only the pretrained
/// perceptual / FID networks use it, which always run in eval mode; train mode (batch statistics) is not
/// implemented.</summary>
public sealed class BatchNorm2d : Module
{
    public int NumFeatures { get; }
    public float Eps { get; }
    public Tensor Weight { get; }
    public Tensor Bias { get; }
    public Tensor RunningMean { get; }
    public Tensor RunningVar { get; }
    public Tensor NumBatchesTracked { get; }

    public BatchNorm2d(int numFeatures, float eps = 1e-5f)
    {
        NumFeatures = numFeatures; Eps = eps;
        Weight = Parameter("weight", Tensor.Ones(numFeatures));
        Bias = Parameter("bias", Tensor.Zeros(numFeatures));
        RunningMean = Buffer("running_mean", Tensor.Zeros(numFeatures));
        RunningVar = Buffer("running_var", Tensor.Ones(numFeatures));
        NumBatchesTracked = Buffer("num_batches_tracked", Tensor.Zeros(Array.Empty<int>(), dtype: Kernels.DType.Int32));
    }

    public Tensor Forward(Tensor x)
    {
        if (Training)
            throw new NotSupportedException("BatchNorm2d supports eval mode only (running statistics); call Eval() on the network");
        if (x.Rank != 4 || x.Size(1) != NumFeatures)
            throw new ArgumentException($"BatchNorm2d({NumFeatures}) needs (N, {NumFeatures}, H, W), got {x}");
        var (scale, shift) = ScaleShift();
        return x.Mul(scale.Reshape(1, NumFeatures, 1, 1)).Add(shift.Reshape(1, NumFeatures, 1, 1));
    }

    /// <summary>The eval-mode map y = x·scale + shift per channel, as aten computes it: scale = weight/√(var + eps),
    /// shift = bias − mean·scale. A preceding conv can absorb it (scaled weights, shift as bias).</summary>
    public (Tensor Scale, Tensor Shift) ScaleShift()
    {
        if (Training)
            throw new NotSupportedException("BatchNorm2d supports eval mode only (running statistics); call Eval() on the network");
        var scale = Weight.Mul(RunningVar.AddScalar(Eps).Rsqrt());
        return (scale, Bias.Sub(RunningMean.Mul(scale)));
    }
}
