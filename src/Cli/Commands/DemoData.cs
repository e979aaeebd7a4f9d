using MaskBit.Models.Data;
using MaskBit.Models.Training;

namespace MaskBit.Cli.Commands;

/// <summary>
/// The demo's images: the embedded Fashion-MNIST (training split to train, test split to evaluate; 32×32 RGB with a
/// black border), another folder of Fashion-MNIST IDX files, an image folder or webdataset shards (the same images
/// train and evaluate then).
/// </summary>
internal sealed class DemoData : IDisposable
{
    public required IImageDataset Train { get; init; }
    public required IImageDataset Eval { get; init; }
    /// <summary>For people and for demo-state.json (a resumed demo must use the same data).</summary>
    public required string Description { get; init; }
    /// <summary>Identifies the training images for the generator's token cache.</summary>
    public required string Key { get; init; }
    public required string EvalSplit { get; init; }
    public IReadOnlyList<string>? ClassNames { get; init; }
    /// <summary>What the single-stage commands need to read the same data: a config override or an environment variable.</summary>
    public string? ConfigOverride { get; init; }
    public string? Environment { get; init; }

    private const int Channels = 3;

    public static DemoData Open(string? path)
    {
        if (path == null || IsFashionMnistFolder(path)) return FashionMnistData(path);
        bool shardPattern = path.Contains('{');   // train-{0000..0099}.tar
        if (!shardPattern && !Directory.Exists(path) && !File.Exists(path))
            throw new FileNotFoundException($"--data: {path} does not exist (expected a folder of Fashion-MNIST files or of images, or webdataset shards)", path);
        var dataset = TrainingData.Open(path, train: true, Channels);
        string kind = dataset is ImageFolderDataset ? "image folder" : "webdataset shards";
        return new DemoData
        {
            Train = dataset, Eval = dataset, Description = $"{kind} {Path.GetFullPath(path)} ({dataset.Count} images)",
            Key = $"{kind}:{Path.GetFullPath(path)}", EvalSplit = "training images", ClassNames = (dataset as ImageFolderDataset)?.Classes,
            ConfigOverride = path,
        };
    }

    private static bool IsFashionMnistFolder(string path) =>
        Directory.Exists(path) && new[] { "", ".gz" }.Any(ext => File.Exists(Path.Combine(path, "train-images-idx3-ubyte" + ext)));

    private static DemoData FashionMnistData(string? root)
    {
        FashionMnist train;
        try { train = new FashionMnist(root, train: true, padTo32: true, channels: Channels); }
        catch (DirectoryNotFoundException e) { throw new DirectoryNotFoundException(e.Message + "; or pass --data with a folder of training images", e); }
        FashionMnist eval;
        string split = "test";
        try { eval = new FashionMnist(train.Root, train: false, padTo32: true, channels: Channels); }
        catch (FileNotFoundException) { eval = train; split = "training images (no test split in the folder)"; }
        return new DemoData
        {
            Train = train, Eval = eval, Description = $"Fashion-MNIST ({train.Root})", Key = $"{TrainingData.FashionMnistName}:{train.Root}",
            EvalSplit = split, ClassNames = FashionMnist.ClassNames,
            Environment = root != null ? $"{FashionMnist.RootVariable}={DemoCommand.Quote(train.Root)}" : null,
        };
    }

    /// <summary>The first image of each of the first <paramref name="classes"/> labels among the first thousand
    /// evaluation images (topped up with the next images when some label is missing).</summary>
    public IReadOnlyList<int> OnePerClass(int classes)
    {
        int scan = Math.Min(Eval.Count, 1000);
        var first = new Dictionary<int, int>();
        for (int i = 0; i < scan && first.Count < classes; i++)
        {
            int label = Eval.Load(i).Label;
            if (label < classes) first.TryAdd(label, i);
        }
        var picks = first.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList();
        for (int i = 0; i < scan && picks.Count < Math.Min(classes, Eval.Count); i++)
            if (!picks.Contains(i)) picks.Add(i);
        return picks;
    }

    public void Dispose()
    {
        (Train as IDisposable)?.Dispose();
        if (!ReferenceEquals(Eval, Train)) (Eval as IDisposable)?.Dispose();
    }
}
