using System.Reflection;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Every ILGPU kernel compiles to PTX for SM_90 without a GPU (ILGPU's PTX backend works offline).
/// This proves code generation; where a CUDA toolkit's ptxas is found, PtxCompileTests.Ptxas.cs assembles the
/// result. The shared test backend's context is used because ILGPU caches kernel IR per context.</summary>
[NonParallelizable]
public sealed partial class PtxCompileTests
{
    private PTXBackend? _ptx;

    [OneTimeSetUp]
    public void CreateBackend()
    {
        var sm90 = CudaArchitecture.SM_90;
        _ptx = new PTXBackend(TestDevices.SharedIlgpuCpu.Accelerator.Context, new CudaCapabilityContext(sm90), sm90,
            CudaInstructionSet.ISA_80, nvvmAPI: null);
    }

    [OneTimeTearDown]
    public void DisposeBackend() => _ptx?.Dispose();

    private static IEnumerable<TestCaseData> Kernels() =>
        IlgpuBackend.KernelEntryPoints.Select(m => new TestCaseData(m).SetArgDisplayNames(Describe(m)));

    private static string Describe(MethodInfo m) =>
        m.IsGenericMethod ? $"{m.Name}<{string.Join(", ", m.GetGenericArguments().Select(Describe))}>" : m.Name;

    private static string Describe(Type t) =>
        t.IsGenericType ? $"{t.Name[..t.Name.IndexOf('`')]}<{string.Join(", ", t.GetGenericArguments().Select(Describe))}>" : t.Name;

    [TestCaseSource(nameof(Kernels))]
    public void CompilesToPtxForSm90(MethodInfo kernel)
    {
        var entry = EntryPointDescription.FromExplicitlyGroupedKernel(kernel);
        var compiled = (PTXCompiledKernel)_ptx!.Compile(entry, KernelSpecialization.Empty);
        Assert.That(compiled.PTXAssembly, Does.Contain(".entry"));
        // A launch with more static shared memory than a block may have without opting in fails only on the GPU.
        long shared = StaticSharedBytes(compiled.PTXAssembly);
        TestContext.Out.WriteLine($"{Describe(kernel)}: {shared} bytes of static shared memory");
        Assert.That(shared, Is.LessThanOrEqualTo(MaxStaticSharedBytes), "static shared memory per block");
        // PTX max.f32/min.f32 return the other operand for a NaN where the CPU backend returns NaN: kernels use
        // MaxOrNaN/MinOrNaN (compare and select) so that a NaN reaches the loss and the NaN stop on every device.
        var dropsNaN = NanDroppingMinMax().Matches(compiled.PTXAssembly).Select(m => m.Value).Distinct().ToList();
        Assert.That(dropsNaN, Is.Empty, $"{Describe(kernel)}: float min/max instructions that drop NaN");
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"\b(?:max|min)(?:\.ftz)?\.f32\b")]
    private static partial System.Text.RegularExpressions.Regex NanDroppingMinMax();

    /// <summary>CUDA's limit on static shared memory per block (more needs dynamic shared memory and an opt-in).</summary>
    private const long MaxStaticSharedBytes = 48 * 1024;

    /// <summary>The bytes of the module's <c>.shared</c> declarations (ILGPU declares them as .b8 arrays).</summary>
    private static long StaticSharedBytes(string ptx) =>
        System.Text.RegularExpressions.Regex.Matches(ptx, @"\.shared\s+(?:\.align\s+\d+\s+)?\.(?:b|u|s|f)(\d+)\s+[\w$]+\[(\d+)\]")
            .Sum(m => long.Parse(m.Groups[1].Value) / 8 * long.Parse(m.Groups[2].Value));

    [Test]
    public void EveryKernelMethodIsListed()
    {
        // A kernel method without a static entry delegate (so not on KernelEntryPoints) would escape the PTX check.
        var listed = IlgpuBackend.KernelEntryPoints.Select(m => m.IsGenericMethod ? m.GetGenericMethodDefinition() : m).ToHashSet();
        var declared = typeof(IlgpuBackend).GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
            .Where(m => m.Name.EndsWith("Kernel", StringComparison.Ordinal) && m.ReturnType == typeof(void));
        Assert.That(declared.Where(m => !listed.Contains(m)).Select(m => m.Name), Is.Empty);
    }
}
