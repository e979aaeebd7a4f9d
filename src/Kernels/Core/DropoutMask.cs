using System.Runtime.Intrinsics;

namespace MaskBit.Kernels;

/// <summary>
/// A dropout mask as a pure function of a seed and coordinates — (batch·head, query row, key column) for attention
/// probabilities, the flat index for element-wise dropout: kernels store no mask (the backward regenerates it), no
/// mask crosses from the host, and the CPU and ILGPU kernels, which both call this code, drop the same entries.
/// Each entry gets 32 hash bits (Wellons' lowbias32 mixer chained over the coordinates); it is dropped when they
/// fall below p·2³², and kept entries are scaled by 1/(1 − p) as in torch.
/// </summary>
public readonly struct DropoutMask
{
    /// <summary>An entry is dropped when its bits are below this (p·2³²; 0 = no dropout).</summary>
    public readonly uint Threshold;
    /// <summary>1/(1 − p), the factor of kept entries.</summary>
    public readonly float KeptScale;
    private readonly uint _seedKey;

    // Odd multipliers (golden ratio, murmur3) spread consecutive coordinates over the word before mixing.
    private const uint RowSpread = 0x9E3779B9u, ColumnSpread = 0x85EBCA6Bu;

    public DropoutMask(float p, ulong seed)
    {
        if (p is < 0f or >= 1f) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must lie in [0, 1)");
        Threshold = (uint)Math.Min(Math.Round(p * 4294967296.0), uint.MaxValue);
        KeptScale = 1f / (1f - p);
        _seedKey = Mix((uint)seed ^ Mix((uint)(seed >> 32)));
    }

    public bool Active => Threshold != 0;

    /// <summary>The key of one query row of one (batch, head): computed once per row.</summary>
    public uint RowKey(int batchHead, int row) => Mix(Mix(_seedKey ^ (uint)batchHead) ^ (uint)row * RowSpread);

    /// <summary>The key of an element-wise dropout over a flat tensor: its indices are the columns of row 0.</summary>
    public uint FlatKey => RowKey(0, 0);

    /// <summary>The factor of probability (row, column): 0 if dropped, else <see cref="KeptScale"/>.</summary>
    public float Factor(uint rowKey, int column) => Mix(rowKey ^ (uint)column * ColumnSpread) < Threshold ? 0f : KeptScale;

    /// <summary><see cref="Factor"/> for 8 consecutive columns starting at <paramref name="column"/>.</summary>
    public Vector256<float> Factor8(uint rowKey, int column)
    {
        var columns = Vector256.Create((uint)column) + Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
        var bits = Mix(Vector256.Create(rowKey) ^ columns * ColumnSpread);
        var kept = Vector256.GreaterThanOrEqual(bits, Vector256.Create(Threshold)).AsSingle();
        return Vector256.Create(KeptScale) & kept;
    }

    /// <summary>lowbias32 (Chris Wellons' hash prospector): a bijective mixer with near-ideal avalanche.</summary>
    private static uint Mix(uint x)
    {
        x ^= x >> 16; x *= 0x7FEB352Du;
        x ^= x >> 15; x *= 0x846CA68Bu;
        return x ^ (x >> 16);
    }

    private static Vector256<uint> Mix(Vector256<uint> x)
    {
        x ^= Vector256.ShiftRightLogical(x, 16); x *= 0x7FEB352Du;
        x ^= Vector256.ShiftRightLogical(x, 15); x *= 0x846CA68Bu;
        return x ^ Vector256.ShiftRightLogical(x, 16);
    }
}
