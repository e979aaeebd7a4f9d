using System.CommandLine;
using System.Globalization;
using MaskBit.Models.Data;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit shard --images DIR --out DIR [--name train]`: webdataset tar shards from an image folder (one
/// sub-folder per class, labels in sorted folder order), the counterpart of the reference's
/// scripts/create_sharded_dataset.py: the samples in a seeded random order, keys "%07d" of the sample's index in the
/// folder listing (or the file name with --file-keys), members KEY.cls and KEY.jpg / KEY.png with the image files'
/// bytes, at most --max-count samples (5,079) or --max-size bytes (1e9) per shard.</summary>
public static class ShardCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var images = new Option<string>("--images") { Description = "Image folder: one sub-folder per class (sorted folder names give labels 0, 1, …) of .png/.jpg/.jpeg files.", Required = true };
        var output = new Option<string>("--out") { Description = "Folder for the shards.", Required = true };
        var name = new Option<string>("--name") { Description = "Shard name prefix: NAME-000000.tar, NAME-000001.tar, …", DefaultValueFactory = _ => "train" };
        var maxCount = new Option<int>("--max-count") { Description = "Samples per shard at most (create_sharded_dataset.py's --maxcount).", DefaultValueFactory = _ => WebDatasetWriter.ReferenceMaxCount };
        var maxSize = new Option<long>("--max-size") { Description = "Bytes per shard at most, checked before each sample (create_sharded_dataset.py's --maxsize).", DefaultValueFactory = _ => WebDatasetWriter.ReferenceMaxSize };
        var seed = new Option<int>("--seed") { Description = "Seed of the sample order (the reference shuffles so that shards mix the classes).", DefaultValueFactory = _ => 0 };
        var digits = new Option<int>("--digits") { Description = "Width of the shard number (4 gives create_sharded_dataset.py's imagenet-train-0000.tar names, which the official configs' patterns expect).", DefaultValueFactory = _ => 6 };
        var fileKeys = new Option<bool>("--file-keys") { Description = "Use the file name (without extension) as the sample key instead of the index (create_sharded_dataset.py's --filekey); names must be unique." };
        var command = new Command("shard", CommandSupport.Describe(
            "Write webdataset tar shards from an image folder with class sub-folders, as the reference's create_sharded_dataset.py; " +
            "prints the brace pattern to put in dataset.params.train_shards_path_or_url / eval_shards_path_or_url.",
            "maskbit shard --images imagenet/train --out imagenet_shards/train --name imagenet-train --digits 4   # the official configs' imagenet-train-{0000..0252}.tar",
            "maskbit shard --images my_images/ --out shards --max-count 1000"))
        {
            images, output, name, maxCount, maxSize, seed, digits, fileKeys,
        };
        command.SetAction(parse => CommandSupport.Guard(stderr, () =>
        {
            if (parse.GetValue(maxCount) < 1) throw new UsageException($"--max-count must be at least 1, not {parse.GetValue(maxCount)}");
            if (parse.GetValue(maxSize) < 1) throw new UsageException($"--max-size must be at least 1, not {parse.GetValue(maxSize)}");
            if (parse.GetValue(digits) is < 1 or > 12) throw new UsageException($"--digits must be 1 to 12, not {parse.GetValue(digits)}");
            string prefix = parse.GetValue(name)!;
            if (prefix.Length == 0 || prefix.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0) throw new UsageException($"--name '{prefix}' is not a file name prefix");
            var folder = new ImageFolderDataset(parse.GetValue(images)!);
            var order = Enumerable.Range(0, folder.Count).ToArray();
            new Random(parse.GetValue(seed)).Shuffle(order);
            var keys = new Dictionary<string, string>();
            var progress = new ProgressDisplay(stdout, "shard", unit: "img");
            using var writer = new WebDatasetWriter(parse.GetValue(output)!, prefix, parse.GetValue(maxCount), parse.GetValue(maxSize), parse.GetValue(digits));
            foreach (int index in order)
            {
                var (path, label) = folder.FileOf(index);
                string key = parse.GetValue(fileKeys) ? Path.GetFileNameWithoutExtension(path).Replace('.', '_') : index.ToString("D7", CultureInfo.InvariantCulture);
                if (!keys.TryAdd(key, path)) throw new InvalidDataException($"{path}: its key '{key}' is also that of {keys[key]}; sample keys must be unique (drop --file-keys)");
                string extension = Path.GetExtension(path).TrimStart('.').ToLowerInvariant() switch { "jpeg" => "jpg", var e => e };
                writer.Write(key, label, extension, File.ReadAllBytes(path));
                progress.Report(writer.Samples, folder.Count);
            }
            writer.Dispose();
            progress.Finish();
            stdout.WriteLine($"wrote {writer.Samples} samples of {folder.Classes.Count} classes to {writer.Shards.Count} shard(s): {writer.Pattern}");
            stdout.WriteLine("labels: " + string.Join(", ", folder.Classes.Take(5).Select((c, i) => $"{i} = {c}")) + (folder.Classes.Count > 5 ? ", …" : ""));
            return Program.ExitOk;
        }));
        return command;
    }
}
