using System.IO.Compression;

namespace MaskBit.Models.Interop;

/// <summary>Reading zip entries (torch zip checkpoints, npz) without trusting the sizes a central directory
/// declares: a declared size is checked against the file and what compression can do before anything is
/// allocated, and decompression stops at the declared size.</summary>
internal static class ZipEntries
{
    /// <summary>Deflate cannot expand data by more than about 1032×; a larger declared size is a lie.</summary>
    public const long MaxDeflateRatio = 1100;

    /// <summary>Throws unless <paramref name="entry"/> can really hold its declared (uncompressed) size.</summary>
    public static void CheckDeclaredSize(ZipArchiveEntry entry, long fileLength, string what)
    {
        long maxPossible = entry.CompressedLength == entry.Length ? fileLength : entry.CompressedLength * MaxDeflateRatio;
        if (entry.Length < 0 || entry.CompressedLength > fileLength || entry.Length > maxPossible)
            throw new FormatProblem($"{what} declares an impossible size ({entry.Length:N0} bytes from {entry.CompressedLength:N0} compressed, file {fileLength:N0})");
    }

    /// <summary>Reads exactly the entry's declared size after counting it against <paramref name="budget"/>;
    /// an entry that decompresses to less or more is refused (reading stops one byte past the declared size).</summary>
    public static byte[] ReadAll(ZipArchiveEntry entry, long fileLength, LoadBudget budget, string what)
    {
        CheckDeclaredSize(entry, fileLength, what);
        if (entry.Length > Array.MaxLength) throw new FormatProblem($"{what} is too large ({entry.Length:N0} bytes)");
        budget.Take(entry.Length, what);
        var buffer = new byte[entry.Length];
        using var s = entry.Open();
        try { s.ReadExactly(buffer); }
        catch (EndOfStreamException) { throw new FormatProblem($"{what} is truncated"); }
        if (s.ReadByte() >= 0) throw new FormatProblem($"{what} is longer than declared");
        return buffer;
    }
}
