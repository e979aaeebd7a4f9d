using System.Runtime.Intrinsics;

namespace MaskBit.Kernels.Cpu;

/// <summary>
/// float32 ↔ bfloat16/float16 over spans, on the ISA of <see cref="CpuIsa.Current"/>: 32 (AVX-512) or 16 (AVX2)
/// values per step with the integer rounding of <see cref="HalfBits"/> done lane-wise, the tail and the scalar
/// ISA through <see cref="HalfBits"/> itself, so every path gives the same bits. Used by the backend's
/// <see cref="CpuBackend.Convert"/> and by the checkpoint writer. The lane-wise recipes are written once, over
/// <see cref="ILanes{TSelf}"/>, and run on ymm or zmm registers.
/// </summary>
public static class HalfConversion
{
    public static void Narrow(ReadOnlySpan<float> source, Span<ushort> destination, DType dtype) =>
        Narrow(source, destination, dtype, CpuIsa.Current);

    public static void Widen(ReadOnlySpan<ushort> source, Span<float> destination, DType dtype) =>
        Widen(source, destination, dtype, CpuIsa.Current);

    internal static void Narrow(ReadOnlySpan<float> source, Span<ushort> destination, DType dtype, Isa isa)
    {
        Require16Bit(dtype);
        if (destination.Length < source.Length) throw new ArgumentException($"{destination.Length} slots for {source.Length} values");
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(source);
        int i = 0;
        bool bf16 = dtype == DType.BFloat16;
        if (isa == Isa.Avx512) i = NarrowBlocks<Zmm>(bits, destination, bf16, i);
        if (isa >= Isa.Avx2) i = NarrowBlocks<Ymm>(bits, destination, bf16, i);
        for (; i < source.Length; i++) destination[i] = HalfBits.FromFloat(source[i], dtype);
    }

    internal static void Widen(ReadOnlySpan<ushort> source, Span<float> destination, DType dtype, Isa isa)
    {
        Require16Bit(dtype);
        if (destination.Length < source.Length) throw new ArgumentException($"{destination.Length} slots for {source.Length} values");
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        bool bf16 = dtype == DType.BFloat16;
        if (isa == Isa.Avx512) i = WidenBlocks<Zmm>(source, bits, bf16, i);
        if (isa >= Isa.Avx2) i = WidenBlocks<Ymm>(source, bits, bf16, i);
        for (; i < source.Length; i++) destination[i] = HalfBits.ToFloat(source[i], dtype);
    }

    /// <summary>float16 bits in the low halves of the lanes → float32 bits (the GEMM packing widens with it too).</summary>
    internal static Vector256<uint> Float16ToFloat(Vector256<uint> half) => Float16ToFloat(new Ymm(half)).V;

    /// <summary>Narrows blocks of 2·Count values from index i on; returns the index after the last whole block.</summary>
    private static int NarrowBlocks<TLanes>(ReadOnlySpan<uint> bits, Span<ushort> destination, bool bf16, int i) where TLanes : struct, ILanes<TLanes>
    {
        for (int step = 2 * TLanes.Count; i + step <= bits.Length; i += step)
        {
            TLanes lo = TLanes.Load(bits[i..]), hi = TLanes.Load(bits[(i + TLanes.Count)..]);
            TLanes.NarrowStore(bf16 ? BFloat16(lo) : Float16(lo), bf16 ? BFloat16(hi) : Float16(hi), destination[i..]);
        }
        return i;
    }

    /// <summary>Widens blocks of 2·Count values from index i on; returns the index after the last whole block.</summary>
    private static int WidenBlocks<TLanes>(ReadOnlySpan<ushort> source, Span<uint> bits, bool bf16, int i) where TLanes : struct, ILanes<TLanes>
    {
        for (int step = 2 * TLanes.Count; i + step <= source.Length; i += step)
        {
            var (lo, hi) = TLanes.WidenLoad(source[i..]);
            (bf16 ? lo << 16 : Float16ToFloat(lo)).Store(bits[i..]);
            (bf16 ? hi << 16 : Float16ToFloat(hi)).Store(bits[(i + TLanes.Count)..]);
        }
        return i;
    }

    private static void Require16Bit(DType dtype)
    {
        if (!dtype.Is16Bit()) throw new ArgumentException($"{dtype} is not a 16-bit float type");
    }

    // ---- lane-wise HalfBits (see there for the why of each step); results in the low 16 bits ------------------
    private static T BFloat16<T>(T bits) where T : struct, ILanes<T>
    {
        var nan = T.GreaterThan(bits & T.Create(0x7FFF_FFFFu), T.Create(0x7F80_0000u));
        var rounded = (bits + T.Create(0x7FFFu) + ((bits >> 16) & T.Create(1u))) >> 16;
        return T.Select(nan, (bits >> 16) | T.Create(0x40u), rounded);
    }

    private static T Float16<T>(T bits) where T : struct, ILanes<T>
    {
        var sign = bits & T.Create(0x8000_0000u);
        var magnitude = bits ^ sign;
        var special = T.Select(T.GreaterThan(magnitude, T.Create(0x7F80_0000u)), T.Create(0x7E00u), T.Create(0x7C00u));
        var subnormal = T.AddAsFloat(magnitude, 0.5f) - T.Create(0x3F00_0000u);
        var normal = (magnitude + T.Create(HalfBits.Float16Rebias + 0xFFFu) + ((magnitude >> 13) & T.Create(1u))) >> 13;
        var result = T.Select(T.LessThan(magnitude, T.Create(HalfBits.Float16Overflow)),
            T.Select(T.LessThan(magnitude, T.Create(HalfBits.Float16MinNormal)), subnormal, normal), special);
        return result | (sign >> 16);
    }

    private static T Float16ToFloat<T>(T half) where T : struct, ILanes<T>
    {
        var shifted = (half & T.Create(0x7FFFu)) << 13;
        var exponent = shifted & T.Create(0x0F80_0000u);
        var result = shifted + T.Create(0x3800_0000u);
        var special = result + T.Create(0x3800_0000u);
        var subnormal = T.AddAsFloat(result + T.Create(0x0080_0000u), -HalfBits.Float16SubnormalMagic);
        result = T.Select(T.Equal(exponent, T.Create(0x0F80_0000u)), special, T.Select(T.Equal(exponent, T.Create(0u)), subnormal, result));
        return result | ((half & T.Create(0x8000u)) << 16);
    }

    /// <summary>The lane operations the recipes above use, on Count uint lanes of one register width.</summary>
    private interface ILanes<TSelf> where TSelf : struct, ILanes<TSelf>
    {
        static abstract int Count { get; }
        static abstract TSelf Create(uint value);
        static abstract TSelf Load(ReadOnlySpan<uint> source);
        void Store(Span<uint> destination);
        /// <summary>The low 16 bits of every lane of lo, then of hi, to destination.</summary>
        static abstract void NarrowStore(TSelf lo, TSelf hi, Span<ushort> destination);
        /// <summary>2·Count ushorts zero-extended into the lanes of two vectors.</summary>
        static abstract (TSelf Lo, TSelf Hi) WidenLoad(ReadOnlySpan<ushort> source);
        static abstract TSelf operator &(TSelf x, TSelf y);
        static abstract TSelf operator |(TSelf x, TSelf y);
        static abstract TSelf operator ^(TSelf x, TSelf y);
        static abstract TSelf operator +(TSelf x, TSelf y);
        static abstract TSelf operator -(TSelf x, TSelf y);
        static abstract TSelf operator >>(TSelf x, int shift);
        static abstract TSelf operator <<(TSelf x, int shift);
        static abstract TSelf GreaterThan(TSelf x, TSelf y);
        static abstract TSelf LessThan(TSelf x, TSelf y);
        static abstract TSelf Equal(TSelf x, TSelf y);
        static abstract TSelf Select(TSelf mask, TSelf ifTrue, TSelf ifFalse);
        /// <summary>The lanes read as float32, plus y, as bits.</summary>
        static abstract TSelf AddAsFloat(TSelf x, float y);
    }

    private readonly struct Ymm(Vector256<uint> v) : ILanes<Ymm>
    {
        public readonly Vector256<uint> V = v;
        public static int Count => Vector256<uint>.Count;
        public static Ymm Create(uint value) => new(Vector256.Create(value));
        public static Ymm Load(ReadOnlySpan<uint> source) => new(Vector256.Create(source));
        public void Store(Span<uint> destination) => V.CopyTo(destination);
        public static void NarrowStore(Ymm lo, Ymm hi, Span<ushort> destination) => Vector256.Narrow(lo.V, hi.V).CopyTo(destination);
        public static (Ymm Lo, Ymm Hi) WidenLoad(ReadOnlySpan<ushort> source)
        {
            var (lo, hi) = Vector256.Widen(Vector256.Create(source));
            return (new(lo), new(hi));
        }
        public static Ymm operator &(Ymm x, Ymm y) => new(x.V & y.V);
        public static Ymm operator |(Ymm x, Ymm y) => new(x.V | y.V);
        public static Ymm operator ^(Ymm x, Ymm y) => new(x.V ^ y.V);
        public static Ymm operator +(Ymm x, Ymm y) => new(x.V + y.V);
        public static Ymm operator -(Ymm x, Ymm y) => new(x.V - y.V);
        public static Ymm operator >>(Ymm x, int shift) => new(x.V >> shift);
        public static Ymm operator <<(Ymm x, int shift) => new(x.V << shift);
        public static Ymm GreaterThan(Ymm x, Ymm y) => new(Vector256.GreaterThan(x.V, y.V));
        public static Ymm LessThan(Ymm x, Ymm y) => new(Vector256.LessThan(x.V, y.V));
        public static Ymm Equal(Ymm x, Ymm y) => new(Vector256.Equals(x.V, y.V));
        public static Ymm Select(Ymm mask, Ymm ifTrue, Ymm ifFalse) => new(Vector256.ConditionalSelect(mask.V, ifTrue.V, ifFalse.V));
        public static Ymm AddAsFloat(Ymm x, float y) => new((x.V.AsSingle() + Vector256.Create(y)).AsUInt32());
    }

    private readonly struct Zmm(Vector512<uint> v) : ILanes<Zmm>
    {
        public readonly Vector512<uint> V = v;
        public static int Count => Vector512<uint>.Count;
        public static Zmm Create(uint value) => new(Vector512.Create(value));
        public static Zmm Load(ReadOnlySpan<uint> source) => new(Vector512.Create(source));
        public void Store(Span<uint> destination) => V.CopyTo(destination);
        public static void NarrowStore(Zmm lo, Zmm hi, Span<ushort> destination) => Vector512.Narrow(lo.V, hi.V).CopyTo(destination);
        public static (Zmm Lo, Zmm Hi) WidenLoad(ReadOnlySpan<ushort> source)
        {
            var (lo, hi) = Vector512.Widen(Vector512.Create(source));
            return (new(lo), new(hi));
        }
        public static Zmm operator &(Zmm x, Zmm y) => new(x.V & y.V);
        public static Zmm operator |(Zmm x, Zmm y) => new(x.V | y.V);
        public static Zmm operator ^(Zmm x, Zmm y) => new(x.V ^ y.V);
        public static Zmm operator +(Zmm x, Zmm y) => new(x.V + y.V);
        public static Zmm operator -(Zmm x, Zmm y) => new(x.V - y.V);
        public static Zmm operator >>(Zmm x, int shift) => new(x.V >> shift);
        public static Zmm operator <<(Zmm x, int shift) => new(x.V << shift);
        public static Zmm GreaterThan(Zmm x, Zmm y) => new(Vector512.GreaterThan(x.V, y.V));
        public static Zmm LessThan(Zmm x, Zmm y) => new(Vector512.LessThan(x.V, y.V));
        public static Zmm Equal(Zmm x, Zmm y) => new(Vector512.Equals(x.V, y.V));
        public static Zmm Select(Zmm mask, Zmm ifTrue, Zmm ifFalse) => new(Vector512.ConditionalSelect(mask.V, ifTrue.V, ifFalse.V));
        public static Zmm AddAsFloat(Zmm x, float y) => new((x.V.AsSingle() + Vector512.Create(y)).AsUInt32());
    }
}

// The backend op: float32 ↔ 16-bit storages, chunked over the cores.
public sealed partial class CpuBackend
{
    public void Convert(Buf x, Buf y, long n)
    {
        DType from = x.Storage.DType, to = y.Storage.DType;
        if (from == to) { Copy(x, y, n); return; }
        if (from == DType.Float32 && to.Is16Bit()) Chunked(n, new NarrowBody(x, y, to, CpuIsa.Current));
        else if (from.Is16Bit() && to == DType.Float32) Chunked(n, new WidenBody(x, y, from, CpuIsa.Current));
        else if (from.Is16Bit() && to.Is16Bit()) Chunked(n, new RecastBody(x, y, CpuIsa.Current));
        else throw new NotSupportedException($"convert {from} → {to}");
    }

    private readonly struct NarrowBody(Buf x, Buf y, DType to, Isa isa) : IRangeBody
    {
        public void Run(int start, int end) => HalfConversion.Narrow(F(x.At(start), end - start), H(y.At(start), end - start), to, isa);
    }

    private readonly struct WidenBody(Buf x, Buf y, DType from, Isa isa) : IRangeBody
    {
        public void Run(int start, int end) => HalfConversion.Widen(H(x.At(start), end - start), F(y.At(start), end - start), from, isa);
    }

    /// <summary>bfloat16 ↔ float16 through float32 (exact widening, one rounding), a stack block at a time.</summary>
    private readonly struct RecastBody(Buf x, Buf y, Isa isa) : IRangeBody
    {
        public void Run(int start, int end)
        {
            Span<float> block = stackalloc float[512];
            for (int i = start; i < end; i += block.Length)
            {
                int count = Math.Min(block.Length, end - i);
                HalfConversion.Widen(H(x.At(i), count), block, x.Storage.DType, isa);
                HalfConversion.Narrow(block[..count], H(y.At(i), count), y.Storage.DType, isa);
            }
        }
    }
}
