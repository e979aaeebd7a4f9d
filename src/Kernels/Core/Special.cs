namespace MaskBit.Kernels;

/// <summary>Scalar special functions shared by CPU kernels (the vector ones, erf included, are in Cpu/SimdMath).</summary>
public static class Special
{
    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));
}
