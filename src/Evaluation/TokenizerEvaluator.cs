namespace MaskBit.Models.Metrics;

[Flags]
public enum TokenizerMetric
{
    None = 0,
    Mae = 1 << 0,
    Mse = 1 << 1,
    Psnr = 1 << 2,
    Ssim = 1 << 3,
    InceptionScore = 1 << 4,
    Rfid = 1 << 5,
    CodebookUsage = 1 << 6,
    CodebookEntropy = 1 << 7,
    /// <summary>Opt-in, as in the reference (enable_lpips_score defaults to False): not part of <see cref="All"/>.</summary>
    Lpips = 1 << 8,
    All = Mae | Mse | Psnr | Ssim | InceptionScore | Rfid | CodebookUsage | CodebookEntropy,
}

/// <summary>The reference's `TokenizerEvaluator`: metrics of reconstructions accumulated over `Update` batches,
/// host-side in float64. Per-image metrics (MAE, MSE, PSNR, SSIM, LPIPS) are averaged over images;
/// IS uses one split over all fake images (or consecutive splits, see the constructor); rFID compares the
/// Inception feature statistics of real and fake images; codebook usage / entropy count the token indices.</summary>
public sealed class TokenizerEvaluator
{
    private readonly TokenizerMetric _metrics;
    private readonly IFeatureExtractor? _inception;
    private readonly LpipsMetric? _lpips;
    private readonly int? _inceptionScoreSplits;
    private readonly long _totalExamples, _firstExample;
    private readonly Ssim _ssim = new();
    private double _sumMae, _sumMse, _sumPsnr, _sumSsim, _sumLpips;
    private InceptionScoreAccumulator? _inceptionScore;
    private FeatureMoments? _realMoments, _fakeMoments;
    private readonly bool[] _codebookSeen;
    private readonly double[] _codebookFrequencies;

    public int NumCodebookEntries { get; }
    public long NumExamples { get; private set; }

    /// <param name="inception">Computes features and logits from images; needed for IS / rFID unless every
    /// `Update` passes them precomputed.</param>
    /// <param name="inceptionScoreSplits">Null: the reference's IS, one split over all images. A count K: IS as
    /// the mean over K consecutive splits of <paramref name="totalExamples"/> images (which must then be the
    /// number of images given to `Update`), reported with "InceptionScoreStd" and "InceptionScoreSplits".</param>
    /// <param name="lpips">The LPIPS network, needed for <see cref="TokenizerMetric.Lpips"/>.</param>
    /// <param name="firstExample">The index of the first image given to `Update` among all images evaluated (one
    /// rank's share starts there; it places the images in the Inception Score splits); see <see cref="MergePacked"/>.</param>
    public TokenizerEvaluator(TokenizerMetric metrics, int numCodebookEntries = 1024, IFeatureExtractor? inception = null,
        int? inceptionScoreSplits = null, long totalExamples = 0, LpipsMetric? lpips = null, long firstExample = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstExample);
        _firstExample = firstExample;
        if ((metrics & TokenizerMetric.Lpips) != 0 && lpips == null) throw new ArgumentException("the LPIPS metric needs the LPIPS network");
        _metrics = metrics;
        _inception = inception;
        _lpips = lpips;
        _inceptionScoreSplits = inceptionScoreSplits;
        _totalExamples = totalExamples;
        NumCodebookEntries = numCodebookEntries;
        _codebookSeen = new bool[numCodebookEntries];
        _codebookFrequencies = new double[numCodebookEntries];
    }

    private bool Enabled(TokenizerMetric m) => (_metrics & m) != 0;

    public void Reset()
    {
        _sumMae = _sumMse = _sumPsnr = _sumSsim = _sumLpips = 0;
        _inceptionScore = null;
        _realMoments = _fakeMoments = null;
        Array.Clear(_codebookSeen);
        Array.Clear(_codebookFrequencies);
        NumExamples = 0;
    }

    /// <summary>Adds a batch, running the Inception network on `(img·255).to(uint8)` when IS or rFID is on.</summary>
    public void Update(ImageBatch real, ImageBatch fake, ReadOnlySpan<int> codebookIndices = default)
    {
        InceptionOutputs? realOut = null, fakeOut = null;
        if (Enabled(TokenizerMetric.InceptionScore | TokenizerMetric.Rfid))
        {
            var net = _inception ?? throw new InvalidOperationException("IS / rFID need an IFeatureExtractor (or precomputed Inception outputs)");
            fakeOut = net.Extract(fake.ToUInt8(), fake.N, fake.H, fake.W);
            if (Enabled(TokenizerMetric.Rfid)) realOut = net.Extract(real.ToUInt8(), real.N, real.H, real.W);
        }
        Update(real, fake, codebookIndices, realOut, fakeOut);
    }

    /// <summary>Adds a batch with precomputed Inception outputs: `fakeInception` (features and logits) for IS and
    /// rFID, `realInception` (features) for rFID.</summary>
    public void Update(ImageBatch real, ImageBatch fake, ReadOnlySpan<int> codebookIndices, InceptionOutputs? realInception, InceptionOutputs? fakeInception)
    {
        if (real.N != fake.N || real.ImageSize != fake.ImageSize || real.Data.Length != fake.Data.Length)
            throw new ArgumentException($"real ({real.N}×{real.C}×{real.H}×{real.W}) and fake ({fake.N}×{fake.C}×{fake.H}×{fake.W}) batches differ");
        for (int i = 0; i < real.N; i++)
        {
            var r = real.Image(i);
            var f = fake.Image(i);
            if (Enabled(TokenizerMetric.Mae)) _sumMae += ImageQuality.MeanAbsoluteError(r, f);
            if (Enabled(TokenizerMetric.Mse)) _sumMse += ImageQuality.MeanSquaredError(r, f);
            if (Enabled(TokenizerMetric.Psnr)) _sumPsnr += ImageQuality.Psnr(r, f);
            if (Enabled(TokenizerMetric.Ssim)) _sumSsim += _ssim.Compute(r, f, real.C, real.H, real.W);
        }

        if (Enabled(TokenizerMetric.Lpips)) _sumLpips += _lpips!.Sum(real, fake);

        if (Enabled(TokenizerMetric.InceptionScore))
        {
            var fo = RequireRows(fakeInception, real.N, "fake", needLogits: true);
            _inceptionScore ??= NewInceptionScore(fo.LogitsDim);
            for (int i = 0; i < fo.Count; i++) _inceptionScore.Add(fo.LogitsRow(i), _firstExample + NumExamples + i);
        }
        if (Enabled(TokenizerMetric.Rfid))
        {
            var ro = RequireRows(realInception, real.N, "real", needLogits: false);
            var fo = RequireRows(fakeInception, real.N, "fake", needLogits: false);
            if (ro.FeatureDim != fo.FeatureDim) throw new ArgumentException($"real ({ro.FeatureDim}) and fake ({fo.FeatureDim}) feature sizes differ");
            _realMoments ??= new FeatureMoments(ro.FeatureDim);
            _fakeMoments ??= new FeatureMoments(fo.FeatureDim);
            for (int i = 0; i < ro.Count; i++)
            {
                _realMoments.Add(ro.FeatureRow(i));
                _fakeMoments.Add(fo.FeatureRow(i));
            }
        }

        if (Enabled(TokenizerMetric.CodebookUsage | TokenizerMetric.CodebookEntropy))
        {
            if (codebookIndices.IsEmpty) throw new ArgumentException("codebook metrics need the codebook indices of the batch");
            foreach (int index in codebookIndices)
            {
                if ((uint)index >= (uint)NumCodebookEntries) throw new ArgumentOutOfRangeException(nameof(codebookIndices), $"index {index} is outside the {NumCodebookEntries} codebook entries");
                _codebookSeen[index] = true;
                _codebookFrequencies[index]++;
            }
        }
        NumExamples += real.N;
    }

    private InceptionScoreAccumulator NewInceptionScore(int classes) => new(classes, _inceptionScoreSplits ?? 1, _totalExamples);

    /// <summary>The running sums as one float64 array, for <see cref="MergePacked"/> in another process (another
    /// rank's evaluator of other images): the images, the per-image metric sums, the codebook counts, and the
    /// Inception Score and rFID sums, each section preceded by its length (0 for a metric that saw no image).</summary>
    public double[] PackSums()
    {
        var packed = new List<double>();
        void Section(ReadOnlySpan<double> values) { packed.Add(values.Length); foreach (var v in values) packed.Add(v); }
        Section([NumExamples, _sumMae, _sumMse, _sumPsnr, _sumSsim, _sumLpips]);
        Section(_codebookFrequencies);
        if (_inceptionScore is { } score)
        {
            var (probabilities, plogp, counts) = score.Sums();
            Section([score.Classes]);
            Section(probabilities);
            Section(plogp);
            Section(Array.ConvertAll(counts, c => (double)c));
        }
        else Section([]);
        foreach (var moments in new[] { _realMoments, _fakeMoments })
        {
            if (moments == null) { Section([]); continue; }
            var (sum, sumOuter, rows) = moments.Sums();
            Section([moments.Count]);
            Section(sum);
            Section(sumOuter);
            Section(rows ?? []);
        }
        return packed.ToArray();
    }

    /// <summary>Adds the sums <see cref="PackSums"/> made of an evaluator with the same metrics and codebook over other
    /// images (merge the ranks' shares in order, so rFID's rows stay in image order). The float64 sums then add in
    /// another order than one evaluator adds them: the metrics agree to about 1e-12 relative.</summary>
    public void MergePacked(ReadOnlySpan<double> packed)
    {
        int at = 0;
        ReadOnlySpan<double> Section(ReadOnlySpan<double> all)
        {
            if (at >= all.Length) throw new ArgumentException("packed evaluator sums end early");
            int length = checked((int)all[at]);
            var section = all.Slice(at + 1, length);
            at += 1 + length;
            return section;
        }
        var scalars = Section(packed);
        var frequencies = Section(packed);
        if (scalars.Length != 6 || frequencies.Length != NumCodebookEntries)
            throw new ArgumentException($"packed evaluator sums of {frequencies.Length} codebook entries do not fit {NumCodebookEntries}");
        NumExamples += (long)scalars[0];
        (_sumMae, _sumMse, _sumPsnr, _sumSsim, _sumLpips) = (_sumMae + scalars[1], _sumMse + scalars[2], _sumPsnr + scalars[3], _sumSsim + scalars[4], _sumLpips + scalars[5]);
        for (int i = 0; i < frequencies.Length; i++)
        {
            _codebookFrequencies[i] += frequencies[i];
            _codebookSeen[i] |= frequencies[i] > 0;
        }
        var classes = Section(packed);
        if (classes.Length == 1)
        {
            var other = NewInceptionScore((int)classes[0]);
            var probabilities = Section(packed);
            var plogp = Section(packed);
            other.RestoreSums(probabilities, plogp, Array.ConvertAll(Section(packed).ToArray(), c => (long)c));
            (_inceptionScore ??= NewInceptionScore(other.Classes)).Merge(other);
        }
        for (int part = 0; part < 2; part++)
        {
            var count = Section(packed);
            if (count.Length == 0) continue;
            var sum = Section(packed);
            var sumOuter = Section(packed);
            var rows = Section(packed);
            var other = new FeatureMoments(sum.Length);
            other.RestoreSums(sum, sumOuter, (long)count[0], rows);
            if (part == 0) (_realMoments ??= new FeatureMoments(other.Dim)).Merge(other);
            else (_fakeMoments ??= new FeatureMoments(other.Dim)).Merge(other);
        }
    }

    private static InceptionOutputs RequireRows(InceptionOutputs? outputs, int count, string which, bool needLogits)
    {
        if (outputs == null) throw new ArgumentException($"Inception outputs of the {which} images are missing");
        if (outputs.Count != count) throw new ArgumentException($"{outputs.Count} Inception rows for {count} {which} images");
        if (needLogits && outputs.Logits == null) throw new ArgumentException($"the Inception Score needs the logits of the {which} images");
        return outputs;
    }

    /// <summary>Mean and unbiased covariance of the real / fake features seen so far (rFID on).</summary>
    public (GaussianStatistics Real, GaussianStatistics Fake) FeatureStatistics() =>
        _realMoments == null || _fakeMoments == null
            ? throw new InvalidOperationException("no rFID features were accumulated")
            : (_realMoments.ToStatistics(), _fakeMoments.ToStatistics());

    /// <summary>The enabled metrics under the reference's names (MAE, MSE, PSNR, SSIM, InceptionScore, rFID, LPIPS,
    /// CodebookUsage, CodebookEntropy).</summary>
    public IReadOnlyDictionary<string, double> Result()
    {
        if (NumExamples < 1) throw new InvalidOperationException("No examples to evaluate.");
        var scores = new Dictionary<string, double>();
        if (Enabled(TokenizerMetric.Mae)) scores["MAE"] = _sumMae / NumExamples;
        if (Enabled(TokenizerMetric.Mse)) scores["MSE"] = _sumMse / NumExamples;
        if (Enabled(TokenizerMetric.Psnr)) scores["PSNR"] = _sumPsnr / NumExamples;
        if (Enabled(TokenizerMetric.Ssim)) scores["SSIM"] = _sumSsim / NumExamples;
        if (Enabled(TokenizerMetric.InceptionScore))
        {
            var (mean, std) = _inceptionScore!.MeanAndStd();
            scores["InceptionScore"] = mean;
            if (_inceptionScoreSplits != null)
            {
                scores["InceptionScoreStd"] = std;
                scores["InceptionScoreSplits"] = _inceptionScore.Splits;
            }
        }
        if (Enabled(TokenizerMetric.Rfid))
        {
            var (realStats, fakeStats) = FeatureStatistics();
            scores["rFID"] = Frechet.Distance(realStats, fakeStats);
        }
        if (Enabled(TokenizerMetric.Lpips)) scores["LPIPS"] = _sumLpips / NumExamples;
        if (Enabled(TokenizerMetric.CodebookUsage)) scores["CodebookUsage"] = (double)_codebookSeen.Count(s => s) / NumCodebookEntries;
        if (Enabled(TokenizerMetric.CodebookEntropy))
        {
            double total = _codebookFrequencies.Sum(), entropy = 0;
            foreach (double count in _codebookFrequencies)
            {
                double p = count / total;
                entropy -= Math.Log2(p + 1e-8) * p;
            }
            scores["CodebookEntropy"] = entropy;
        }
        return scores;
    }
}
