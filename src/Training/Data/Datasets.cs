using MaskBit.Autograd;
using MaskBit.Kernels;

namespace MaskBit.Models.Data;

/// <summary>A decoded sample on the host, before augmentation: 8-bit HWC image, class label and a key that
/// identifies it in messages (file path or webdataset key).</summary>
public readonly record struct RawSample(HostImage Image, int Label, string Key);

/// <summary>A sample as the model sees it: float tensor (C,H,W) in [0,1], class label, key.</summary>
public readonly record struct ImageSample(Tensor Image, int Label, string Key);

/// <summary>
/// A labelled image collection with random access. Implementations are safe to read from several threads at
/// once (the <see cref="DataLoader"/> decodes on worker threads).
/// </summary>
public interface IImageDataset
{
    int Count { get; }

    /// <summary>The key of sample <paramref name="index"/> without decoding it (for error reports).</summary>
    string KeyOf(int index);

    /// <summary>Reads and decodes one sample.</summary>
    /// <exception cref="InvalidDataException">The sample is corrupt or unreadable; the message names it.</exception>
    RawSample Load(int index);

    /// <summary>One sample as a (C,H,W) tensor in [0,1].</summary>
    ImageSample Get(int index, IBackend? device = null)
    {
        var sample = Load(index);
        return new ImageSample(ImageIO.ToTensor(sample.Image, device), sample.Label, sample.Key);
    }
}

/// <summary>
/// torchvision-style ImageFolder: each sub-folder of <c>root</c> is a class, labelled by its position among the
/// sorted (ordinal) folder names; its .png/.jpg/.jpeg files, found recursively and sorted by path, are the
/// samples. Images are decoded to <c>channels</c> channels (3 = RGB, 1 = gray).
/// </summary>
public sealed class ImageFolderDataset : IImageDataset
{
    private static readonly HashSet<string> ImageExtensions = new(StringComparer.OrdinalIgnoreCase) { ".png", ".jpg", ".jpeg" };

    private readonly (string Path, int Label)[] _samples;

    public string Root { get; }
    public int Channels { get; }
    public IReadOnlyList<string> Classes { get; }
    public int Count => _samples.Length;

    public ImageFolderDataset(string root, int channels = 3)
    {
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"image folder dataset: directory not found: {root}");
        if (channels is not (1 or 3)) throw new ArgumentException($"channels must be 1 or 3, not {channels}");
        Root = Path.GetFullPath(root);
        Channels = channels;
        var classes = Directory.GetDirectories(Root).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToArray();
        if (classes.Length == 0) throw new InvalidDataException($"image folder dataset {Root}: no class sub-folders");
        var samples = new List<(string, int)>();
        for (int label = 0; label < classes.Length; label++)
        {
            var files = Directory.EnumerateFiles(Path.Combine(Root, classes[label]), "*", SearchOption.AllDirectories)
                .Where(f => ImageExtensions.Contains(Path.GetExtension(f)))
                .Order(StringComparer.Ordinal)
                .ToArray();
            if (files.Length == 0) throw new InvalidDataException($"image folder dataset {Root}: class folder '{classes[label]}' has no .png/.jpg/.jpeg files");
            samples.AddRange(files.Select(f => (f, label)));
        }
        Classes = classes;
        _samples = samples.ToArray();
    }

    public string KeyOf(int index) => Path.GetRelativePath(Root, _samples[index].Path);

    /// <summary>The image file of sample <paramref name="index"/> and its class (the index of its sub-folder in <see cref="Classes"/>).</summary>
    public (string Path, int Label) FileOf(int index) => _samples[index];

    public RawSample Load(int index)
    {
        var (path, label) = _samples[index];
        return new RawSample(ImageIO.Read(path, Channels), label, KeyOf(index));
    }
}
