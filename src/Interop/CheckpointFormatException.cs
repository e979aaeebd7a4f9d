namespace MaskBit.Models.Interop;

/// <summary>A checkpoint file (torch, safetensors, npz) that is corrupt, truncated, hostile, unsupported or unreadable.
/// The message is "<c>path: what is wrong</c>"; <see cref="Problem"/> holds the part after the path.</summary>
public sealed class CheckpointFormatException : Exception
{
    public string FilePath { get; }
    public string Problem { get; }

    public CheckpointFormatException(string filePath, string problem, Exception? inner = null)
        : base($"{filePath}: {Printable(problem)}", inner)
    {
        FilePath = filePath;
        Problem = Printable(problem);
    }

    /// <summary>The problem with control characters (a name read from a hostile file may hold NULs) shown as '?'.</summary>
    private static string Printable(string text) => string.Create(text.Length, text, (span, t) =>
    {
        for (int i = 0; i < t.Length; i++) span[i] = char.IsControl(t[i]) ? '?' : t[i];
    });
}

/// <summary>A problem found while decoding part of a file, before the file's path is known to the code that
/// found it; the public readers turn it into a <see cref="CheckpointFormatException"/>.</summary>
internal sealed class FormatProblem(string problem) : Exception(problem);
