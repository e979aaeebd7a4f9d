using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Kernels.Lab;
using static MaskBit.Kernels.Ilgpu.IlgpuBackend;

namespace MaskBit.Tests.Ilgpu;

/// <summary>ptxas on the PTX of every kernel (where a CUDA toolkit's ptxas is found, see <see cref="Ptxas"/>): the
/// assembler accepts it, nothing spills or lives in local memory (stack frame 0), and the shared memory is what the
/// PTX declares. Registers per thread are printed, and written as table rows to the file MASKBIT_PTXAS_TABLE names
/// (bench/ptxas-check.sh makes the lab README's table from them). Every launch of the backend has at most 256
/// threads per group, so any count ptxas picks (≤ 255) fits a multiprocessor's 64K registers.</summary>
public sealed partial class PtxCompileTests
{
    /// <summary>Each lab version's kernels, each compiled in a fresh context as the lab's PTX test does, for sm_90,
    /// and the tensor-core versions also for sm_80 (the oldest architecture with TF32/bf16 mma.sync).</summary>
    [Test]
    public void PtxasAssemblesEveryLabVersion()
    {
        if (Ptxas.Path is null) Assert.Ignore(Ptxas.Missing);
        Assert.Multiple(() =>
        {
            foreach (var family in KernelLab.Families)
                foreach (var version in family.Versions)
                    foreach (var kernel in version.Entries)
                    {
                        string ptx = CompileToPtx(kernel);
                        foreach (string arch in version.CudaOnly ? new[] { "sm_90", "sm_80" } : ["sm_90"])
                            CheckAssembled(ptx, arch, $"{family.Name} v{version.Number}", kernel);
                    }
        });
    }

    /// <summary>The backend's entry points compiled in one context, as a CUDA accelerator compiles everything it
    /// launches in its context, with the IR dropped before each compile as the backend does on CUDA
    /// (<see cref="IlgpuBackend.ForgetCompiledMethods"/>).</summary>
    [Test]
    public void PtxasAssemblesTheBackendKernelsCompiledInOneContext()
    {
        if (Ptxas.Path is null) Assert.Ignore(Ptxas.Missing);
        var sm90 = CudaArchitecture.SM_90;
        using var context = Context.Create(b => b.CPU().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(sm90), sm90, CudaInstructionSet.ISA_80, nvvmAPI: null);
        Assert.Multiple(() =>
        {
            foreach (var kernel in IlgpuBackend.KernelEntryPoints)
            {
                IlgpuBackend.ForgetCompiledMethods(context);
                string ptx = ((PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel), KernelSpecialization.Empty)).PTXAssembly;
                CheckAssembled(ptx, "sm_90", "backend", kernel);
            }
        });
    }

    /// <summary>The kernels that keep a stack frame, why, and why it is accepted: the tensor-core GEMMs pass the
    /// mma.sync operands through ILGPU's <c>CudaAsm.EmitRef</c>, which gives each a 4-byte local slot that ptxas does
    /// not promote (CUDA-only lab versions that no GPU has run; the backend does not use them); RandomDrawsKernel's
    /// Gumbel draws take ILGPU's double-precision log (kept for the host's bits), whose software loop keeps 32 bytes
    /// in local memory, for a few thousand draws a step.</summary>
    private static bool KnownLocalMemory(MethodInfo kernel) =>
        kernel.Name is "MmaTiledKernel" or "RandomDrawsKernel";

    /// <summary>The kernels that spill at ptxas 11.8's 255-register cap, and why they are accepted: the FlashAttention-2
    /// backward passes (attention_backward v2) hold up to 192 accumulators per thread; the GPU backend runs version 1 of
    /// the backward until a version fits in registers (AttentionBackwardLab.BackendVersion), only the CPU accelerator
    /// runs version 2.</summary>
    private static bool KnownSpills(MethodInfo kernel) =>
        kernel.Name is "FlashKeyValueGradKernel" or "FlashQueryGradKernel";

    /// <summary>The order effect <see cref="IlgpuBackend.ForgetCompiledMethods"/> removes, without ptxas: the
    /// split-K GEMM over the conv weight gradient's product, compiled in one context after an element-wise kernel,
    /// has no local memory when the backend's way of compiling drops the IR in between.</summary>
    [Test]
    public void KernelsCompiledInOneContextComeOutAsAlone()
    {
        var sm90 = CudaArchitecture.SM_90;
        var elementwise = IlgpuBackend.KernelEntryPoints.First(m => m.Name == "BinaryKernel");
        var splitK = SplitKKernels<ConvWeightGradProduct>.Entry.Method;
        string Compile(bool forget)
        {
            using var context = Context.Create(b => b.CPU().EnableAlgorithms());
            using var backend = new PTXBackend(context, new CudaCapabilityContext(sm90), sm90, CudaInstructionSet.ISA_80, nvvmAPI: null);
            string ptx = "";
            foreach (var kernel in new[] { elementwise, splitK })
            {
                if (forget) IlgpuBackend.ForgetCompiledMethods(context);
                ptx = ((PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(kernel), KernelSpecialization.Empty)).PTXAssembly;
            }
            return ptx;
        }
        TestContext.Out.WriteLine($"split-K after an element-wise kernel, IR kept: {(LocalMemory().IsMatch(Compile(forget: false)) ? "" : "no ")}local memory");
        Assert.That(LocalMemory().IsMatch(Compile(forget: true)), Is.False, "split-K after an element-wise kernel, IR dropped between them");
        Assert.That(LocalMemory().IsMatch(CompileToPtx(splitK)), Is.False, "split-K alone");
    }

    private static void CheckAssembled(string ptx, string arch, string what, MethodInfo kernel)
    {
        string name = $"{what} {Describe(kernel)}";
        PtxasReport report;
        try { report = Ptxas.Assemble(ptx, arch, name); }
        catch (InvalidOperationException e) { Assert.Fail(e.Message); return; }
        string row = $"| {what} | {Describe(kernel)} | {arch} | {report.Registers} | {report.SpillStoreBytes} / {report.SpillLoadBytes} | " +
                     $"{report.StackFrameBytes} | {report.SharedBytes} |";
        TestContext.Out.WriteLine(row + (report.LoweredVersion is null ? "" : $" (.version lowered to {report.LoweredVersion})"));
        if (Environment.GetEnvironmentVariable("MASKBIT_PTXAS_TABLE") is { Length: > 0 } table)
            File.AppendAllText(table, row + Environment.NewLine);
        if (KnownSpills(kernel)) return;
        Assert.That(report.SpillStoreBytes + report.SpillLoadBytes, Is.Zero, $"{name} ({arch}): bytes spilled to local memory");
        if (!KnownLocalMemory(kernel)) Assert.That(report.StackFrameBytes, Is.Zero, $"{name} ({arch}): stack frame (local memory)");
        Assert.That(report.SharedBytes, Is.EqualTo(StaticSharedBytes(ptx)), $"{name} ({arch}): shared memory other than the PTX declares");
    }
}
