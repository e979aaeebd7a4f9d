using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Precision;

/// <summary>float32 ↔ bfloat16/float16 on every CPU ISA against independent references: System.Half for float16,
/// a nearest-of-two-candidates rounding in double for bfloat16.</summary>
public class HalfConversionTests
{
    private static readonly DType[] HalfTypes = [DType.BFloat16, DType.Float16];

    /// <summary>Specials, both overflow borders of float16, its subnormals, exact ties of both types, and random
    /// values over many binades; an odd count so every vector width leaves a tail.</summary>
    internal static float[] Inputs()
    {
        var values = new List<float>
        {
            0f, -0f, 1f, -1f, float.Epsilon, -float.Epsilon, float.MaxValue, float.MinValue, float.PositiveInfinity,
            float.NegativeInfinity, float.NaN, -float.NaN, 65504f, 65519.99f, 65520f, -65520f, 70000f, 6.1035156e-05f,
            6.0e-05f, 5.96e-08f, 2.98e-08f, 2.99e-08f, 1e-10f, 1.00048828125f, 1.000244140625f, 1.0009765625f,
            BitConverter.UInt32BitsToSingle(0x3F80_8000), BitConverter.UInt32BitsToSingle(0x3F81_8000),
            BitConverter.UInt32BitsToSingle(0x7F7F_FFFF), BitConverter.UInt32BitsToSingle(0x7F80_0001),
        };
        var rng = new Random(16);
        while (values.Count < 1000 + 37)
            values.Add((float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-30, 20))));
        return values.ToArray();
    }

    internal static ushort Reference(float value, DType dtype)
    {
        if (dtype == DType.Float16) return BitConverter.HalfToUInt16Bits((Half)value);
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint low = bits & 0xFFFF_0000u, high = low + 0x1_0000u;
        double lowDistance = Math.Abs(value - (double)BitConverter.UInt32BitsToSingle(low));
        // The candidate past float.MaxValue is ∞ as a bit pattern but 2¹²⁸ as a rounding target.
        double highValue = (high & 0x7FFF_FFFFu) == 0x7F80_0000u ? Math.CopySign(Math.Pow(2, 128), value) : BitConverter.UInt32BitsToSingle(high);
        double highDistance = Math.Abs(highValue - value);
        if (float.IsInfinity(value)) return (ushort)(bits >> 16);
        bool up = highDistance < lowDistance || (highDistance == lowDistance && ((low >> 16) & 1) == 1);
        return (ushort)((up ? high : low) >> 16);
    }

    private static bool SameValue(ushort actual, ushort expected, DType dtype) =>
        actual == expected || (float.IsNaN(HalfBits.ToFloat(actual, dtype)) && float.IsNaN(HalfBits.ToFloat(expected, dtype)));

    [Test]
    public void NarrowRoundsToNearestEvenOnEveryIsa() => TestIsas.Each(() =>
    {
        var x = Inputs();
        foreach (var dtype in HalfTypes)
        {
            var bits = new ushort[x.Length];
            HalfConversion.Narrow(x, bits, dtype);
            for (int i = 0; i < x.Length; i++)
            {
                ushort expected = Reference(x[i], dtype);
                Assert.That(SameValue(bits[i], expected, dtype), $"{dtype} of {x[i]:R} (0x{BitConverter.SingleToUInt32Bits(x[i]):X8}): got 0x{bits[i]:X4}, expected 0x{expected:X4}");
            }
        }
    });

    [Test]
    public void WidenIsExactForEveryBitPattern() => TestIsas.Each(() =>
    {
        var bits = Enumerable.Range(0, 1 << 16).Select(i => (ushort)i).ToArray();
        foreach (var dtype in HalfTypes)
        {
            var values = new float[bits.Length];
            HalfConversion.Widen(bits, values, dtype);
            for (int i = 0; i < bits.Length; i++)
            {
                float expected = dtype == DType.Float16 ? (float)BitConverter.UInt16BitsToHalf(bits[i]) : BitConverter.UInt32BitsToSingle((uint)i << 16);
                Assert.That(BitConverter.SingleToUInt32Bits(values[i]) == BitConverter.SingleToUInt32Bits(expected) || (float.IsNaN(values[i]) && float.IsNaN(expected)),
                    $"{dtype} 0x{i:X4}: got {values[i]:R}, expected {expected:R}");
            }
            // Widening then narrowing gives every non-NaN pattern back.
            var back = new ushort[bits.Length];
            HalfConversion.Narrow(values, back, dtype);
            for (int i = 0; i < bits.Length; i++)
                if (!float.IsNaN(values[i])) Assert.That(back[i], Is.EqualTo(bits[i]), $"{dtype} round trip of 0x{i:X4}");
        }
    });
}
