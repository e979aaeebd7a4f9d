using System.Buffers.Binary;
using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using MaskBit.Models.Data;

namespace MaskBit.Tests.Data;

public class DatasetTests
{
    private TempDirectory _dir = null!;

    [SetUp] public void SetUp() => _dir = new TempDirectory();
    [TearDown] public void TearDown() => _dir.Dispose();

    // ---- image folder ----------------------------------------------------------------------------------------

    [Test]
    public void ImageFolderLabelsSortedClassFolders()
    {
        ImageIO.Write(_dir.File("dog", "b.png"), TestImages.Gradient(8, 10, phase: 1));
        ImageIO.Write(_dir.File("dog", "a.JPG"), TestImages.Gradient(8, 10, phase: 2));
        ImageIO.Write(_dir.File("ant", "nested", "x.jpeg"), TestImages.Gradient(6, 6, phase: 3));
        ImageIO.Write(_dir.File("cat", "gray.png"), TestImages.Noise(5, 7, 1, seed: 2));
        File.WriteAllText(_dir.File("cat", "notes.txt"), "not an image");

        var ds = new ImageFolderDataset(_dir.Path);
        Assert.That(ds.Classes, Is.EqualTo(new[] { "ant", "cat", "dog" }));
        Assert.That(ds.Count, Is.EqualTo(4));
        Assert.That(Enumerable.Range(0, 4).Select(ds.KeyOf), Is.EqualTo(new[]
        {
            Path.Combine("ant", "nested", "x.jpeg"), Path.Combine("cat", "gray.png"), Path.Combine("dog", "a.JPG"), Path.Combine("dog", "b.png"),
        }));
        Assert.That(Enumerable.Range(0, 4).Select(i => ds.Load(i).Label), Is.EqualTo(new[] { 0, 1, 2, 2 }));

        var gray = ((IImageDataset)ds).Get(1);
        Assert.That(gray.Image.Shape, Is.EqualTo(new[] { 3, 5, 7 }), "grayscale files come out as RGB");
        Assert.That(gray.Label, Is.EqualTo(1));
        Assert.That(new ImageFolderDataset(_dir.Path, channels: 1).Load(3).Image.Channels, Is.EqualTo(1));
    }

    [Test]
    public void ImageFolderReportsMissingAndEmptyFolders()
    {
        Assert.Throws<DirectoryNotFoundException>(() => _ = new ImageFolderDataset(Path.Combine(_dir.Path, "nope")));
        Directory.CreateDirectory(Path.Combine(_dir.Path, "empty-class"));
        Assert.That(Assert.Throws<InvalidDataException>(() => _ = new ImageFolderDataset(_dir.Path))!.Message, Does.Contain("empty-class"));
    }

    // ---- webdataset shards -----------------------------------------------------------------------------------

    private static void WriteShard(string path, IEnumerable<(string Name, byte[] Data)> entries)
    {
        using var tar = new TarWriter(File.Create(path), TarEntryFormat.Pax, leaveOpen: false);
        foreach (var (name, data) in entries)
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data) });
    }

    private static IEnumerable<(string, byte[])> Sample(string key, HostImage image, int label, string ext = "jpg")
    {
        yield return ($"{key}.{ext}", ext == "png" ? ImageIO.EncodePng(image) : ImageIO.EncodeJpeg(image));
        yield return ($"{key}.cls", Encoding.ASCII.GetBytes(label.ToString()));
    }

    /// <summary>Two shards as create_sharded_dataset.py writes them; sample 0000004 has a corrupt .jpg.</summary>
    private string WriteTwoShards()
    {
        WriteShard(_dir.File("shards", "train-0000.tar"),
            Sample("0000000", TestImages.Gradient(12, 16, phase: 0), 3)
                .Concat(Sample("0000001", TestImages.Gradient(12, 16, phase: 9), 7, "png"))
                .Concat(Sample("0000002", TestImages.Gradient(12, 16, phase: 18), 0)));
        WriteShard(_dir.File("shards", "train-0001.tar"),
            Sample("0000003", TestImages.Gradient(12, 16, phase: 27), 5)
                .Concat(new[] { ("0000004.jpg", Encoding.ASCII.GetBytes("this is not a jpeg")), ("0000004.cls", Encoding.ASCII.GetBytes("2")) })
                .Concat(Sample("0000005", TestImages.Gradient(12, 16, phase: 36), 9, "png")));
        return Path.Combine(_dir.Path, "shards", "train-{0000..0001}.tar");
    }

    [Test]
    public void WebDatasetGroupsEntriesByKeyAcrossShards()
    {
        using var ds = new WebDatasetShards(WriteTwoShards());
        Assert.That(ds.Shards.Select(Path.GetFileName), Is.EqualTo(new[] { "train-0000.tar", "train-0001.tar" }));
        Assert.That(ds.Count, Is.EqualTo(6));
        Assert.That(Enumerable.Range(0, 6).Select(ds.KeyOf), Is.EqualTo(new[] { "0000000", "0000001", "0000002", "0000003", "0000004", "0000005" }));

        var png = ds.Load(1);
        Assert.That((png.Label, png.Key), Is.EqualTo((7, "0000001")));
        Assert.That(png.Image.Pixels, Is.EqualTo(TestImages.Gradient(12, 16, phase: 9).Pixels), "PNG samples are lossless");
        Assert.That(ds.Load(3).Label, Is.EqualTo(5));
        var sample = ((IImageDataset)ds).Get(5);
        Assert.That(sample.Image.Shape, Is.EqualTo(new[] { 3, 12, 16 }));
        Assert.That(sample.Label, Is.EqualTo(9));

        var corrupt = Assert.Throws<InvalidDataException>(() => ds.Load(4))!;
        Assert.That(corrupt.Message, Does.Contain("0000004").And.Contain("train-0001.tar"));
    }

    [Test]
    public void WebDatasetLoaderSkipsAndCountsTheCorruptSample()
    {
        using var ds = new WebDatasetShards(WriteTwoShards());
        var reported = new List<SkippedSample>();
        var loader = new DataLoader(ds, new DataLoaderOptions { BatchSize = 4, Workers = 2, Seed = 3, OnSkipped = reported.Add });

        var epoch0 = loader.Epoch(0).ToList();
        Assert.That(epoch0.Sum(b => b.Count), Is.EqualTo(5));
        Assert.That(epoch0.SelectMany(b => b.Keys), Does.Not.Contain("0000004"));
        Assert.That(loader.SkippedCount, Is.EqualTo(1));
        Assert.That(loader.SkippedSamples.Single().Key, Is.EqualTo("0000004"));
        Assert.That(loader.SkippedSamples.Single().Reason, Does.Contain("train-0001.tar"));

        Assert.That(loader.Epoch(1).Sum(b => b.Count), Is.EqualTo(5));
        Assert.That(loader.SkippedCount, Is.EqualTo(2), "counted again in the next epoch");
        Assert.That(reported, Has.Count.EqualTo(1), "but reported once");

        var serial = new DataLoader(ds, new DataLoaderOptions { BatchSize = 4, Workers = 0, Seed = 3 }).Epoch(0).ToList();
        Assert.That(serial.Select(b => b.Images.ToArray()), Is.EqualTo(epoch0.Select(b => b.Images.ToArray())), "parallel decoding gives the same pixels");
    }

    [Test]
    public void WebDatasetSamplesWithoutImageOrLabelFailOnLoad()
    {
        var path = _dir.File("odd.tar");
        WriteShard(path, new[]
        {
            ("dir/a.cls", Encoding.ASCII.GetBytes("1")),
            ("dir/b.png", ImageIO.EncodePng(TestImages.Gradient(4, 4))),
            ("dir/c.png", ImageIO.EncodePng(TestImages.Gradient(4, 4))), ("dir/c.cls", Encoding.ASCII.GetBytes("cat")),
            ("dir/d.seg.png", ImageIO.EncodePng(TestImages.Gradient(4, 4))), ("dir/d.png", ImageIO.EncodePng(TestImages.Gradient(6, 5))), ("dir/d.cls", Encoding.ASCII.GetBytes(" 4\n")),
        });
        using var ds = new WebDatasetShards(path);
        Assert.That(Enumerable.Range(0, ds.Count).Select(ds.KeyOf), Is.EqualTo(new[] { "dir/a", "dir/b", "dir/c", "dir/d" }));
        Assert.That(Assert.Throws<InvalidDataException>(() => ds.Load(0))!.Message, Does.Contain("no .jpg/.jpeg/.png image"));
        Assert.That(Assert.Throws<InvalidDataException>(() => ds.Load(1))!.Message, Does.Contain("no .cls label"));
        Assert.That(Assert.Throws<InvalidDataException>(() => ds.Load(2))!.Message, Does.Contain("'cat' is not an integer"));
        var d = ds.Load(3);
        Assert.That(d.Label, Is.EqualTo(4));
        Assert.That((d.Image.Height, d.Image.Width), Is.EqualTo((6, 5)), "an extension like seg.png is not the sample image");
    }

    [Test]
    public void MissingShardIsNamed()
    {
        WriteShard(_dir.File("s-00.tar"), Sample("k", TestImages.Gradient(4, 4), 1));
        var pattern = Path.Combine(_dir.Path, "s-{00..01}.tar");
        var e = Assert.Throws<FileNotFoundException>(() => _ = new WebDatasetShards(pattern))!;
        Assert.That(e.Message, Does.Contain(Path.Combine(_dir.Path, "s-01.tar")));

        var truncated = _dir.File("cut.tar");
        WriteShard(truncated, Sample("k", TestImages.Noise(64, 64, 3, seed: 1), 1, "png"));
        var bytes = File.ReadAllBytes(truncated);
        File.WriteAllBytes(truncated, bytes[..700]);
        Assert.That(Assert.Throws<InvalidDataException>(() => _ = new WebDatasetShards(truncated))!.Message, Does.Contain("cut.tar"));
    }

    [Test]
    public void BracePatternsExpandLikeBraceexpand()
    {
        Assert.That(WebDatasetShards.ExpandBraces("train-{0000..0002}.tar"), Is.EqualTo(new[] { "train-0000.tar", "train-0001.tar", "train-0002.tar" }));
        Assert.That(WebDatasetShards.ExpandBraces("x{8..10}"), Is.EqualTo(new[] { "x8", "x9", "x10" }));
        Assert.That(WebDatasetShards.ExpandBraces("{a,b}-{01..02}"), Is.EqualTo(new[] { "a-01", "a-02", "b-01", "b-02" }));
        Assert.That(WebDatasetShards.ExpandBraces("plain.tar"), Is.EqualTo(new[] { "plain.tar" }));
        Assert.Throws<ArgumentException>(() => WebDatasetShards.ExpandBraces("bad-{0000..0002.tar"));
        Assert.That(WebDatasetShards.SplitEntryName("n01/img.seg.PNG"), Is.EqualTo(("n01/img", "seg.png")));
        Assert.That(WebDatasetShards.SplitEntryName("a.b/c"), Is.EqualTo(("a.b/c", "")));
    }

    // ---- Fashion-MNIST / IDX ---------------------------------------------------------------------------------

    private static byte[] Idx(int magic, int[] dims, byte[] data)
    {
        var bytes = new byte[4 + 4 * dims.Length + data.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, magic);
        for (int d = 0; d < dims.Length; d++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * d), dims[d]);
        data.CopyTo(bytes, 4 + 4 * dims.Length);
        return bytes;
    }

    private static void WriteGz(string path, byte[] bytes)
    {
        using var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        gz.Write(bytes);
    }

    /// <summary>A 5-image IDX train split: images gzip-compressed, labels plain; image i has value i+1 at (i, 2i).</summary>
    private string WriteSmallIdx(int images = 5, int labels = 5, int imageMagic = 0x803)
    {
        var root = _dir.File("fmnist");
        Directory.CreateDirectory(root);
        var pixels = new byte[images * 28 * 28];
        for (int i = 0; i < images; i++) pixels[i * 784 + i * 28 + 2 * i] = (byte)(i + 1);
        WriteGz(Path.Combine(root, "train-images-idx3-ubyte.gz"), Idx(imageMagic, new[] { images, 28, 28 }, pixels));
        File.WriteAllBytes(Path.Combine(root, "train-labels-idx1-ubyte"), Idx(0x801, new[] { labels }, Enumerable.Range(0, labels).Select(i => (byte)(9 - i)).ToArray()));
        return root;
    }

    [Test]
    public void IdxFilesReadAsGrayImages()
    {
        var root = WriteSmallIdx();
        var ds = new FashionMnist(root, train: true);
        Assert.That(ds.Count, Is.EqualTo(5));
        var s = ds.Load(3);
        Assert.That((s.Image.Height, s.Image.Width, s.Image.Channels, s.Label, s.Key), Is.EqualTo((28, 28, 1, 6, "train/00003")));
        Assert.That(s.Image[3, 6, 0], Is.EqualTo(4));
        Assert.That(s.Image.Pixels.Count(p => p != 0), Is.EqualTo(1));

        var padded = new FashionMnist(root, train: true, padTo32: true, channels: 3).Load(3).Image;
        Assert.That((padded.Height, padded.Width, padded.Channels), Is.EqualTo((32, 32, 3)));
        Assert.That(padded[3 + 2, 6 + 2, 1], Is.EqualTo(4));
        Assert.That(((IImageDataset)new FashionMnist(root, padTo32: true)).Get(0).Image.Shape, Is.EqualTo(new[] { 1, 32, 32 }));
    }

    [Test]
    public void IdxProblemsNameTheFile()
    {
        var badMagic = WriteSmallIdx(imageMagic: 0x801);
        var e = Assert.Throws<InvalidDataException>(() => _ = new FashionMnist(badMagic))!;
        Assert.That(e.Message, Does.Contain("train-images-idx3-ubyte.gz").And.Contain("magic"));
        Directory.Delete(badMagic, true);

        var mismatch = WriteSmallIdx(images: 5, labels: 4);
        Assert.That(Assert.Throws<InvalidDataException>(() => _ = new FashionMnist(mismatch))!.Message, Does.Contain("5 images").And.Contain("4 labels"));

        var labelsPath = Path.Combine(mismatch, "train-labels-idx1-ubyte");
        var labels = File.ReadAllBytes(Path.Combine(mismatch, "train-labels-idx1-ubyte"));
        File.WriteAllBytes(labelsPath, labels[..^2]);
        Assert.That(Assert.Throws<InvalidDataException>(() => FashionMnist.ReadIdx(labelsPath, 0x801))!.Message, Does.Contain(labelsPath).And.Contain("needs 4 data bytes"));

        Assert.That(Assert.Throws<FileNotFoundException>(() => _ = new FashionMnist(mismatch, train: false))!.Message, Does.Contain("t10k-images-idx3-ubyte"));
        Assert.Throws<DirectoryNotFoundException>(() => _ = new FashionMnist(Path.Combine(_dir.Path, "absent")));
    }

    [Test]
    public void RootComesFromTheEnvironmentWhenNotGiven()
    {
        var root = WriteSmallIdx();
        var previous = Environment.GetEnvironmentVariable(FashionMnist.RootVariable);
        try
        {
            Environment.SetEnvironmentVariable(FashionMnist.RootVariable, root);
            Assert.That(new FashionMnist().Root, Is.EqualTo(root));
        }
        finally { Environment.SetEnvironmentVariable(FashionMnist.RootVariable, previous); }
    }

    [Test]
    public void RealFashionMnistTestSplit()
    {
        if (!File.Exists(Path.Combine(FashionMnist.DefaultRoot, "t10k-images-idx3-ubyte.gz")) && !File.Exists(Path.Combine(FashionMnist.DefaultRoot, "t10k-images-idx3-ubyte")))
            Assert.Ignore($"Fashion-MNIST is not installed at {FashionMnist.DefaultRoot}");
        var ds = new FashionMnist(FashionMnist.DefaultRoot, train: false);
        Assert.That(ds.Count, Is.EqualTo(10000));
        var labels = Enumerable.Range(0, ds.Count).Select(i => ds.Load(i).Label).ToArray();
        Assert.That(labels.Distinct().Order(), Is.EqualTo(Enumerable.Range(0, 10)));
        Assert.That(labels.Count(l => l == 0), Is.EqualTo(1000), "the test split is balanced");
        var first = ds.Load(0).Image;
        Assert.That((first.Height, first.Width, first.Channels), Is.EqualTo((28, 28, 1)));
        Assert.That(first.Pixels.Max(), Is.GreaterThan(200));
    }
}
