using System.Buffers.Binary;
using System.IO.Compression;

namespace MaskBit.Models.Data;

/// <summary>
/// Fashion-MNIST from its IDX files (<c>train-images-idx3-ubyte</c>, <c>train-labels-idx1-ubyte</c>, and
/// <c>t10k-*</c> for the test split; each plain or .gz): 28×28 gray images, labels 0..9. The root defaults
/// to $MASKBIT_FASHION_MNIST, else /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
/// With <c>padTo32</c> each image gets a 2-pixel black border (32×32, a power of two for the tokenizer).
/// </summary>
public sealed class FashionMnist : IImageDataset
{
    public const string RootVariable = "MASKBIT_FASHION_MNIST";
    public const string DefaultRoot = "/usr/share/datasets/fashion-mnist";
    public const int ImageSize = 28;
    public const int PaddedSize = 32;

    public static readonly IReadOnlyList<string> ClassNames = new[]
    {
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    };

    private const int ImagesMagic = 0x00000803; // unsigned bytes, 3 dimensions
    private const int LabelsMagic = 0x00000801; // unsigned bytes, 1 dimension

    private readonly byte[] _pixels;
    private readonly byte[] _labels;
    private readonly string _split;

    public string Root { get; }
    public bool Train { get; }
    public bool PadTo32 { get; }
    /// <summary>1 (gray, the default) or 3 (gray replicated to RGB).</summary>
    public int Channels { get; }
    public int Count => _labels.Length;
    /// <summary>Side length of the images this dataset yields (28, or 32 when padded).</summary>
    public int Size => PadTo32 ? PaddedSize : ImageSize;

    public FashionMnist(string? root = null, bool train = true, bool padTo32 = false, int channels = 1)
    {
        if (channels is not (1 or 3)) throw new ArgumentException($"channels must be 1 or 3, not {channels}");
        Root = ResolveRoot(root);
        Train = train; PadTo32 = padTo32; Channels = channels;
        _split = train ? "train" : "t10k";

        var imagesPath = FindFile($"{_split}-images-idx3-ubyte");
        var labelsPath = FindFile($"{_split}-labels-idx1-ubyte");
        var (imageDims, pixels) = ReadIdx(imagesPath, ImagesMagic);
        var (labelDims, labels) = ReadIdx(labelsPath, LabelsMagic);
        if (imageDims[1] != ImageSize || imageDims[2] != ImageSize)
            throw new InvalidDataException($"{imagesPath}: images are {imageDims[1]}x{imageDims[2]}, Fashion-MNIST has {ImageSize}x{ImageSize}");
        if (imageDims[0] != labelDims[0])
            throw new InvalidDataException($"{imagesPath} has {imageDims[0]} images but {labelsPath} has {labelDims[0]} labels");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= ClassNames.Count)
                throw new InvalidDataException($"{labelsPath}: label {labels[i]} at index {i} is outside 0..{ClassNames.Count - 1}");
        _pixels = pixels;
        _labels = labels;
    }

    private static string ResolveRoot(string? root)
    {
        root ??= Environment.GetEnvironmentVariable(RootVariable) is { Length: > 0 } fromEnv ? fromEnv : DefaultRoot;
        if (!Directory.Exists(root))
            throw new DirectoryNotFoundException($"Fashion-MNIST directory not found: {root} (set {RootVariable} or install the Debian package dataset-fashion-mnist)");
        return root;
    }

    private string FindFile(string name)
    {
        foreach (var candidate in new[] { name, name + ".gz" })
        {
            var path = Path.Combine(Root, candidate);
            if (File.Exists(path)) return path;
        }
        throw new FileNotFoundException($"Fashion-MNIST: neither {name} nor {name}.gz in {Root}", Path.Combine(Root, name));
    }

    /// <summary>
    /// Reads an unsigned-byte IDX file (gzip-compressed when the name ends in .gz): a big-endian header of
    /// magic (0x0000 0x08 ndim) and ndim dimension sizes, then the bytes. Returns the dimensions and data.
    /// </summary>
    /// <exception cref="InvalidDataException">Wrong magic number or the data does not match the header; the
    /// message names the file.</exception>
    public static (int[] Dims, byte[] Data) ReadIdx(string path, int expectedMagic)
    {
        byte[] bytes;
        try
        {
            using var file = File.OpenRead(path);
            using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
            using var memory = new MemoryStream();
            stream.CopyTo(memory);
            bytes = memory.ToArray();
        }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path}: not a valid gzip file: {e.Message}", e); }

        if (bytes.Length < 4) throw new InvalidDataException($"{path}: {bytes.Length} bytes is too short for an IDX header");
        int magic = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (magic != expectedMagic)
            throw new InvalidDataException($"{path}: IDX magic number 0x{magic:X8}, expected 0x{expectedMagic:X8}");
        int ndim = magic & 0xFF, header = 4 + 4 * ndim;
        if (bytes.Length < header) throw new InvalidDataException($"{path}: truncated IDX header ({bytes.Length} bytes, {ndim} dimensions need {header})");
        var dims = new int[ndim];
        long count = 1;
        for (int d = 0; d < ndim; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * d));
            if (dims[d] < 0) throw new InvalidDataException($"{path}: negative IDX dimension {dims[d]}");
            count *= dims[d];
        }
        long payload = bytes.Length - header;
        if (payload != count)
            throw new InvalidDataException($"{path}: header {string.Join("x", dims)} needs {count} data bytes, file has {payload}");
        return (dims, bytes.AsSpan(header).ToArray());
    }

    public string KeyOf(int index) => $"{_split}/{index:D5}";

    public RawSample Load(int index)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"Fashion-MNIST {_split} has {Count} images");
        const int plane = ImageSize * ImageSize;
        var source = _pixels.AsSpan(index * plane, plane);
        int border = PadTo32 ? (PaddedSize - ImageSize) / 2 : 0;
        var image = new HostImage(Size, Size, Channels);
        for (int y = 0; y < ImageSize; y++)
        {
            var srcRow = source.Slice(y * ImageSize, ImageSize);
            var dstRow = image.Row(y + border).Slice(border * Channels, ImageSize * Channels);
            if (Channels == 1) srcRow.CopyTo(dstRow);
            else
                for (int x = 0; x < ImageSize; x++) dstRow[3 * x] = dstRow[3 * x + 1] = dstRow[3 * x + 2] = srcRow[x];
        }
        return new RawSample(image, _labels[index], KeyOf(index));
    }
}
