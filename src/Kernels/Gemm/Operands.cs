using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

/// <summary>The bits of one bfloat16 value as an element type of its own, so that a generic kernel tells it apart
/// from float16 (both are stored as ushort) when the JIT specialises it.</summary>
internal readonly struct BFloat16Bits
{
    public readonly ushort Bits;
}

/// <summary>The bits of one float16 value (see <see cref="BFloat16Bits"/>).</summary>
internal readonly struct Float16Bits
{
    public readonly ushort Bits;
}

/// <summary>
/// Reads GEMM and convolution operands of any float storage type (float, <see cref="BFloat16Bits"/>,
/// <see cref="Float16Bits"/>) as float32: the packing routines call these while they copy an operand into their
/// float32 panels, so a 16-bit operand is widened in registers on the way and never as a whole tensor. The type tests
/// are JIT-time constants for each instantiation, so the float32 path stays a plain load.
/// </summary>
internal static unsafe class OperandElements
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat<T>(T* p) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return *(float*)p;
        if (typeof(T) == typeof(BFloat16Bits)) return HalfBits.BFloat16ToFloat(*(ushort*)p);
        if (typeof(T) == typeof(Float16Bits)) return HalfBits.Float16ToFloat(*(ushort*)p);
        throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>p[0..8) as float32 (AVX2: the packing runs only on the vector ISAs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8<T>(T* p) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Avx.LoadVector256((float*)p);
        var bits = Avx2.ConvertToVector256Int32(Sse2.LoadVector128((ushort*)p)).AsUInt32();
        if (typeof(T) == typeof(BFloat16Bits)) return (bits << 16).AsSingle();
        if (typeof(T) == typeof(Float16Bits)) return HalfConversion.Float16ToFloat(bits).AsSingle();
        throw new NotSupportedException(typeof(T).Name);
    }
}

/// <summary>A kernel body run on two operands with the element types of their storages (see
/// <see cref="OperandPair"/>).</summary>
internal unsafe interface IOperandPairBody
{
    void Run<TA, TB>(TA* a, TB* b) where TA : unmanaged where TB : unmanaged;
}

/// <summary>A kernel body run on one operand with the element type of its storage.</summary>
internal unsafe interface IOperandBody
{
    void Run<T>(T* x) where T : unmanaged;
}

/// <summary>Pins operands of any float storage type and hands them to a generic body as typed pointers at their
/// offsets (valid until the body returns; the body may spread work over threads and wait for it).</summary>
internal static unsafe class OperandPair
{
    public static void Run<TBody>(Buf x, ref TBody body) where TBody : struct, IOperandBody
    {
        var storage = (CpuStorage)x.Storage;
        switch (storage.DType)
        {
            case DType.Float32:
                fixed (float* p = storage.Floats) body.Run(p + x.Offset);
                break;
            case DType.BFloat16:
                fixed (ushort* p = storage.Halves) body.Run((BFloat16Bits*)p + x.Offset);
                break;
            case DType.Float16:
                fixed (ushort* p = storage.Halves) body.Run((Float16Bits*)p + x.Offset);
                break;
            default: throw new NotSupportedException($"{storage.DType} is not a float operand type");
        }
    }

    public static void Run<TBody>(Buf a, Buf b, ref TBody body) where TBody : struct, IOperandPairBody
    {
        var second = new Second<TBody>(b, body);
        Run(a, ref second);
        body = second.Body;
    }

    private struct Second<TBody>(Buf b, TBody body) : IOperandBody where TBody : struct, IOperandPairBody
    {
        public TBody Body = body;

        public void Run<TA>(TA* a) where TA : unmanaged
        {
            var first = new WithFirst<TA, TBody>(a, Body);
            OperandPair.Run(b, ref first);
            Body = first.Body;
        }
    }

    private struct WithFirst<TA, TBody>(TA* a, TBody body) : IOperandBody where TA : unmanaged where TBody : struct, IOperandPairBody
    {
        public TBody Body = body;

        public void Run<TB>(TB* b) where TB : unmanaged => Body.Run(a, b);
    }
}
