using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Models.Data;
using MaskBit.Models.Metrics;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>Reconstruction with a trained tokenizer and its evaluation (the reference's eval_reconstruction and
/// generate_images): eval mode, no gradients, reconstructions clamped to [0, 1].</summary>
public static class TokenizerEvaluation
{
    /// <summary>The metrics computed without an Inception network.</summary>
    public const TokenizerMetric HostMetrics = TokenizerMetric.Mae | TokenizerMetric.Mse | TokenizerMetric.Psnr |
                                               TokenizerMetric.Ssim | TokenizerMetric.CodebookUsage | TokenizerMetric.CodebookEntropy;

    /// <summary>Reconstructs (B,C,H,W) images in [0,1]; returns the clamped reconstructions and the token indices.</summary>
    public static (Tensor Reconstructions, int[] Tokens) Reconstruct(ImageTokenizer model, Tensor images)
    {
        bool wasTraining = model.Training;
        model.Eval();
        try
        {
            using var _ = Tape.NoGrad();
            var (decoded, result) = model.Forward(images);
            return (decoded.Clamp(0f, 1f), result.MinEncodingIndices.ToIntArray());
        }
        finally { model.Train(wasTraining); }
    }

    /// <summary>Runs the model over <paramref name="batches"/> (at most <paramref name="maxImages"/> images) and
    /// returns the reference evaluator's metrics (MAE, MSE, PSNR, SSIM, CodebookUsage, CodebookEntropy). With an
    /// <paramref name="inception"/> network also rFID (reconstructions against the originals, as the reference's
    /// TokenizerEvaluator) and the Inception Score, by default over one split as the reference; more splits need
    /// the exact number of images in advance (<paramref name="maxImages"/>, or the share's total; fewer splits when
    /// there are few images, see <see cref="InceptionScoreAccumulator.EffectiveSplits"/>). With <paramref name="lpips"/>
    /// also LPIPS. With a <paramref name="share"/> the batches are one rank's images: every rank calls this, the sums
    /// go to rank 0, which returns the metrics of all the images (the other ranks an empty dictionary).</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(ImageTokenizer model, IEnumerable<Batch> batches, long maxImages = long.MaxValue,
        IFeatureExtractor? inception = null, int inceptionScoreSplits = 1, LpipsMetric? lpips = null, EvaluationShare? share = null)
    {
        long total = share?.Total ?? maxImages;
        if (inception != null && inceptionScoreSplits > 1 && total is < 2 or long.MaxValue)
            throw new ArgumentException($"{inceptionScoreSplits} Inception Score splits need the exact number of images (at least 2) in advance, got {total}");
        var metrics = HostMetrics | (inception == null ? 0 : TokenizerMetric.Rfid | TokenizerMetric.InceptionScore) | (lpips == null ? 0 : TokenizerMetric.Lpips);
        int? splits = inception == null ? null : InceptionScoreAccumulator.EffectiveSplits(total, inceptionScoreSplits);
        var evaluator = new TokenizerEvaluator(metrics, model.CodebookSize, inception, splits, splits > 1 ? total : 0, lpips, share?.First ?? 0);
        foreach (var batch in batches)
        {
            if (evaluator.NumExamples >= maxImages) break;
            using var scope = TensorScope.Begin();
            var images = batch.Images;
            long room = maxImages - evaluator.NumExamples;
            if (images.Shape[0] > room) images = images.Narrow(0, 0, (int)room);
            var (reconstructions, tokens) = Reconstruct(model, images);
            evaluator.Update(ImageBatch.FromTensor(images.Clamp(0f, 1f)), ImageBatch.FromTensor(reconstructions), tokens);
        }
        if (share is { Group: { WorldSize: > 1 } group })
        {
            var sums = group.AllGather<double>(evaluator.PackSums());
            if (!group.IsMain()) return new Dictionary<string, double>();
            for (int rank = 1; rank < sums.Length; rank++) evaluator.MergePacked(sums[rank]);
        }
        if (evaluator.NumExamples == 0) throw new InvalidDataException("evaluation: the data yielded no readable images");
        return evaluator.Result();
    }

    /// <summary>One rank's images of an evaluation split across ranks: they start at image <paramref name="First"/>
    /// of the <paramref name="Total"/> all ranks evaluate.</summary>
    public sealed record EvaluationShare(ICollectives Group, long First, long Total);

    /// <summary>A loader over the whole data set in order, with the evaluation transform (resize, centre crop).</summary>
    public static DataLoader EvalLoader(IImageDataset dataset, ImageTransform transform, int batchSize, int workers, Action<SkippedSample>? onSkipped = null) =>
        new(dataset, new DataLoaderOptions
        {
            BatchSize = batchSize, Shuffle = false, Workers = workers, Transform = (image, _) => transform.Eval(image), OnSkipped = onSkipped,
        });

    /// <summary>Originals in the top row, reconstructions below (one column per image).</summary>
    public static HostImage ComparisonGrid(Tensor originals, Tensor reconstructions)
    {
        int n = originals.Shape[0];
        return ImageIO.MakeGrid(Tensor.Cat(new[] { originals.Clamp(0f, 1f), reconstructions }, 0), nrow: n);
    }
}
