using System.IO.Compression;

namespace MaskBit.Models.Interop;

public enum CheckpointKind { TorchZip, TorchLegacy, SafeTensors, Npz }

/// <summary>Loads any weights file MaskBit understands, telling the format from the file's content (not its name).</summary>
public static class CheckpointFile
{
    public static CheckpointKind Detect(string path)
    {
        byte[] head = TorchCheckpoint.ReadHead(path, 16);
        if (TorchCheckpoint.IsLegacy(head)) return CheckpointKind.TorchLegacy;
        if (TorchCheckpoint.IsZip(head)) return IsNpz(path) ? CheckpointKind.Npz : CheckpointKind.TorchZip;
        if (SafeTensors.LooksLikeSafeTensors(head, new FileInfo(path).Length)) return CheckpointKind.SafeTensors;
        throw new CheckpointFormatException(path, "unrecognised format (expected a torch checkpoint, safetensors or npz file)");
    }

    public static StateDict Load(string path) => Detect(path) switch
    {
        CheckpointKind.TorchZip => TorchCheckpoint.LoadZip(path),
        CheckpointKind.TorchLegacy => TorchCheckpoint.LoadLegacy(path),
        CheckpointKind.SafeTensors => SafeTensors.Load(path),
        _ => LoadNpz(path),
    };

    /// <summary>The state dict of any weights file with its tensors' bytes read when used, where the format allows
    /// (torch zip, safetensors): a loader that copies tensor by tensor (<see cref="ModuleCheckpoint"/>)
    /// holds one tensor's bytes at a time instead of the whole file's. Legacy torch and npz files load whole.</summary>
    public static StateDict Open(string path) => Detect(path) switch
    {
        CheckpointKind.TorchZip => TorchCheckpoint.OpenZip(path),
        CheckpointKind.SafeTensors => SafeTensors.Open(path),
        _ => Load(path),
    };

    /// <summary>The tensors (names, dtypes, shapes) and metadata of any weights file, without reading the tensors'
    /// values where the format allows (torch zip, safetensors, npz); a legacy torch file is loaded whole.</summary>
    public static CheckpointListing List(string path) => Detect(path) switch
    {
        CheckpointKind.TorchZip => TorchCheckpoint.ListZip(path),
        CheckpointKind.TorchLegacy => CheckpointListing.Of(TorchCheckpoint.LoadLegacy(path)),
        CheckpointKind.SafeTensors => SafeTensors.List(path),
        _ => NpzProblems(path, () => new CheckpointListing(path, "npz", Npy.ListNpz(path), [])),
    };

    /// <summary>A zip of .npy arrays and no torch data.pkl. A damaged zip counts as torch, whose loader reports it.</summary>
    private static bool IsNpz(string path)
    {
        try
        {
            using var zip = ZipFile.OpenRead(path);
            var names = zip.Entries.Select(e => e.FullName).ToList();
            return names.Count > 0 && names.All(n => n.EndsWith(".npy", StringComparison.Ordinal));
        }
        catch (Exception e) when (e is InvalidDataException or IOException) { return false; }
    }

    private static StateDict LoadNpz(string path) =>
        NpzProblems(path, () => new StateDict(path, "npz", Npy.ReadNpz(path).Select(kv => TensorRecord.FromNpy(kv.Key, kv.Value))));

    private static T NpzProblems<T>(string path, Func<T> read)
    {
        try { return read(); }
        catch (Exception e) when (e is InvalidDataException or IOException or FormatException or OverflowException or ArgumentException)
        {
            string problem = e.Message.StartsWith(path + ":", StringComparison.Ordinal) ? e.Message[(path.Length + 1)..].TrimStart() : e.Message;
            throw new CheckpointFormatException(path, problem, e);
        }
    }
}
