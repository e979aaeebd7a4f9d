namespace MaskBit.Tests.Support;

/// <summary>Locations the tests read besides their own fixtures.</summary>
public static class TestPaths
{
    /// <summary>The repository root (the folder holding MaskBit.sln), found from the test binary.</summary>
    public static string RepoRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "MaskBit.sln"))) return d.FullName;
            throw new DirectoryNotFoundException("MaskBit.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>../shared/golden beside the repository (present for developers and CI), or null.</summary>
    public static string? SharedGolden
    {
        get
        {
            var p = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "golden"));
            return Directory.Exists(p) ? p : null;
        }
    }
}
