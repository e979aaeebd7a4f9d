using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

/// <summary>The vector instruction sets the CPU kernels are written for, narrowest first.</summary>
public enum Isa
{
    /// <summary>Plain loops: what a CPU without AVX2/FMA runs, and the reference the vector paths are tested against.</summary>
    Scalar,
    /// <summary>256-bit AVX2 + FMA (Haswell, Zen 1–3 and later).</summary>
    Avx2,
    /// <summary>512-bit AVX-512F + FMA (Zen 4/5, Skylake-X and later Xeons).</summary>
    Avx512,
}

/// <summary>
/// The ISA every CPU kernel that has per-ISA code follows: the best the CPU supports, or <c>MASKBIT_ISA</c>
/// (avx512, avx2, scalar) read once at start-up. Tests (and benchmarks) override it for a scope with
/// <see cref="Use"/>; the override flows into the worker threads of <see cref="CpuParallel"/> (it is an
/// AsyncLocal), so concurrent tests on other ISAs do not see it.
/// </summary>
public static class CpuIsa
{
    public const string Variable = "MASKBIT_ISA";

    private static readonly AsyncLocal<Isa?> Scoped = new();
    private static Isa? _selected;

    /// <summary>The widest ISA this CPU runs (AVX-512 needs F and the FMA unit, AVX2 needs FMA as well).</summary>
    public static Isa Best => Avx512F.IsSupported && Fma.IsSupported ? Isa.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? Isa.Avx2 : Isa.Scalar;

    /// <summary>Every ISA this CPU runs, widest first (what the kernel tests iterate over).</summary>
    public static IReadOnlyList<Isa> Supported => Enum.GetValues<Isa>().Where(IsSupported).OrderDescending().ToArray();

    public static bool IsSupported(Isa isa) => isa <= Best;

    /// <summary>The ISA in effect: a <see cref="Use"/> scope's, else MASKBIT_ISA's, else <see cref="Best"/>.
    /// Throws (one line naming the variable and value) when MASKBIT_ISA names an unknown or unsupported ISA.</summary>
    public static Isa Current => Scoped.Value ?? (_selected ??= Parse(Environment.GetEnvironmentVariable(Variable)));

    /// <summary>Runs the CPU kernels on <paramref name="isa"/> until the returned scope is disposed.</summary>
    public static IDisposable Use(Isa isa)
    {
        if (!IsSupported(isa)) throw new NotSupportedException($"ISA {Name(isa)} is not supported by this CPU (best: {Name(Best)})");
        var previous = Scoped.Value;
        Scoped.Value = isa;
        return new Scope(previous);
    }

    /// <summary>The lower-case name MASKBIT_ISA takes (avx512, avx2, scalar).</summary>
    public static string Name(Isa isa) => isa.ToString().ToLowerInvariant();

    /// <summary>The ISA a MASKBIT_ISA value names; empty or unset means <see cref="Best"/>.</summary>
    public static Isa Parse(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return Best;
        var match = Enum.GetValues<Isa>().Where(i => Name(i) == value.Trim().ToLowerInvariant()).ToArray();
        if (match.Length == 0)
            throw new NotSupportedException($"{Variable}={value}: expected avx512, avx2 or scalar");
        if (!IsSupported(match[0]))
            throw new NotSupportedException($"{Variable}={value}: this CPU does not support {Name(match[0])} (best: {Name(Best)})");
        return match[0];
    }

    private sealed class Scope(Isa? previous) : IDisposable
    {
        public void Dispose() => Scoped.Value = previous;
    }
}
