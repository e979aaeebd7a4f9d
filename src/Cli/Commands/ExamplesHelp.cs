using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace MaskBit.Cli.Commands;

/// <summary>
/// --help with an example section: a command's description (see <see cref="CommandSupport.Describe"/>) ends with
/// its examples; this action prints the standard help without them (so command listings stay one paragraph)
/// and then the examples of the command asked about, below its options.
/// </summary>
internal sealed class ExamplesHelp(HelpAction standard) : SynchronousCommandLineAction
{
    public const string Marker = "\n\nExamples:\n";

    /// <summary>Replaces the root's --help action (the option is shared by every subcommand).</summary>
    public static void Install(RootCommand root)
    {
        var help = root.Options.OfType<HelpOption>().Single();
        help.Action = new ExamplesHelp((HelpAction)help.Action!);
    }

    public override int Invoke(ParseResult parseResult)
    {
        var command = parseResult.CommandResult.Command;
        var shown = command.Subcommands.Prepend(command).Where(c => c.Description?.Contains(Marker, StringComparison.Ordinal) == true).ToList();
        var full = shown.ToDictionary(c => c, c => c.Description!);
        foreach (var c in shown) c.Description = full[c][..full[c].IndexOf(Marker, StringComparison.Ordinal)];
        try { standard.Invoke(parseResult); }
        finally { foreach (var c in shown) c.Description = full[c]; }
        if (full.TryGetValue(command, out var description))
        {
            var output = parseResult.InvocationConfiguration.Output;
            output.WriteLine("Examples:");
            output.WriteLine(description[(description.IndexOf(Marker, StringComparison.Ordinal) + Marker.Length)..]);
            output.WriteLine();
        }
        return Program.ExitOk;
    }
}
