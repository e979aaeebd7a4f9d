using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
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

    [TestCase("conv")]
    [TestCase("conv_input_grad")]
    [TestCase("conv_weight_grad")]
    public void ConvIndexTablesTakeTheDivisionsOutOfStaging(string family)
    {
        // v2 stages each patch value with integer divisions; v3 reads index tables, so its 128×128 kernel has no more
        // div/rem than the plain GEMM's (the tile loop's own, and split-K's slice of the item).
        int Divisions(MethodInfo kernel) => IntegerDivision().Matches(CompileToPtx(kernel)).Count;
        var lab = KernelLab.Family(family);
        int withDivisions = Divisions(lab.Version(2).Entries[0]), withTables = Divisions(lab.Version(3).Entries[0]);
        int gemm = Divisions(KernelLab.Family("gemm").Version(2).Entries[0]);
        TestContext.Out.WriteLine($"integer div/rem instructions in the 128×128 kernel of {family}: v2 {withDivisions}, v3 {withTables}; plain GEMM {gemm}");
        Assert.That(withTables, Is.LessThan(withDivisions));
        Assert.That(withTables, Is.LessThanOrEqualTo(gemm), "v3's staging or stores divide");
    }

    [GeneratedRegex(@"\b(?:div|rem)\.[su]32\b")]
    private static partial Regex IntegerDivision();

    /// <summary>Evidence for the tensor-core path (issues 16 and 18): ILGPU 1.5.3 passes inline PTX with register
    /// operands through (<c>CudaAsm.EmitRef</c> with <c>Input</c>/<c>Output</c>/<c>Ref</c> wrappers), so a TF32
    /// <c>mma.sync</c> with its <c>cvt.rna.tf32.f32</c> rounding compiles. No GEMM version uses it yet.</summary>
    [Test]
    public void InlinePtxReachesTheTensorCores()
    {
        string ptx = CompileToPtx(((Action<ArrayView<float>, ArrayView<float>, ArrayView<float>>)MmaTf32ProbeKernel).Method);
        Assert.That(ptx, Does.Contain("cvt.rna.tf32.f32"));
        Assert.That(ptx, Does.Contain("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32"));
    }

    /// <summary>One warp's m16n8k8 TF32 product D = A·B + D on fragments read per lane (compiled, never launched).</summary>
    private static void MmaTf32ProbeKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> d)
    {
        int lane = Warp.LaneIdx;
        Input<uint> a0 = Tf32(a[4 * lane]), a1 = Tf32(a[4 * lane + 1]), a2 = Tf32(a[4 * lane + 2]), a3 = Tf32(a[4 * lane + 3]);
        Input<uint> b0 = Tf32(b[2 * lane]), b1 = Tf32(b[2 * lane + 1]);
        Ref<float> d0 = d[4 * lane], d1 = d[4 * lane + 1], d2 = d[4 * lane + 2], d3 = d[4 * lane + 3];
        CudaAsm.EmitRef("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};",
            ref d0, ref d1, ref d2, ref d3, ref a0, ref a1, ref a2, ref a3, ref b0, ref b1);
        d[4 * lane] = d0.Value;
        d[4 * lane + 1] = d1.Value;
        d[4 * lane + 2] = d2.Value;
        d[4 * lane + 3] = d3.Value;
    }

    /// <summary>float32 → TF32 bits, rounded to nearest (ties away), as the tensor cores read them.</summary>
    private static uint Tf32(float value)
    {
        Input<float> x = value;
        Output<uint> bits = default;
        CudaAsm.EmitRef("cvt.rna.tf32.f32 %0, %1;", ref bits, ref x);
        return bits.Value;
    }

    private string CompileToPtx(MethodInfo kernel) =>
        ((PTXCompiledKernel)_ptx!.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel), KernelSpecialization.Empty)).PTXAssembly;

    [GeneratedRegex(@"\.local\b")]
    private static partial Regex LocalMemory();

    [GeneratedRegex(@"\.reg\s+\.\w+\s+%\w+<(\d+)>")]
    private static partial Regex VirtualRegisters();
}
