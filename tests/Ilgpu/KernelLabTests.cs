using System.Text.RegularExpressions;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Kernels.Lab;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>The kernel lab (src/Kernels/Lab): every version of every family matches the CPU reference on the
/// family's validation cases (edge shapes off the tile multiples) on each ILGPU test device, the version the
/// backend uses is one of them, and each version's design and intensities are written down in the lab's README.</summary>
[NonParallelizable]
public sealed class KernelLabTests
{
    private static IEnumerable<TestCaseData> Versions() =>
        from device in TestDevices.IlgpuNames
        from family in KernelLab.Families
        from version in family.Versions
        where !version.CudaOnly || device == TestDevices.Cuda   // inline PTX: the CPU accelerator cannot run it
        select new TestCaseData(device, family.Name, version.Number).SetArgDisplayNames(device, family.Name, $"v{version.Number}");

    [TestCaseSource(nameof(Versions))]
    public void MatchesTheCpuReference(string device, string family, int version)
    {
        var f = KernelLab.Family(family);
        var backend = LabBackend(device);
        int assertionsBefore = DeviceAssertions.Failures;
        foreach (var c in f.ValidationCases)
        {
            using var problem = c.Prepare(backend);
            var check = KernelLab.Validate(c, problem, f.Version(version));
            Assert.That(check.Passed, $"{family} v{version} on {device}, {c.Name} ({c.Shape}): relative error {check.RelativeError:E2} > {check.Tolerance:E1}");
        }
        Assert.That(DeviceAssertions.Failures, Is.EqualTo(assertionsBefore), $"device assertion failed: {DeviceAssertions.LastMessage}");
    }

    [Test]
    public void CudaOnlyVersionsRefuseTheCpuAcceleratorInOneLine()
    {
        var gemm = KernelLab.Family("gemm");
        var one = gemm.ValidationCases[0];
        using var problem = one.Prepare(CpuLabBackend.Value);
        foreach (var v in gemm.Versions.Where(v => v.CudaOnly))
        {
            var e = Assert.Throws<NotSupportedException>(() => problem.Run(v.Number))!;
            Assert.That(e.Message, Does.Contain($"GEMM v{v.Number}").And.Contain("not a CUDA GPU").And.Not.Contain("\n"));
        }
    }

    [Test]
    public void TheBackendUsesAListedVersion()
    {
        foreach (var f in KernelLab.Families)
            Assert.That(f.Versions.Select(v => v.Number), Does.Contain(f.UsedVersion), f.Name);
    }

    [Test]
    public void EveryVersionIsDocumentedWithItsIntensities()
    {
        string readme = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "src", "Kernels", "Lab", "README.md"));
        foreach (var f in KernelLab.Families)
        {
            Assert.That(f.ValidationCases, Is.Not.Empty, $"{f.Name}: no validation cases");
            Assert.That(f.BenchmarkCases, Is.Not.Empty, $"{f.Name}: no benchmark cases");
            foreach (var v in f.Versions)
            {
                Assert.That(v.Entries, Is.Not.Empty, $"{f.Name} v{v.Number}: no kernel entries for the PTX check");
                Assert.That(v.FlopsPerGlobalByte, Is.GreaterThan(0), $"{f.Name} v{v.Number}");
                // The README's table row: | family | version | FLOPs per shared load | FLOPs per global byte | ...
                var row = new Regex($@"^\|\s*{f.Name}\s*\|\s*{v.Number}\s*\|\s*{v.FlopsPerSharedLoad:0.##}\s*\|\s*{v.FlopsPerGlobalByte:0.##}\s*\|", RegexOptions.Multiline);
                Assert.That(row.IsMatch(readme), $"src/Kernels/Lab/README.md has no row '| {f.Name} | {v.Number} | {v.FlopsPerSharedLoad:0.##} | {v.FlopsPerGlobalByte:0.##} | …'");
            }
        }
    }

    /// <summary>The device a lab test runs on: for "ilgpu-cpu" a CPU accelerator of the lab's own, with the GPU's
    /// GEMM tile for version 1 (the lab's 256-thread groups would slow every later launch on the shared one).</summary>
    private static IlgpuBackend LabBackend(string device) =>
        device == TestDevices.IlgpuCpu ? CpuLabBackend.Value : (IlgpuBackend)TestDevices.Get(device);

    private static readonly Lazy<IlgpuBackend> CpuLabBackend = new(() =>
        IlgpuBackend.CreateCpu(TestDevices.SharedIlgpuCpu.Sizes with { LargeGemmTile = true }));
}
