using System.Runtime.Intrinsics;

namespace MaskBit.Kernels.Cpu;

/// <summary>
/// float32 ↔ bfloat16/float16 over spans, on the ISA of <see cref="CpuIsa.Current"/>: 32 (AVX-512) or 16 (AVX2)
/// values per step with the integer rounding of <see cref="HalfBits"/> done lane-wise, the tail and the scalar
/// ISA through <see cref="HalfBits"/> itself, so every path gives the same bits. Used by the backend's
/// <see cref="CpuBackend.Convert"/> and by the checkpoint writer.
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
        if (isa == Isa.Avx512)
            for (; i + 32 <= bits.Length; i += 32)
            {
                var lo = Vector512.Create(bits.Slice(i, 16));
                var hi = Vector512.Create(bits.Slice(i + 16, 16));
                Vector512.Narrow(bf16 ? BFloat16(lo) : Float16(lo), bf16 ? BFloat16(hi) : Float16(hi)).CopyTo(destination[i..]);
            }
        if (isa >= Isa.Avx2)
            for (; i + 16 <= bits.Length; i += 16)
            {
                var lo = Vector256.Create(bits.Slice(i, 8));
                var hi = Vector256.Create(bits.Slice(i + 8, 8));
                Vector256.Narrow(bf16 ? BFloat16(lo) : Float16(lo), bf16 ? BFloat16(hi) : Float16(hi)).CopyTo(destination[i..]);
            }
        for (; i < source.Length; i++) destination[i] = HalfBits.FromFloat(source[i], dtype);
    }

    internal static void Widen(ReadOnlySpan<ushort> source, Span<float> destination, DType dtype, Isa isa)
    {
        Require16Bit(dtype);
        if (destination.Length < source.Length) throw new ArgumentException($"{destination.Length} slots for {source.Length} values");
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        bool bf16 = dtype == DType.BFloat16;
        if (isa == Isa.Avx512)
            for (; i + 32 <= source.Length; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Create(source.Slice(i, 32)));
                (bf16 ? lo << 16 : Float16ToFloat(lo)).CopyTo(bits[i..]);
                (bf16 ? hi << 16 : Float16ToFloat(hi)).CopyTo(bits[(i + 16)..]);
            }
        if (isa >= Isa.Avx2)
            for (; i + 16 <= source.Length; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Create(source.Slice(i, 16)));
                (bf16 ? lo << 16 : Float16ToFloat(lo)).CopyTo(bits[i..]);
                (bf16 ? hi << 16 : Float16ToFloat(hi)).CopyTo(bits[(i + 8)..]);
            }
        for (; i < source.Length; i++) destination[i] = HalfBits.ToFloat(source[i], dtype);
    }

    private static void Require16Bit(DType dtype)
    {
        if (!dtype.Is16Bit()) throw new ArgumentException($"{dtype} is not a 16-bit float type");
    }

    // ---- lane-wise HalfBits (see there for the why of each step); results in the low 16 bits ------------------
    private static Vector512<uint> BFloat16(Vector512<uint> bits)
    {
        var nan = Vector512.GreaterThan(bits & Vector512.Create(0x7FFF_FFFFu), Vector512.Create(0x7F80_0000u));
        var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) >> 16;
        return Vector512.ConditionalSelect(nan, (bits >> 16) | Vector512.Create(0x40u), rounded);
    }

    private static Vector256<uint> BFloat16(Vector256<uint> bits)
    {
        var nan = Vector256.GreaterThan(bits & Vector256.Create(0x7FFF_FFFFu), Vector256.Create(0x7F80_0000u));
        var rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One)) >> 16;
        return Vector256.ConditionalSelect(nan, (bits >> 16) | Vector256.Create(0x40u), rounded);
    }

    private static Vector512<uint> Float16(Vector512<uint> bits)
    {
        var sign = bits & Vector512.Create(0x8000_0000u);
        var magnitude = bits ^ sign;
        var special = Vector512.ConditionalSelect(Vector512.GreaterThan(magnitude, Vector512.Create(0x7F80_0000u)),
            Vector512.Create(0x7E00u), Vector512.Create(0x7C00u));
        var subnormal = (magnitude.AsSingle() + Vector512.Create(0.5f)).AsUInt32() - Vector512.Create(0x3F00_0000u);
        var normal = (magnitude + Vector512.Create(HalfBits.Float16Rebias + 0xFFFu) + ((magnitude >> 13) & Vector512<uint>.One)) >> 13;
        var result = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(HalfBits.Float16Overflow)), special,
            Vector512.ConditionalSelect(Vector512.LessThan(magnitude, Vector512.Create(HalfBits.Float16MinNormal)), subnormal, normal));
        return result | (sign >> 16);
    }

    private static Vector256<uint> Float16(Vector256<uint> bits)
    {
        var sign = bits & Vector256.Create(0x8000_0000u);
        var magnitude = bits ^ sign;
        var special = Vector256.ConditionalSelect(Vector256.GreaterThan(magnitude, Vector256.Create(0x7F80_0000u)),
            Vector256.Create(0x7E00u), Vector256.Create(0x7C00u));
        var subnormal = (magnitude.AsSingle() + Vector256.Create(0.5f)).AsUInt32() - Vector256.Create(0x3F00_0000u);
        var normal = (magnitude + Vector256.Create(HalfBits.Float16Rebias + 0xFFFu) + ((magnitude >> 13) & Vector256<uint>.One)) >> 13;
        var result = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(HalfBits.Float16Overflow)), special,
            Vector256.ConditionalSelect(Vector256.LessThan(magnitude, Vector256.Create(HalfBits.Float16MinNormal)), subnormal, normal));
        return result | (sign >> 16);
    }

    private static Vector512<uint> Float16ToFloat(Vector512<uint> half)
    {
        var shifted = (half & Vector512.Create(0x7FFFu)) << 13;
        var exponent = shifted & Vector512.Create(0x0F80_0000u);
        var result = shifted + Vector512.Create(0x3800_0000u);
        var special = result + Vector512.Create(0x3800_0000u);
        var subnormal = ((result + Vector512.Create(0x0080_0000u)).AsSingle() - Vector512.Create(HalfBits.Float16SubnormalMagic)).AsUInt32();
        result = Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512.Create(0x0F80_0000u)), special,
            Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512<uint>.Zero), subnormal, result));
        return result | ((half & Vector512.Create(0x8000u)) << 16);
    }

    /// <summary>float16 bits in the low halves of the lanes → float32 bits (the GEMM packing widens with it too).</summary>
    internal static Vector256<uint> Float16ToFloat(Vector256<uint> half)
    {
        var shifted = (half & Vector256.Create(0x7FFFu)) << 13;
        var exponent = shifted & Vector256.Create(0x0F80_0000u);
        var result = shifted + Vector256.Create(0x3800_0000u);
        var special = result + Vector256.Create(0x3800_0000u);
        var subnormal = ((result + Vector256.Create(0x0080_0000u)).AsSingle() - Vector256.Create(HalfBits.Float16SubnormalMagic)).AsUInt32();
        result = Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256.Create(0x0F80_0000u)), special,
            Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256<uint>.Zero), subnormal, result));
        return result | ((half & Vector256.Create(0x8000u)) << 16);
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
