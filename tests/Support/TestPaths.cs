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

    /// <summary>The shared folder (golden cases, PyTorch peer, notes): MASKBIT_SHARED, else ../shared beside the
    /// repository (as developers and CI lay it out). It may not exist.</summary>
    public static string Shared =>
        Environment.GetEnvironmentVariable("MASKBIT_SHARED") is { Length: > 0 } env
            ? Path.GetFullPath(env)
            : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    /// <summary>The shared folder's golden cases, or null when this machine has none.</summary>
    public static string? SharedGolden
    {
        get
        {
            var p = Path.Combine(Shared, "golden");
            return Directory.Exists(p) ? p : null;
        }
    }
}
