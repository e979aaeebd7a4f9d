using System.Xml.Linq;

namespace MaskBit.Tests.Support;

/// <summary>The projects under src/ depend one way, as the README's layout table says: each may reference only
/// projects below it in <see cref="Layers"/>. The compiler rejects a cycle; this rejects an upward edge (say,
/// Models → Training) before it becomes one.</summary>
public class ProjectReferencesTests
{
    /// <summary>Bottom to top.</summary>
    private static readonly string[] Layers =
    [
        "MaskBit.Distributed", "MaskBit.Kernels", "MaskBit.Autograd", "MaskBit.Interop", "MaskBit.Models", "MaskBit.Evaluation",
        "MaskBit.Training", "MaskBit.Workloads", "MaskBit.Cli",
    ];

    [Test]
    public void SourceProjectsReferenceOnlyProjectsBelowThem()
    {
        var projects = Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "src"), "*.csproj",
            SearchOption.AllDirectories);
        Assert.That(projects.Select(p => Path.GetFileNameWithoutExtension(p)).Order(), Is.EqualTo(Layers.Order()),
            "every project under src/ has its place in the layers (and in the README's layout table)");

        var upward = new List<string>();
        foreach (var project in projects)
        {
            string name = Path.GetFileNameWithoutExtension(project);
            int layer = Array.IndexOf(Layers, name);
            foreach (var reference in XDocument.Load(project).Descendants("ProjectReference"))
            {
                string include = reference.Attribute("Include")!.Value.Replace('\\', '/');
                string target = Path.GetFileNameWithoutExtension(include);
                int targetLayer = Array.IndexOf(Layers, target);
                if (targetLayer < 0 || targetLayer >= layer) upward.Add($"{name} → {target}");
            }
        }
        Assert.That(upward, Is.Empty, "a project references only projects below it: " + string.Join(" ← ", Layers));
    }
}
