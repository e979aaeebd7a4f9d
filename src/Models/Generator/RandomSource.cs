namespace MaskBit.Models.Generator;

/// <summary>
/// The random draws of masking and sampling, one method per kind of draw the reference makes. Each call fills
/// the whole destination in row-major order, so a replay source can hand back stored reference draws verbatim
/// (the golden tests do) and a seeded source reproduces a run exactly.
/// </summary>
public interface IRandomSource
{
    /// <summary>Uniform floats in [0, 1) (torch.rand): the two draws of masking.</summary>
    void Uniform(Span<float> destination);

    /// <summary>Uniform floats in [0, 1) that select categorical samples by inverse CDF, one per group.</summary>
    void CategoricalUniform(Span<float> destination);

    /// <summary>Standard Gumbel(0, 1) values.</summary>
    void Gumbel(Span<float> destination);
}

/// <summary>
/// A deterministic source: the same seed gives the same draws on every machine and runtime (a SplitMix64 stream,
/// not System.Random, whose algorithm is not guaranteed to stay fixed).
/// </summary>
public sealed class SeededRandomSource : IRandomSource
{
    private ulong _state;

    public SeededRandomSource(long seed) => _state = (ulong)seed;

    private ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>24 random bits as a float in [0, 1): every value is exact in float32.</summary>
    private float NextUnit() => (Next() >> 40) * (1f / (1 << 24));

    public void Uniform(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = NextUnit();
    }

    public void CategoricalUniform(Span<float> destination) => Uniform(destination);

    public void Gumbel(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            // Centre of a 2^-24 cell: strictly inside (0, 1), so both logarithms stay finite.
            double u = ((Next() >> 40) + 0.5) / (1 << 24);
            destination[i] = (float)-Math.Log(-Math.Log(u));
        }
    }
}
