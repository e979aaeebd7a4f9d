using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using MaskBit.Kernels.Lab;

namespace MaskBit.Tests.Ilgpu;

/// <summary>What the offline PTX shows of each kernel-lab version's design: shared memory per block within CUDA's
/// static limit, no local memory (a register-blocked micro-tile that spilled, or was indexed dynamically, would
/// live there), and 128-bit shared loads where the design stages vectors. Register counts come from ptxas
/// (PtxCompileTests.Ptxas.cs); the virtual registers ILGPU declares are printed for reference only.</summary>
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
            if (version.CudaOnly)
            {
                // ILGPU passes each inline-PTX operand wrapper (CudaAsm.EmitRef's Input/Output/Ref) through a 4-byte
                // local depot, which ptxas 11.8 keeps in local memory (PtxasAssemblesEveryLabVersion); anything
                // larger would be a spilled or dynamically indexed tile.
                var depots = LocalDepots().Matches(ptx).Select(m => int.Parse(m.Groups[1].Value)).ToList();
                TestContext.Out.WriteLine($"  {depots.Count} local depots of the inline-PTX operands, {depots.Sum()} bytes");
                Assert.That(depots.Where(bytes => bytes > 4), Is.Empty, $"{Describe(kernel)}: local memory beyond the inline-PTX operand wrappers");
                Assert.That(Regex.Matches(ptx, @"^\s*\.local\b", RegexOptions.Multiline).Count, Is.EqualTo(depots.Count), $"{Describe(kernel)}: local declarations other than depots");
            }
            else
                Assert.That(LocalMemory().IsMatch(ptx), Is.False, $"{Describe(kernel)} uses local memory");
            if (version.VectorSharedLoads && (kernel.Name.StartsWith("Tiled128", StringComparison.Ordinal) || kernel.Name.StartsWith("Flash", StringComparison.Ordinal)))
                Assert.That(ptx, Does.Contain("ld.shared.v4.f32"), $"{Describe(kernel)}: the micro-tile's operands are not read with 128-bit shared loads");
            if (version.CudaOnly)
                Assert.That(ptx, Does.Contain("mma.sync.aligned"), $"{Describe(kernel)}: a CUDA-only version that does not reach the tensor cores");
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

    [Test]
    public void FlashAttentionStagesThreeTilesInSharedMemory()
    {
        // Q̃ and K as [d][row], V as [key][d], 64×64 floats each (P reuses K's): 48 KB, CUDA's static limit, and
        // the 8×8 micro-tiles of S and O in registers (no local memory).
        string ptx = CompileToPtx(KernelLab.Family("attention").Version(2).Entries[0]);
        Assert.That(StaticSharedBytes(ptx), Is.EqualTo(3 * 64 * 64 * sizeof(float)));
        Assert.That(LocalMemory().IsMatch(ptx), Is.False);
        Assert.That(ptx, Does.Contain("shfl.sync.bfly"), "the row maxima are combined by xor shuffles");
    }

    [Test]
    public void FlashAttentionBackwardPassesStageThreeTilesWithoutAtomics()
    {
        // Each pass keeps one 64×64 tile resident (K, or Q̃) and restages two (48 KB); every dK, dV and dQ element has
        // one owner, so no atomics (deterministic), and the micro-tiles stay in registers.
        var passes = KernelLab.Family("attention_backward").Version(2).Entries.Where(e => e.Name.StartsWith("Flash", StringComparison.Ordinal)).ToList();
        Assert.That(passes, Has.Count.EqualTo(2));
        foreach (var kernel in passes)
        {
            string ptx = CompileToPtx(kernel);
            Assert.That(StaticSharedBytes(ptx), Is.EqualTo(3 * 64 * 64 * sizeof(float)), kernel.Name);
            Assert.That(LocalMemory().IsMatch(ptx), Is.False, kernel.Name);
            Assert.That(ptx, Does.Contain("ld.shared.v4.f32"), kernel.Name);
            Assert.That(ptx, Does.Not.Contain("atom."), kernel.Name);
        }
    }

    /// <summary>GEMM v4–v6 reach the tensor cores through inline PTX (ILGPU 1.5.3 passes <c>CudaAsm.EmitRef</c>
    /// with register operands through): TF32 m16n8k8 with cvt.rna rounding, three of them per step for 3×TF32, bf16
    /// m16n8k16 with cvt.rn.bf16x2 packing. This proves the PTX text (ptxas accepts it: PtxasAssemblesEveryLabVersion),
    /// not that the fragment layouts are right: only a GPU run of the lab validates the numbers.</summary>
    [Test]
    public void TensorCoreVersionsEmitMmaSync()
    {
        var gemm = KernelLab.Family("gemm");
        string tf32 = CompileToPtx(gemm.Version(4).Entries[0]), tf32x3 = CompileToPtx(gemm.Version(5).Entries[0]), bf16 = CompileToPtx(gemm.Version(6).Entries[0]);
        const string Tf32Mma = "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32";
        int Count(string ptx, string what) => Regex.Matches(ptx, Regex.Escape(what)).Count;
        Assert.That(tf32, Does.Contain("cvt.rna.tf32.f32"));
        Assert.That(Count(tf32, Tf32Mma), Is.GreaterThan(0));
        Assert.That(Count(tf32x3, Tf32Mma), Is.EqualTo(3 * Count(tf32, Tf32Mma)), "3×TF32 issues three mma per fragment pair");
        Assert.That(bf16, Does.Contain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"));
        Assert.That(bf16, Does.Contain("cvt.rn.bf16x2.f32"));
        TestContext.Out.WriteLine($"mma.sync in the PTX: TF32 {Count(tf32, Tf32Mma)}, 3×TF32 {Count(tf32x3, Tf32Mma)}, bf16 {Count(bf16, "m16n8k16")}");
    }

    // A fresh context per kernel: ILGPU's context caches the IR of every method it compiled, and a generic kernel
    // compiled after others that share its methods (split-K over a conv product, after an element-wise kernel)
    // came out with local memory that it does not have on its own, so a shared context made the result depend on
    // test order. The backend drops that IR before each compile on CUDA (IlgpuBackend.ForgetCompiledMethods,
    // KernelsCompiledInOneContextComeOutAsAlone).
    private static string CompileToPtx(MethodInfo kernel)
    {
        var sm90 = CudaArchitecture.SM_90;
        using var context = Context.Create(b => b.CPU().EnableAlgorithms());
        using var ptx = new PTXBackend(context, new CudaCapabilityContext(sm90), sm90, CudaInstructionSet.ISA_80, nvvmAPI: null);
        return ((PTXCompiledKernel)ptx.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel), KernelSpecialization.Empty)).PTXAssembly;
    }

    [GeneratedRegex(@"\.local\b")]
    private static partial Regex LocalMemory();

    [GeneratedRegex(@"^\s*\.local\s+\.align\s+\d+\s+\.b8\s+__local_depot\d+\[(\d+)\]", RegexOptions.Multiline)]
    private static partial Regex LocalDepots();

    [GeneratedRegex(@"\.reg\s+\.\w+\s+%\w+<(\d+)>")]
    private static partial Regex VirtualRegisters();
}
