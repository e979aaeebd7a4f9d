using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using MaskBit.Kernels.Lab;

namespace MaskBit.Tests.Ilgpu;

/// <summary>What the offline PTX shows of each kernel-lab version's design: shared memory per block within CUDA's
/// static limit, no local memory (a register-blocked micro-tile that spilled, or was indexed dynamically, would
/// live there), and 128-bit shared loads where the design stages vectors. Register counts need ptxas (not here):
/// the virtual registers ILGPU declares are printed for reference only.</summary>
public sealed partial class PtxCompileTests
{
    private static IEnumerable<TestCaseData> LabVersions() =>
        from family in KernelLab.Families
        from version in family.Versions
        select new TestCaseData(family.Name, version.Number).SetArgDisplayNames(family.Name, $"v{version.Number}");

    [TestCaseSource(nameof(LabVersions))]
    public void LabVersionCompilesAsDesigned(string family, int number)
    {
        var version = KernelLab.Family(family).Version(number);
        foreach (var kernel in version.Entries)
        {
            string ptx = CompileToPtx(kernel);
            long shared = StaticSharedBytes(ptx);
            int registers = VirtualRegisters().Matches(ptx).Sum(m => int.Parse(m.Groups[1].Value));
            TestContext.Out.WriteLine($"{family} v{number} {Describe(kernel)}: {shared} B static shared memory, {registers} virtual registers declared");
            Assert.That(shared, Is.LessThanOrEqualTo(MaxStaticSharedBytes), $"{Describe(kernel)}: static shared memory per block");
            Assert.That(LocalMemory().IsMatch(ptx), Is.False, $"{Describe(kernel)} uses local memory");
            if (version.VectorSharedLoads && kernel.Name.StartsWith("Tiled128", StringComparison.Ordinal))
                Assert.That(ptx, Does.Contain("ld.shared.v4.f32"), $"{Describe(kernel)}: the micro-tile's operands are not read with 128-bit shared loads");
        }
    }

    private string CompileToPtx(MethodInfo kernel) =>
        ((PTXCompiledKernel)_ptx!.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel), KernelSpecialization.Empty)).PTXAssembly;

    [GeneratedRegex(@"\.local\b")]
    private static partial Regex LocalMemory();

    [GeneratedRegex(@"\.reg\s+\.\w+\s+%\w+<(\d+)>")]
    private static partial Regex VirtualRegisters();
}
