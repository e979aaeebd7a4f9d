using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Autograd.Nn;

/// <summary>Parameter initialisers. Each draws straight into the tensor's storage, a chunk at a time, so
/// initialising a 300M-parameter model allocates nothing beyond its parameters.</summary>
public static class Init
{
    [ThreadStatic] private static bool shapesOnly;
    [ThreadStatic] private static long valuesDrawn;

    /// <summary>While the returned scope is open, initialisers on this thread leave parameters uninitialised
    /// instead of drawing random values — for building a model only to count its parameters or to load a
    /// checkpoint over them: a 300M-parameter model then costs no random draws, and its untouched pages no memory.</summary>
    public static bool IsShapesOnly => shapesOnly;

    /// <summary>Random values the initialisers of this thread have written so far (none while
    /// <see cref="ShapesOnly"/> is open): shows whether building a model drew its weights.</summary>
    public static long ValuesDrawn => valuesDrawn;

    public static IDisposable ShapesOnly()
    {
        bool outer = shapesOnly;
        shapesOnly = true;
        return new Restore(() => shapesOnly = outer);
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    public static Tensor Uniform(int[] shape, float bound, Random rng) => Uniform_(Tensor.Empty(shape), bound, rng);
    public static Tensor Normal(int[] shape, float std, Random rng) => Normal_(Tensor.Empty(shape), std, rng);

    /// <summary>U(−bound, bound) into <paramref name="t"/> (returned).</summary>
    public static Tensor Uniform_(Tensor t, float bound, Random rng) => Draw(t, chunk =>
    {
        for (int i = 0; i < chunk.Length; i++) chunk[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
    });

    /// <summary>N(0, std²) into <paramref name="t"/> (returned).</summary>
    public static Tensor Normal_(Tensor t, float std, Random rng) => Draw(t, chunk =>
    {
        for (int i = 0; i < chunk.Length; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            chunk[i] = (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
    });

    /// <summary>torch.nn.init.trunc_normal_(std, a, b) into <paramref name="t"/> (returned): normal draws outside
    /// [a, b] are redrawn.</summary>
    public static Tensor TruncNormal_(Tensor t, float std, float a, float b, Random rng) => Draw(t, chunk =>
    {
        for (int i = 0; i < chunk.Length; i++)
        {
            double x;
            do { x = std * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()); } while (x < a || x > b);
            chunk[i] = (float)x;
        }
    });

    private delegate void ChunkDraw(Span<float> chunk);

    /// <summary>Fills the tensor chunk by chunk in element order (the values depend only on the generator's
    /// sequence) through a small host buffer, rounded on the way for a 16-bit tensor (weights stored in 16 bits, see
    /// <see cref="Module.StoreWeightsIn"/>); nothing while <see cref="ShapesOnly"/> is open.</summary>
    private static Tensor Draw(Tensor t, ChunkDraw draw)
    {
        if (shapesOnly || t.Numel == 0) return t;
        var chunk = new float[(int)Math.Min(t.Numel, 1 << 14)];
        var bits = t.DType.Is16Bit() ? new ushort[chunk.Length] : null;
        for (long at = 0; at < t.Numel; at += chunk.Length)
        {
            var part = chunk.AsSpan(0, (int)Math.Min(chunk.Length, t.Numel - at));
            draw(part);
            if (bits == null) t.Device.Upload(part, t.Buf.At(at));
            else
            {
                var rounded = bits.AsSpan(0, part.Length);
                HalfConversion.Narrow(part, rounded, t.DType);
                t.Device.Upload(rounded, t.Buf.At(at));
            }
        }
        valuesDrawn += t.Numel;
        return t;
    }
}
