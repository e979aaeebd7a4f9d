using System.Formats.Tar;
using MaskBit.Cli;
using MaskBit.Models.Data;
using MaskBit.Models.Training;

namespace MaskBit.Tests.Data;

/// <summary>`maskbit shard` and <see cref="WebDatasetWriter"/>: shards in the reference's create_sharded_dataset.py
/// layout that <see cref="WebDatasetShards"/> reads back through their brace pattern.</summary>
public class ShardCommandTests
{
    private static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Test]
    public void ShardsAnImageFolderThatReadsBackWithItsLabels()
    {
        using var dir = new TempDirectory();
        string images = dir.File("images");
        var expected = new Dictionary<string, (int Label, byte[] Pixels)>();
        int index = 0;
        foreach (var (className, count) in new[] { ("cat", 3), ("dog", 4) })
            for (int i = 0; i < count; i++, index++)
            {
                var image = TestImages.Noise(8, 8, 3, seed: index);
                ImageIO.Write(dir.File("images", className, $"img{i}.png"), image);
                expected[index.ToString("D7")] = (className == "cat" ? 0 : 1, image.Pixels);
            }
        string output = dir.File("shards");
        var (code, stdout, stderr) = Cli("shard", "--images", images, "--out", output, "--max-count", "3");
        Assert.That(code, Is.EqualTo(0), stderr);
        string pattern = Path.Combine(output, "train-{000000..000002}.tar");
        Assert.That(stdout, Does.Contain("wrote 7 samples of 2 classes to 3 shard(s)").And.Contain(pattern).And.Contain("0 = cat, 1 = dog"));

        using var shards = new WebDatasetShards(pattern);
        Assert.That(shards.Count, Is.EqualTo(7));
        var seen = new HashSet<string>();
        for (int i = 0; i < shards.Count; i++)
        {
            var sample = shards.Load(i);
            Assert.That(expected.ContainsKey(sample.Key), sample.Key);
            Assert.That(sample.Label, Is.EqualTo(expected[sample.Key].Label), sample.Key);
            Assert.That(sample.Image.Pixels, Is.EqualTo(expected[sample.Key].Pixels), "the PNG bytes as they were");
            seen.Add(sample.Key);
        }
        Assert.That(seen, Has.Count.EqualTo(7));
        var opened = TrainingData.Open(pattern, train: true, channels: 3);
        Assert.That(opened.Count, Is.EqualTo(7), "a brace pattern as a data path");
        (opened as IDisposable)?.Dispose();

        // Members as webdataset writes them: KEY.cls (ASCII digits) then KEY.png.
        using var tar = new TarReader(File.OpenRead(Path.Combine(output, "train-000000.tar")));
        var cls = tar.GetNextEntry()!;
        var png = tar.GetNextEntry()!;
        Assert.That(cls.Name, Does.Match(@"^\d{7}\.cls$"));
        Assert.That(png.Name, Is.EqualTo(cls.Name.Replace(".cls", ".png")));
        Assert.That(new StreamReader(cls.DataStream!).ReadToEnd(), Is.EqualTo(expected[cls.Name[..7]].Label.ToString()));
        Assert.That(Directory.GetFiles(output, "*.tmp"), Is.Empty);
    }

    [Test]
    public void FileKeysAndBadFlags()
    {
        using var dir = new TempDirectory();
        ImageIO.Write(dir.File("images", "a", "one.png"), TestImages.Noise(4, 4, 3, seed: 1));
        ImageIO.Write(dir.File("images", "b", "two.png"), TestImages.Noise(4, 4, 3, seed: 2));
        string output = dir.File("shards");
        var (code, stdout, stderr) = Cli("shard", "--images", dir.File("images"), "--out", output, "--file-keys", "--name", "imagenet-val", "--digits", "4");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain(Path.Combine(output, "imagenet-val-0000.tar")));
        using (var shards = new WebDatasetShards(Path.Combine(output, "imagenet-val-0000.tar")))
            Assert.That(Enumerable.Range(0, 2).Select(shards.KeyOf).Order(), Is.EqualTo(new[] { "one", "two" }));

        ImageIO.Write(dir.File("images", "b", "one.png"), TestImages.Noise(4, 4, 3, seed: 3));
        (code, _, stderr) = Cli("shard", "--images", dir.File("images"), "--out", output, "--file-keys");
        Assert.That((code, stderr.Contains("one") && stderr.Contains("unique")), Is.EqualTo((Program.ExitFailed, true)), stderr);
        (code, _, stderr) = Cli("shard", "--images", dir.File("images"), "--out", output, "--max-count", "0");
        Assert.That((code, stderr.Contains("--max-count")), Is.EqualTo((Program.ExitUsage, true)), stderr);
        (code, _, stderr) = Cli("shard", "--images", dir.File("missing"), "--out", output);
        Assert.That((code, stderr.Contains("missing")), Is.EqualTo((Program.ExitFailed, true)), stderr);
    }
}
