namespace MaskBit.Autograd;

/// <summary>Shape arithmetic shared by the ops.</summary>
public static class ShapeUtil
{
    public static long Numel(int[] shape) { long n = 1; foreach (var s in shape) n *= s; return n; }

    public static string Format(int[] shape) => "(" + string.Join(", ", shape) + ")";

    public static void Validate(int[] shape)
    {
        foreach (var s in shape) if (s < 0) throw new ArgumentException($"negative dimension in shape {Format(shape)}");
    }

    /// <summary>Resolves a possibly negative axis.</summary>
    public static int Axis(int dim, int rank)
    {
        int d = dim < 0 ? dim + rank : dim;
        if (d < 0 || d >= rank) throw new ArgumentOutOfRangeException(nameof(dim), $"axis {dim} is out of range for rank {rank}");
        return d;
    }

    public static int[] ContiguousStrides(int[] shape)
    {
        var s = new int[shape.Length];
        int acc = 1;
        for (int d = shape.Length - 1; d >= 0; d--) { s[d] = acc; acc *= shape[d]; }
        return s;
    }

    public static void RequireSame(int[] a, int[] b, string op)
    {
        if (!a.AsSpan().SequenceEqual(b)) throw new ArgumentException($"{op}: shapes {Format(a)} and {Format(b)} differ");
    }

    /// <summary>NumPy broadcasting of two shapes.</summary>
    public static int[] Broadcast(int[] a, int[] b, string op)
    {
        int rank = Math.Max(a.Length, b.Length);
        var r = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int da = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : 1;
            int db = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : 1;
            if (da != db && da != 1 && db != 1) throw new ArgumentException($"{op}: shapes {Format(a)} and {Format(b)} do not broadcast");
            r[i] = da == 1 ? db : da;
        }
        return r;
    }

    /// <summary>Element strides that read a tensor of <paramref name="shape"/> as if it had <paramref name="target"/>
    /// (0 on broadcast axes).</summary>
    public static int[] BroadcastStrides(int[] shape, int[] target)
    {
        var contiguous = ContiguousStrides(shape);
        var s = new int[target.Length];
        int lead = target.Length - shape.Length;
        for (int i = 0; i < target.Length; i++)
        {
            int j = i - lead;
            s[i] = j < 0 || shape[j] == 1 ? 0 : contiguous[j];
        }
        return s;
    }
}
