using MaskBit.Tests.Data;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Snippets;

/// <summary>The "Use it from C#" example: it compiles (it is <see cref="UseFromCSharp"/>), runs against the shipped
/// model, and README.md and the NuGet packages' README quote it line for line.</summary>
[TestFixture]
[NonParallelizable]
public class ReadmeSnippetTests
{
    private static string[] SnippetLines()
    {
        var lines = File.ReadAllLines(Path.Combine(TestPaths.RepoRoot, "tests", "Snippets", "UseFromCSharp.cs"));
        int begin = Array.FindIndex(lines, l => l.Trim() == "// README begin"), end = Array.FindIndex(lines, l => l.Trim() == "// README end");
        Assert.That(begin, Is.GreaterThanOrEqualTo(0).And.LessThan(end), "README markers in UseFromCSharp.cs");
        // The quote: the file's usings, a blank line, the lines between the markers without the method's indentation.
        var usings = lines.Where(l => l.StartsWith("using MaskBit.", StringComparison.Ordinal));
        var body = lines[(begin + 1)..end].Select(l => l.Length >= 8 ? l[8..] : l.TrimStart());
        return usings.Append("").Concat(body).ToArray();
    }

    [TestCase("README.md")]
    [TestCase("docs/nuget/README.md")]
    public void TheReadmeQuotesTheCompiledSnippet(string readme)
    {
        string text = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, readme)).Replace("\r\n", "\n");
        string quoted = "```csharp\n" + string.Join("\n", SnippetLines()) + "\n```";
        Assert.That(text, Does.Contain(quoted), $"{readme} must quote tests/Snippets/UseFromCSharp.cs between its README markers");
    }

    [Test]
    public void TheSnippetRunsAgainstTheShippedModel()
    {
        using var dir = new TempDirectory();
        string models = dir.File("models", "fashion_mnist");
        Directory.CreateDirectory(models);
        foreach (var file in Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "models", "fashion_mnist")))
            File.Copy(file, Path.Combine(models, Path.GetFileName(file)));
        string previous = Environment.CurrentDirectory;
        int[] tokens;
        try
        {
            Environment.CurrentDirectory = dir.Path;
            tokens = UseFromCSharp.Run();
        }
        finally { Environment.CurrentDirectory = previous; }

        Assert.That(tokens, Has.Length.EqualTo(64));
        Assert.That(tokens, Has.All.InRange(0, 1023));
        foreach (var png in new[] { "samples.png", "boot.png", "boot_reconstructed.png" })
            Assert.That(File.Exists(dir.File(png)), png);
    }
}
