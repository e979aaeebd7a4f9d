using System.Diagnostics;

namespace MaskBit.Tests.Support;

/// <summary>The repository names no folder of the machine it was checked out on: the shared folder is
/// <c>../shared</c> or MASKBIT_SHARED (<see cref="TestPaths.Shared"/>), everything else is relative to the root.</summary>
public class NoMachinePathsTests
{
    [Test]
    public void TrackedTextFilesNameNoAbsolutePathOfThisMachine()
    {
        var root = TestPaths.RepoRoot;
        var forbidden = new List<string> { root + "/", TestPaths.Shared + "/" };
        // The folder holding the checkout (e.g. the one beside it that holds shared/ and the reference).
        if (Path.GetDirectoryName(root) is { Length: > 1 } parent) forbidden.Add(parent + "/");

        var offenders = new List<string>();
        foreach (var relative in TrackedFiles(root))
        {
            var bytes = File.ReadAllBytes(Path.Combine(root, relative));
            if (Array.IndexOf(bytes, (byte)0, 0, Math.Min(bytes.Length, 8000)) >= 0) continue; // binary
            var lines = System.Text.Encoding.UTF8.GetString(bytes).Split('\n');
            for (int i = 0; i < lines.Length; i++)
                if (forbidden.FirstOrDefault(lines[i].Contains) is { } path)
                    offenders.Add($"{relative}:{i + 1} names {path}");
        }
        Assert.That(offenders, Is.Empty);
    }

    /// <summary>git's tracked files; without git (an exported tree), every file outside build output.</summary>
    private static IEnumerable<string> TrackedFiles(string root)
    {
        try
        {
            var git = Process.Start(new ProcessStartInfo("git", ["-C", root, "ls-files", "-z"])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            var listing = git.StandardOutput.ReadToEnd();
            git.WaitForExit();
            if (git.ExitCode == 0) return listing.Split('\0', StringSplitOptions.RemoveEmptyEntries);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // git is not installed
        }
        string[] skipped = [".git", "bin", "obj", "runs"];
        return Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(root, f))
            .Where(f => !f.Split(Path.DirectorySeparatorChar).Any(part => skipped.Contains(part)));
    }
}
