namespace MaskBit.Kernels.Ilgpu;

/// <summary>Six ints passed to a kernel by value (kernels take no arrays).</summary>
public struct Dims6
{
    public const int Capacity = 6;
    public int D0, D1, D2, D3, D4, D5;

    public readonly int this[int d] => d switch { 0 => D0, 1 => D1, 2 => D2, 3 => D3, 4 => D4, _ => D5 };

    internal static Dims6 From(ReadOnlySpan<int> values)
    {
        Span<int> v = stackalloc int[Capacity];
        values.CopyTo(v);
        return new Dims6 { D0 = v[0], D1 = v[1], D2 = v[2], D3 = v[3], D4 = v[4], D5 = v[5] };
    }
}

/// <summary>One index space (a row-major shape) walked by two operands with their own element strides: the
/// kernel maps a linear index to both operands' offsets. Built on the host with size-1 axes dropped and
/// adjacent axes merged wherever both operands allow, so contiguous operands cost one axis.</summary>
public struct StridedPair
{
    public int Rank;
    public int Count;
    public Dims6 Shape, First, Second;

    /// <summary>Offsets of the element with row-major index <paramref name="linear"/> in both operands.</summary>
    public readonly void Offsets(int linear, out long first, out long second)
    {
        first = 0;
        second = 0;
        for (int d = Rank - 1; d >= 0; d--)
        {
            int extent = Shape[d];
            int next = linear / extent;
            int index = linear - next * extent;
            linear = next;
            first += (long)index * First[d];
            second += (long)index * Second[d];
        }
    }

    internal static StridedPair Create(int[] shape, int[] first, int[] second, string op)
    {
        long count = 1;
        foreach (int s in shape) count *= s;
        if (count > int.MaxValue) throw new NotSupportedException($"{op}: {count} elements exceed one ILGPU launch");
        Span<int> dims = stackalloc int[shape.Length], a = stackalloc int[shape.Length], b = stackalloc int[shape.Length];
        int rank = 0;
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            if (first[d] < 0 || second[d] < 0) throw new NotSupportedException($"{op}: negative strides");
            // Axis d continues the previous kept axis when, for both operands, stepping the previous axis once
            // equals stepping axis d through its whole extent.
            if (rank > 0 && a[rank - 1] == (long)first[d] * shape[d] && b[rank - 1] == (long)second[d] * shape[d])
            {
                dims[rank - 1] *= shape[d];
                a[rank - 1] = first[d];
                b[rank - 1] = second[d];
                continue;
            }
            dims[rank] = shape[d]; a[rank] = first[d]; b[rank] = second[d];
            rank++;
        }
        if (rank > Dims6.Capacity) throw new NotSupportedException($"{op}: more than {Dims6.Capacity} non-mergeable axes");
        return new StridedPair
        {
            Rank = rank, Count = (int)count,
            Shape = Dims6.From(dims[..rank]), First = Dims6.From(a[..rank]), Second = Dims6.From(b[..rank]),
        };
    }

    /// <summary>Elements an operand spans from its first element: 1 + Σ (extent − 1)·stride.</summary>
    public readonly long FirstExtent => Extent(First);
    public readonly long SecondExtent => Extent(Second);

    private readonly long Extent(Dims6 strides)
    {
        if (Count == 0) return 0;
        long last = 0;
        for (int d = 0; d < Rank; d++) last += (long)(Shape[d] - 1) * strides[d];
        return last + 1;
    }
}
