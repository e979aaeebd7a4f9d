using MaskBit.Distributed;
using MaskBit.Models.Data;
using MaskBit.Models.Training;
using MaskBit.Tests.Data;

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
}
