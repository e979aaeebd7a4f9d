using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Statistics a classifier's training logs (see Kernels/Classification), on the tensors' device. No gradients.
public static partial class F
{
    /// <summary>Sums over the rows of (…, C) <paramref name="scores"/> for logging a masked classification, as one
    /// (4) tensor on their device: [masked rows, Σ <paramref name="loss"/> over the masked rows, rows whose argmax
    /// (first maximum) is the target, masked such rows]. targets and mask (≠ 0: masked) are Int32 and loss Float32,
    /// one value per row. The counts are exact integers (below 2^24 rows).</summary>
    public static Tensor PredictionTally(Tensor scores, Tensor targets, Tensor mask, Tensor loss)
    {
        int classes = scores.Rank == 0 ? 0 : scores.Shape[^1];
        if (classes == 0) throw new ArgumentException($"prediction_tally: scores {ShapeUtil.Format(scores.Shape)} have no classes");
        int rows = (int)(scores.Numel / classes);
        RequireGroups("prediction_tally", scores, classes, rows, (targets, DType.Int32, "targets"), (mask, DType.Int32, "mask"),
            (loss, DType.Float32, "loss"));
        var dev = scores.Device;
        var tally = Tensor.Empty(new[] { 4, rows }, dev);
        dev.ModelOps.PredictionTally(rows, classes, scores.Buf, targets.Buf, mask.Buf, loss.Buf, tally.Buf);
        return tally.Sum(1);
    }
}
