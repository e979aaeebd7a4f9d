using ILGPU;

namespace MaskBit.Kernels;

/// <summary>
/// Scalar conversions between float32 and the bit patterns of bfloat16 and float16, rounding to nearest even as
/// torch's <c>.to(dtype)</c> does. Written with integer operations only (plus one float add for float16
/// subnormals), so the same code is the CPU kernels' scalar path, the reference their vector paths are tested
/// against, and the body of the ILGPU kernels.
/// </summary>
public static class HalfBits
{
    /// <summary>float32 → bfloat16: the upper 16 bits, rounded to nearest even; a NaN stays a (quiet) NaN.</summary>
    public static ushort BFloat16FromFloat(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }

    public static float BFloat16ToFloat(ushort bits) => Interop.IntAsFloat((uint)bits << 16);

    /// <summary>float32 → float16 (IEEE binary16), rounded to nearest even: magnitudes from 65520 up become ±∞,
    /// those below 2⁻¹⁴ become subnormals (or ±0), NaN becomes the quiet NaN 0x7E00 with the sign kept.</summary>
    public static ushort Float16FromFloat(float value)
    {
        uint bits = Interop.FloatAsInt(value);
        uint sign = bits & 0x8000_0000u;
        uint magnitude = bits ^ sign;
        uint result;
        if (magnitude >= Float16Overflow) result = magnitude > 0x7F80_0000u ? 0x7E00u : 0x7C00u;
        else if (magnitude < Float16MinNormal)
            // Adding 0.5 aligns the subnormal's bits at the bottom of the mantissa; the FPU rounds them (to even).
            result = Interop.FloatAsInt(Interop.IntAsFloat(magnitude) + 0.5f) - 0x3F00_0000u;
        else
        {
            uint odd = (magnitude >> 13) & 1;
            result = (magnitude + Float16Rebias + 0xFFFu + odd) >> 13;
        }
        return (ushort)(result | (sign >> 16));
    }

    public static float Float16ToFloat(ushort bits)
    {
        uint shifted = (uint)(bits & 0x7FFF) << 13;
        uint exponent = shifted & 0x0F80_0000u;
        uint result = shifted + 0x3800_0000u;   // rebias 15 → 127
        if (exponent == 0x0F80_0000u) result += 0x3800_0000u;   // ∞ / NaN: exponent to 255
        else if (exponent == 0) result = Interop.FloatAsInt(Interop.IntAsFloat(result + 0x0080_0000u) - Float16SubnormalMagic);
        return Interop.IntAsFloat(result | ((uint)(bits & 0x8000) << 16));
    }

    public static ushort FromFloat(float value, DType dtype) =>
        dtype == DType.BFloat16 ? BFloat16FromFloat(value) : Float16FromFloat(value);

    public static float ToFloat(ushort bits, DType dtype) =>
        dtype == DType.BFloat16 ? BFloat16ToFloat(bits) : Float16ToFloat(bits);

    /// <summary>The float32 value nearest to <paramref name="value"/> that <paramref name="dtype"/> represents.</summary>
    public static float Round(float value, DType dtype) => ToFloat(FromFloat(value, dtype), dtype);

    /// <summary>float32 bits of 65536: from here on (after rounding, from 65520) float16 overflows.</summary>
    internal const uint Float16Overflow = 0x4780_0000u;
    /// <summary>float32 bits of 2⁻¹⁴, float16's smallest normal.</summary>
    internal const uint Float16MinNormal = 0x3880_0000u;
    /// <summary>Exponent rebias 127 → 15, as an addend of float32 bits (wraps).</summary>
    internal const uint Float16Rebias = unchecked((uint)((15 - 127) << 23));
    /// <summary>2⁻¹⁴ as a float.</summary>
    internal const float Float16SubnormalMagic = 6.103515625e-05f;
}
