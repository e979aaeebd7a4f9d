using MaskBit.Autograd;
using MaskBit.Kernels;

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

    /// <summary><see cref="CategoricalUniform(Span{float})"/> as a tensor on <paramref name="device"/>: drawn on the
    /// host and uploaded, unless the source can draw on the device itself.</summary>
    Tensor CategoricalUniform(int[] shape, IBackend device)
    {
        var draws = new float[ShapeUtil.Numel(shape)];
        CategoricalUniform(draws);
        return Tensor.FromArray(draws, shape, device);
    }

    /// <summary>Reserves the next <paramref name="count"/> uniform draws as a stretch of a counter-based stream, which
    /// a device kernel makes where it needs them (<see cref="CounterRandom.Draw"/>), so that nothing is uploaded.
    /// Sources of stored draws have no such stream.</summary>
    CounterStream UniformStream(long count) =>
        throw new NotSupportedException($"{GetType().Name} hands out stored draws, which a device cannot make itself; use a seeded source");

    /// <summary><see cref="Gumbel(Span{float})"/> as a tensor on <paramref name="device"/> (see
    /// <see cref="CategoricalUniform(int[], IBackend)"/>).</summary>
    Tensor Gumbel(int[] shape, IBackend device)
    {
        var draws = new float[ShapeUtil.Numel(shape)];
        Gumbel(draws);
        return Tensor.FromArray(draws, shape, device);
    }
}

/// <summary>
/// A deterministic source: the same seed gives the same draws on every machine and runtime (a SplitMix64 stream,
/// not System.Random, whose algorithm is not guaranteed to stay fixed). The stream is a pure function of the seed
/// and the draw's position (<see cref="CounterRandom"/>), so the tensor overloads make their draws on the device —
/// nothing is uploaded — and the values are those the span overloads would have drawn at that position.
/// </summary>
public sealed class SeededRandomSource(long seed) : IRandomSource
{
    private readonly ulong _seed = (ulong)seed;
    private long _position;

    public void Uniform(Span<float> destination) => Fill(destination, RandomDrawKind.Unit);

    public void CategoricalUniform(Span<float> destination) => Uniform(destination);

    public void Gumbel(Span<float> destination) => Fill(destination, RandomDrawKind.Gumbel);

    public Tensor CategoricalUniform(int[] shape, IBackend device) => OnDevice(shape, device, RandomDrawKind.Unit);

    public Tensor Gumbel(int[] shape, IBackend device) => OnDevice(shape, device, RandomDrawKind.Gumbel);

    /// <summary>The draws <see cref="Uniform(Span{float})"/> would have given next.</summary>
    public CounterStream UniformStream(long count)
    {
        var stream = new CounterStream(_seed, _position);
        _position += count;
        return stream;
    }

    private void Fill(Span<float> destination, RandomDrawKind kind)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = CounterRandom.Draw(_seed, _position++, kind);
    }

    private Tensor OnDevice(int[] shape, IBackend device, RandomDrawKind kind)
    {
        var draws = F.RandomDraws(shape, device, _seed, _position, kind);
        _position += draws.Numel;
        return draws;
    }
}
