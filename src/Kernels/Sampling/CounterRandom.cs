namespace MaskBit.Kernels;

/// <summary>What a <see cref="IModelOps.RandomDraws"/> value is made of one 64-bit draw.</summary>
public enum RandomDrawKind
{
    /// <summary>A float in [0, 1) from the top 24 bits (every value exact in float32).</summary>
    Unit,
    /// <summary>A standard Gumbel value −log(−log u), u the centre of the top 24 bits' cell.</summary>
    Gumbel,
}

/// <summary>A stretch of a <see cref="CounterRandom"/> stream: its draw i is draw <see cref="Position"/> + i of the stream
/// seeded with <see cref="Seed"/>.</summary>
public readonly record struct CounterStream(ulong Seed, long Position);

/// <summary>
/// A SplitMix64 stream as a pure function of its seed and position: draw n of the stream seeded with s is
/// Mix(s + (n + 1)·γ). The host's seeded random source (Models' SeededRandomSource) and the RandomDraws kernels of
/// every backend call this code, so that a device makes a step's draws in place of uploading them and gets the very
/// bits the host would have drawn: the integer part is exact everywhere, the unit value is exact in float32, and the
/// Gumbel value is computed in double and rounded once (on ILGPU's CPU accelerator by the same .NET Math.Log; on
/// CUDA by ILGPU's double-precision log, which can differ only where a last-bit difference of the double result
/// crosses a float32 rounding boundary).
/// </summary>
public static class CounterRandom
{
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>The 64 bits of draw <paramref name="position"/> (0-based) of the stream seeded with <paramref name="seed"/>.</summary>
    public static ulong Bits(ulong seed, long position)
    {
        ulong z = seed + (ulong)(position + 1) * Gamma;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The top 24 bits of draw <paramref name="position"/>: the unit draw is exactly this · 2⁻²⁴.</summary>
    public static int UnitBits(ulong seed, long position) => (int)(Bits(seed, position) >> 40);

    /// <summary>The integer t with UnitBits &lt; t exactly where the unit draw is below <paramref name="probability"/>:
    /// k·2⁻²⁴ &lt; p ⇔ k &lt; p·2²⁴ (a power-of-two scaling, exact) ⇔ k &lt; ⌈p·2²⁴⌉, clamped to [0, 2²⁴]. A device
    /// compares integers and so masks exactly where the host's float comparison would.</summary>
    public static int UnitThreshold(float probability) =>
        float.IsNaN(probability) ? 0 : (int)Math.Clamp(Math.Ceiling(probability * (double)(1 << 24)), 0, 1 << 24);

    public static float Draw(ulong seed, long position, RandomDrawKind kind)
    {
        int top24 = UnitBits(seed, position);
        if (kind == RandomDrawKind.Unit) return top24 * (1f / (1 << 24));
        // Centre of a 2^-24 cell: strictly inside (0, 1), so both logarithms stay finite.
        double u = (top24 + 0.5) / (1 << 24);
        return (float)-Math.Log(-Math.Log(u));
    }
}
