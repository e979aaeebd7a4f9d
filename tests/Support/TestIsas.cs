using MaskBit.Kernels.Cpu;

namespace MaskBit.Tests.Support;

/// <summary>The CPU ISAs that kernel tests run on: every one this CPU supports (<see cref="CpuIsa.Supported"/>),
/// so an AVX-512 machine also checks the AVX2 and scalar kernels. Parameterise with
/// <c>[TestCaseSource(typeof(TestIsas), nameof(TestIsas.Names))]</c> and enter <see cref="Use"/>, or loop with
/// <see cref="Each"/>.</summary>
public static class TestIsas
{
    public static IEnumerable<string> Names => CpuIsa.Supported.Select(CpuIsa.Name);

    /// <summary>Runs the CPU kernels on the named ISA until disposed.</summary>
    public static IDisposable Use(string name) => CpuIsa.Use(CpuIsa.Parse(name));

    /// <summary>Runs <paramref name="body"/> once per supported ISA; the test output names the ISA each pass ran on.</summary>
    public static void Each(Action body)
    {
        foreach (var isa in CpuIsa.Supported)
        {
            TestContext.Out.WriteLine($"isa {CpuIsa.Name(isa)}");
            using (CpuIsa.Use(isa)) body();
        }
    }
}
