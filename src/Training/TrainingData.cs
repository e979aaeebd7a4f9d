using MaskBit.Models.Config;
using MaskBit.Models.Data;

namespace MaskBit.Models.Training;

/// <summary>Dataset selection for the config's dataset section: `*_shards_path_or_url` names a webdataset shard
/// pattern, an image folder (class sub-folders) or the literal `fashion-mnist` (the embedded default: 32×32,
/// gray replicated to RGB unless the model has one channel).</summary>
public static class TrainingData
{
    public const string FashionMnistName = "fashion-mnist";

    /// <summary>Opens <paramref name="source"/>; <paramref name="train"/> picks Fashion-MNIST's split.</summary>
    public static IImageDataset Open(string source, bool train, int channels)
    {
        if (source == FashionMnistName) return new FashionMnist(train: train, padTo32: true, channels: channels);
        if (Directory.Exists(source)) return new ImageFolderDataset(source, channels);
        return new WebDatasetShards(source, channels);
    }

    /// <summary>A key identifying the images of <paramref name="source"/> (the generator's token cache checks it).</summary>
    public static string Key(string source, IImageDataset dataset) =>
        dataset is FashionMnist fashion ? $"{FashionMnistName}:{fashion.Root}"
        : Directory.Exists(source) ? $"folder:{Path.GetFullPath(source)}" : $"shards:{source}";

    /// <summary>The training images (dataset.params.train_shards_path_or_url), required when no dataset is given.</summary>
    public static string RequireTrainSource(string? source, MaskBitConfig c) =>
        source ?? throw new ConfigException($"{c.File}: required key 'dataset.params.train_shards_path_or_url' is missing");

    /// <summary>The augmentation of dataset.preprocessing, with the defaults of the reference's ImageNetTransform
    /// (data/webdataset_reader.py) for both stages; the resolution is required.</summary>
    public static ImageTransform Transform(MaskBitConfig c)
    {
        const string p = "dataset.preprocessing.";
        var resolution = (int)c.GetInt(p + "resolution");
        try
        {
            return new ImageTransform(resolution, c.GetBool(p + "use_aspect_ratio_aug", true), c.GetBool(p + "use_random_crop", true),
                c.GetDouble(p + "min_scale", 0.05), Preprocess.ParseInterpolation(c.GetString(p + "interpolation", "bilinear")));
        }
        catch (ArgumentException e) { throw new ConfigException($"{c.File}: dataset.preprocessing: {e.Message}"); }
    }

    /// <summary>The generator's per-sample transform: the augmentation when <paramref name="augment"/> and random crops
    /// are on, else deterministic (none when the image already has the resolution), as tokens are cached.</summary>
    public static Func<HostImage, Random, HostImage> TokenTransform(ImageTransform transform, bool augment) =>
        augment && transform.UseRandomCrop ? transform.Train
            : (image, _) => image.Height == transform.Resolution && image.Width == transform.Resolution ? image : transform.Eval(image);

    /// <summary>Image channels the tokenizer reads (model.vq_model.num_channels, 1 or 3).</summary>
    public static int Channels(MaskBitConfig c)
    {
        int channels = (int)c.GetInt("model.vq_model.num_channels", 3);
        if (channels is not (1 or 3)) throw new ConfigException($"{c.File}: model.vq_model.num_channels must be 1 or 3, not {channels}");
        return channels;
    }
}

/// <summary>The samples of another dataset at the given indices, in that order.</summary>
public sealed class SubsetDataset(IImageDataset inner, IReadOnlyList<int> indices) : IImageDataset
{
    public int Count => indices.Count;
    public string KeyOf(int index) => inner.KeyOf(indices[index]);
    public RawSample Load(int index) => inner.Load(indices[index]);

    /// <summary>The first <paramref name="count"/> samples (all when the dataset is smaller).</summary>
    public static IImageDataset First(IImageDataset dataset, int count) =>
        count >= dataset.Count ? dataset : new SubsetDataset(dataset, Enumerable.Range(0, count).ToArray());
}
