namespace MaskBit.Kernels;

/// <summary>The per-row arithmetic of <see cref="IModelOps.PredictionTally"/>, written once for the CPU and the ILGPU
/// kernels so that both devices count the same hits.</summary>
public static class ClassificationMath
{
    /// <summary>Index of the first maximum of row [start, start + count), as torch.argmax and
    /// <c>ArgMaxLastAxis</c>: later values win only when strictly greater, so a NaN first value keeps index 0.</summary>
    public static int ArgMax<TRow>(TRow values, long start, int count) where TRow : struct, IFloatSequence =>
        ArgExtreme(values, start, count, min: false);

    /// <summary>Index of the first maximum, or with <paramref name="min"/> the first minimum, of row
    /// [start, start + count): later values win only when strictly beyond the best so far (NaN never wins).</summary>
    public static int ArgExtreme<TRow>(TRow values, long start, int count, bool min) where TRow : struct, IFloatSequence
    {
        int best = 0;
        float bestValue = values[start];
        for (int c = 1; c < count; c++)
        {
            float x = values[start + c];
            if (min ? x < bestValue : x > bestValue) { bestValue = x; best = c; }
        }
        return best;
    }
}
