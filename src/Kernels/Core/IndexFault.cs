namespace MaskBit.Kernels;

/// <summary>The ops that read a table at indices taken from a tensor.</summary>
public enum IndexedOp
{
    Embedding = 1,
    CrossEntropy = 2,
    /// <summary>Bit expansion of token groups or codebook indices (<see cref="IModelOps.TokenBits"/>).</summary>
    TokenBits = 3,
    /// <summary>Token factorization into groups and back (<see cref="IModelOps.SplitTokenGroups"/>).</summary>
    TokenGroups = 4,
}

/// <summary>
/// Indices are data, so the kernels that take them check them where they run, and never touch memory outside a
/// table. The CPU kernels check before they start and throw. The ILGPU kernels record the first bad index in a
/// small device word as they go and carry on with a harmless value; the backend reports it, as the same
/// exception, at its next read from the device (like CUDA's device-side asserts) — so no op has to wait for the
/// device to validate its input.
/// </summary>
public static class IndexFault
{
    /// <summary>The error for <paramref name="value"/> at flat <paramref name="position"/> of an index tensor whose
    /// valid values are 0 … size − 1; <paramref name="deferred"/> when a device found it in an earlier kernel.</summary>
    public static ArgumentOutOfRangeException Exception(IndexedOp op, int value, long position, int size, bool deferred = false)
    {
        string what = op switch
        {
            IndexedOp.Embedding => $"embedding: index {value} at flat position {position} is out of range for a table of {size} rows",
            IndexedOp.CrossEntropy => $"cross_entropy: target {value} at flat position {position} is out of range for {size} classes",
            IndexedOp.TokenGroups => $"token groups: value {value} at flat position {position} is outside 0…{size - 1}",
            _ => $"bit tokens: value {value} at flat position {position} is outside 0…{size - 1}",
        };
        return new ArgumentOutOfRangeException("indices", $"{what} (valid: 0..{size - 1})"
            + (deferred ? "; found on the device by an earlier kernel and reported at this read from it" : ""));
    }

    /// <summary>Throws for the first index outside [0, size).</summary>
    public static void Check(ReadOnlySpan<int> indices, int size, IndexedOp op)
    {
        for (int i = 0; i < indices.Length; i++)
            if ((uint)indices[i] >= (uint)size) throw Exception(op, indices[i], i, size);
    }
}
