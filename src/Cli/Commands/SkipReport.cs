namespace MaskBit.Cli.Commands;

/// <summary>Unreadable inputs of a command over many images (`reconstruct --images`, `eval`): each is reported once
/// on stderr and skipped, and <see cref="Finish"/> prints how many were; with --strict the first one stops the
/// command (exit 1). A command whose inputs were all unreadable fails.</summary>
internal sealed class SkipReport(TextWriter stderr, bool strict)
{
    public int Count { get; private set; }

    public static System.CommandLine.Option<bool> StrictOption() =>
        new("--strict") { Description = "Stop at the first unreadable image (exit 1) instead of skipping it and reporting it." };

    /// <summary>Records one unreadable input; <paramref name="message"/> names it and says what is wrong.</summary>
    public void Skip(string message)
    {
        if (strict) throw new InvalidDataException($"{message} (--strict)");
        Count++;
        stderr.WriteLine($"skipped: {message}");
    }

    /// <summary>Prints the count of skipped inputs of <paramref name="total"/>; throws when none was read.</summary>
    public void Finish(long total, string what)
    {
        if (Count == 0) return;
        if (Count >= total) throw new InvalidDataException($"none of the {total} {what} could be read (each is reported above)");
        stderr.WriteLine($"warning: skipped {Count} of {total} {what} that could not be read (listed above)");
    }
}
