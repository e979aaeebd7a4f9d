using MaskBit.Autograd;

namespace MaskBit.Models.Generator;

/// <summary>What the MLM loss logs besides the backpropagated loss (no gradient).</summary>
public sealed record MlmLossLog(float MaskedTokenLoss, float CorrectTokens, float MaskedCorrectTokens);

/// <summary>
/// The reference's MLMLoss: label-smoothed cross-entropy over every group position (masked or not) against the
/// original group values, mean-reduced, × splits when <c>sum_splits</c>. The masked-only loss and the accuracies
/// (mean(argmax == target) raised to the number of splits) are logged.
/// </summary>
public sealed class MlmLoss(float labelSmoothing = 0.1f, bool sumSplits = false)
{
    public float LabelSmoothing { get; } = labelSmoothing;
    public bool SumSplits { get; } = sumSplits;

    /// <param name="logits">(B, n, splits, C)</param>
    /// <param name="targets">(B, n, splits) Int32</param>
    /// <param name="mask">(B·n·splits) true where the group was masked</param>
    public (Tensor Loss, MlmLossLog Log) Forward(Tensor logits, Tensor targets, bool[] mask)
    {
        int splits = logits.Shape[2], c = logits.Shape[3];
        var flat = logits.Reshape(-1, c);
        var flatTargets = targets.Reshape(-1);
        // Per-position losses once: their mean is the backpropagated loss, the masked ones are logged.
        var perPosition = F.CrossEntropy(flat, flatTargets, LabelSmoothing, Reduction.None);
        var loss = perPosition.Mean();
        if (SumSplits) loss = loss.MulScalar(splits);

        MlmLossLog log;
        using (Tape.NoGrad())
        {
            var rows = perPosition.ToArray();
            var t = flatTargets.ToIntArray();
            var argmax = flat.Detach().ArgMaxLastAxis().ToIntArray();
            int masked = 0, correct = 0, maskedCorrect = 0; double maskedLoss = 0;
            for (int i = 0; i < t.Length; i++)
            {
                bool ok = argmax[i] == t[i];
                if (ok) correct++;
                if (!mask[i]) continue;
                masked++; maskedLoss += rows[i];
                if (ok) maskedCorrect++;
            }
            float scale = SumSplits ? splits : 1f;
            log = new MlmLossLog(
                masked == 0 ? float.NaN : (float)(maskedLoss / masked) * scale,
                MathF.Pow((float)correct / t.Length, splits),
                masked == 0 ? float.NaN : MathF.Pow((float)maskedCorrect / masked, splits));
        }
        return (loss, log);
    }
}
