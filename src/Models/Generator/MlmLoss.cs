using MaskBit.Autograd;

namespace MaskBit.Models.Generator;

/// <summary>What the MLM loss logs besides the backpropagated loss (no gradient).</summary>
public sealed record MlmLossLog(float MaskedTokenLoss, float CorrectTokens, float MaskedCorrectTokens);

/// <summary>The counts and sums behind an <see cref="MlmLossLog"/>, still on the device, so that a trainer reads
/// them together with its other per-step values (one download) and finishes the log with <see cref="ToLog"/>.</summary>
public sealed class MlmLossStatistics
{
    private readonly int _positions, _splits;
    private readonly float _lossScale;

    internal MlmLossStatistics(Tensor tally, int positions, int splits, float lossScale)
    {
        Sums = Enumerable.Range(0, 4).Select(tally.Select0).ToArray();
        (_positions, _splits, _lossScale) = (positions, splits, lossScale);
    }

    /// <summary>Device scalars: masked positions, their summed loss, correct predictions, correct masked predictions.</summary>
    public IReadOnlyList<Tensor> Sums { get; }

    /// <summary>The log from the values of <see cref="Sums"/>, in their order: the masked loss mean (× splits when
    /// summed), and the accuracies raised to the number of splits (NaN for the masked ones when nothing was masked).</summary>
    public MlmLossLog ToLog(ReadOnlySpan<float> sums)
    {
        float masked = sums[0], maskedLoss = sums[1], correct = sums[2], maskedCorrect = sums[3];
        return new MlmLossLog(
            masked == 0 ? float.NaN : (float)((double)maskedLoss / masked) * _lossScale,
            MathF.Pow(correct / _positions, _splits),
            masked == 0 ? float.NaN : MathF.Pow(maskedCorrect / masked, _splits));
    }

    /// <summary>Downloads <see cref="Sums"/> on its own and finishes the log.</summary>
    public MlmLossLog Read() => ToLog(Tensor.Items(Sums));
}

/// <summary>
/// The reference's MLMLoss: label-smoothed cross-entropy over every group position (masked or not) against the
/// original group values, mean-reduced, × splits when <c>sum_splits</c>. The masked-only loss and the accuracies
/// (mean(argmax == target) raised to the number of splits) are logged, computed on the logits' device.
/// </summary>
public sealed class MlmLoss(float labelSmoothing = 0.1f, bool sumSplits = false)
{
    public float LabelSmoothing { get; } = labelSmoothing;
    public bool SumSplits { get; } = sumSplits;

    /// <param name="logits">(B, n, splits, C)</param>
    /// <param name="targets">(B, n, splits) Int32</param>
    /// <param name="mask">(B, n, splits) Int32, non-zero where the group was masked</param>
    public (Tensor Loss, MlmLossStatistics Statistics) Forward(Tensor logits, Tensor targets, Tensor mask)
    {
        int splits = logits.Shape[2], c = logits.Shape[3];
        var flat = logits.Reshape(-1, c);
        var flatTargets = targets.Reshape(-1);
        // Per-position losses once: their mean is the backpropagated loss, the masked ones are logged.
        var perPosition = F.CrossEntropy(flat, flatTargets, LabelSmoothing, Reduction.None);
        var loss = perPosition.Mean();
        if (SumSplits) loss = loss.MulScalar(splits);

        Tensor tally;
        using (Tape.NoGrad()) tally = F.PredictionTally(flat.Detach(), flatTargets, mask.Reshape(-1), perPosition.Detach());
        return (loss, new MlmLossStatistics(tally, flatTargets.Shape[0], splits, SumSplits ? splits : 1f));
    }
}
