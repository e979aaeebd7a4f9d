using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Models.Data;
using MaskBit.Models.Training;
using MaskBit.Tests.Data;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Distributed;

/// <summary>The parts of data-parallel training that need no second process: the launcher's environment, each
/// rank's share of a global batch, and the random draws of the generator's masking.</summary>
public class DataParallelTests
{
    [Test]
    public void LaunchInfoComesFromOpenMpisEnvironmentAndIsNullWithoutALauncher()
    {
        var env = new Dictionary<string, string>
        {
            [LaunchInfo.RankVariable] = "3", [LaunchInfo.SizeVariable] = "8", [LaunchInfo.LocalRankVariable] = "1",
        };
        Assert.That(LaunchInfo.From(k => env.GetValueOrDefault(k)), Is.EqualTo(new LaunchInfo(3, 8, 1)));
        Assert.That(LaunchInfo.From(_ => null), Is.Null);
        env[LaunchInfo.RankVariable] = "8";
        Assert.That(() => LaunchInfo.From(k => env.GetValueOrDefault(k)), Throws.TypeOf<FormatException>().With.Message.Contains("OMPI_COMM_WORLD_RANK=8"));
        Assert.That(() => LaunchInfo.From(k => k == "PMI_SIZE" ? "4" : null), Throws.TypeOf<NotSupportedException>().With.Message.Contains("Open MPI"));
    }

    [Test]
    public void OneProcessCollectivesReturnTheirInput()
    {
        var group = SingleProcess.Instance;
        double[] values = [1.5, -2];
        group.AllReduceAverage(values);
        Assert.That(values, Is.EqualTo(new[] { 1.5, -2 }));
        Assert.That(group.AllGather(4), Is.EqualTo(new double[] { 4 }));
        Assert.That(() => group.Broadcast(new float[1], root: 1), Throws.TypeOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void RanksTakeDisjointSharesThatTogetherAreTheOneProcessGlobalBatch()
    {
        using var dir = new TempDirectory();
        for (int i = 0; i < 13; i++)
            ImageIO.Write(dir.File("images", $"class{i % 2}", $"img{i:D2}.png"), TestImages.Gradient(8, 8, 3, phase: 29 * i));
        var dataset = new ImageFolderDataset(dir.File("images"));
        DataLoader Loader(int batch, int rank, int world) => new(dataset, new DataLoaderOptions
        {
            BatchSize = batch, Seed = 5, Workers = 1, DropLast = true, Rank = rank, WorldSize = world,
            Transform = (image, random) => { image.Pixels[0] = (byte)random.Next(256); return image; },   // augmentation seeded per sample
        });
        var single = Loader(6, 0, 1);
        var ranks = new[] { Loader(3, 0, 2), Loader(3, 1, 2) };
        Assert.That(ranks.Select(r => r.BatchesPerEpoch), Is.All.EqualTo(single.BatchesPerEpoch));
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var whole = single.Epoch(epoch).ToList();
            var shares = ranks.Select(r => r.Epoch(epoch).ToList()).ToList();
            for (int b = 0; b < whole.Count; b++)
            {
                Assert.That(shares[0][b].Keys.Intersect(shares[1][b].Keys), Is.Empty, "disjoint");
                Assert.That(shares[0][b].Keys.Concat(shares[1][b].Keys), Is.EqualTo(whole[b].Keys), "rank 0 then rank 1 is the global batch");
                Assert.That(shares[0][b].Images.ToArray().Concat(shares[1][b].Images.ToArray()), Is.EqualTo(whole[b].Images.ToArray()), "augmented alike");
            }
        }
        // Resuming a rank at a batch gives that batch's share.
        Assert.That(ranks[1].Epoch(1, startBatch: 1).First().Keys, Is.EqualTo(ranks[1].Epoch(1).Skip(1).First().Keys));
    }

    [Test]
    public void EveryRankDrawsTheGlobalBatchAndKeepsItsSlice()
    {
        var whole = new float[8];
        new RngRandomSource(new Autograd.Rng(9)).Uniform(whole);
        var slices = new List<float>();
        var rngs = new List<Autograd.Rng>();
        for (int rank = 0; rank < 2; rank++)
        {
            var rng = new Autograd.Rng(9);
            var share = new float[4];
            new RngRandomSource(rng, rank, 2).Uniform(share);
            slices.AddRange(share);
            rngs.Add(rng);
        }
        Assert.That(slices, Is.EqualTo(whole));
        Assert.That(rngs[0].NextUInt64(), Is.EqualTo(rngs[1].NextUInt64()), "the ranks' generators stay identical");
    }

    /// <summary>Rank 0 of two, with a stand-in for rank 1 whose gradients are all <see cref="OtherRanksGradient"/>:
    /// records each bucket's size as it starts and whether the backward was still running then.</summary>
    private sealed class TwoRankStandIn : ICollectives
    {
        public const float OtherRanksGradient = 1f;
        public readonly List<(int Count, bool DuringBackward)> Started = [];
        public bool InBackward;

        public int Rank => 0;
        public int WorldSize => 2;
        public int LocalRank => 0;
        public TimeSpan Timeout => System.Threading.Timeout.InfiniteTimeSpan;

        public IPendingCollective StartAllReduceSum(float[] buffer, int offset, int count)
        {
            for (int i = 0; i < count; i++) buffer[offset + i] += OtherRanksGradient;
            Started.Add((count, InBackward));
            return new Done();
        }

        private sealed class Done : IPendingCollective
        {
            public void Wait() { }
        }

        public void AllReduceSum(Span<float> buffer) => throw new NotSupportedException();
        public void AllReduceSum(Span<double> buffer) => throw new NotSupportedException();
        public void Broadcast(Span<float> buffer, int root = 0) => throw new NotSupportedException();
        public void Broadcast(Span<byte> buffer, int root = 0) => throw new NotSupportedException();
        public void Barrier() => throw new NotSupportedException();
        /// <summary>Rank 1 answers as rank 0 does (the ranks agree on the device path: host-staged here).</summary>
        public double[] AllGather(double value) => [value, value];
        public void Abort(string message, int exitCode) => throw new NotSupportedException();
        public void Dispose() { }
    }

    /// <summary>Device gradients go through host memory (downloaded into the bucket, summed, uploaded): the fallback for
    /// device buffers without NCCL, on ILGPU's CPU accelerator as on the CPU backend. Buckets of 16 bytes hold the
    /// parameters in reverse order, and those of the last layer start while the backward is still running.</summary>
    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void GradientBucketsStartDuringTheBackwardAndComeBackAsTheMeanOnTheDevice(string device)
    {
        var backend = TestDevices.Get(device);
        var group = new TwoRankStandIn();
        var averager = new GradientAverager(group, bucketBytes: 4 * sizeof(float));
        var w1 = Tensor.FromArray([0.5f, -1, 2, 0.25f, 1, -0.5f], [2, 3], backend).RequiresGrad_();   // 6 floats: a bucket of its own
        var w2 = Tensor.FromArray([1f, 2, -1], [3, 1], backend).RequiresGrad_();                   // 3 floats
        var x = Tensor.FromArray([3f, 1], [1, 2], backend);
        var loss = x.MatMul(w1).Relu().MatMul(w2).Sum();   // x·w1 = [1.75, −2, 5.5]
        using (averager.AverageDuring([w1, w2]))
        {
            group.InBackward = true;
            loss.Backward();
            group.InBackward = false;
        }
        Assert.That(group.Started, Is.EqualTo(new[] { (3, true), (6, true) }), "w2's bucket (reverse order) first, each as soon as its gradients are final");
        averager.Wait();
        // This rank's gradients: w2 = relu(x·w1)ᵀ = [1.75, 0, 5.5], w1 = xᵀ·(w2 ⊙ relu′) = [[3, 0, −3], [1, 0, −1]]; the mean with rank 1's ones.
        Assert.That(w2.Grad!.ToArray(), Is.EqualTo(new[] { 1.375f, 0.5f, 3.25f }));
        Assert.That(w1.Grad!.ToArray(), Is.EqualTo(new[] { 2f, 0.5f, -1f, 1f, 0.5f, 0f }));
        Assert.That(w1.Grad.Device, Is.SameAs(backend));
    }
}
