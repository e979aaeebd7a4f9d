using MaskBit.Cli;
using MaskBit.Models.Data;
using MaskBit.Tests.Data;

namespace MaskBit.Tests.Training;

/// <summary>The temporary folder a training test works in: labelled images in an image folder
/// (images/class{label}/img{i}.png, labels alternating 0, 1), a config written from a template whose IMAGES placeholder
/// names that folder, fresh run folders, and the CLI run in-process.</summary>
internal sealed class TrainingTestFolder : IDisposable
{
    private readonly TempDirectory _dir = new();

    /// <summary>The folder itself (for helpers that write into a <see cref="TempDirectory"/>).</summary>
    public TempDirectory Directory => _dir;

    /// <param name="configTemplate">YAML with IMAGES where the image folder goes.</param>
    /// <param name="imageCount">Images to write; image i has label i % 2.</param>
    /// <param name="image">Image i of label i % 2.</param>
    public TrainingTestFolder(string configTemplate, int imageCount, Func<int, HostImage> image)
    {
        Images = _dir.File("images");
        for (int i = 0; i < imageCount; i++) ImageIO.Write(_dir.File("images", $"class{i % 2}", $"img{i:D2}.png"), image(i));
        Config = WriteConfig("tiny.yaml", configTemplate);
    }

    /// <summary>The image folder (one sub-folder per class).</summary>
    public string Images { get; }

    /// <summary>The config written from the template.</summary>
    public string Config { get; }

    /// <summary>A path in the folder (its parent folders created).</summary>
    public string File(params string[] parts) => _dir.File(parts);

    /// <summary>Writes another config from a template (IMAGES replaced) and returns its path.</summary>
    public string WriteConfig(string name, string template)
    {
        string path = _dir.File(name);
        System.IO.File.WriteAllText(path, template.Replace("IMAGES", Images));
        return path;
    }

    /// <summary>A run folder no test has used.</summary>
    public string NewRunDir() => _dir.File("runs", Guid.NewGuid().ToString("N"));

    /// <summary>`maskbit ARGS` in this process: the exit code and what it wrote.</summary>
    public static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    public void Dispose() => _dir.Dispose();
}
