using MaskBit.Models.Generator;

namespace MaskBit.Tests.Generator;

/// <summary>Hands back stored reference draws in order, one queue per kind of draw; a draw of the wrong size or
/// one too many fails the test.</summary>
public sealed class ReplayRandomSource : IRandomSource
{
    public Queue<float[]> Uniforms { get; } = new();
    public Queue<float[]> CategoricalUniforms { get; } = new();
    public Queue<float[]> Gumbels { get; } = new();

    public bool Exhausted => Uniforms.Count == 0 && CategoricalUniforms.Count == 0 && Gumbels.Count == 0;

    public void Uniform(Span<float> destination) => Replay(Uniforms, destination, "uniform");
    public void CategoricalUniform(Span<float> destination) => Replay(CategoricalUniforms, destination, "categorical");
    public void Gumbel(Span<float> destination) => Replay(Gumbels, destination, "gumbel");

    private static void Replay(Queue<float[]> queue, Span<float> destination, string kind)
    {
        if (!queue.TryDequeue(out var draw)) throw new AssertionException($"one {kind} draw more than the reference made");
        if (draw.Length != destination.Length) throw new AssertionException($"{kind} draw of {destination.Length} values, the reference drew {draw.Length}");
        draw.CopyTo(destination);
    }
}
