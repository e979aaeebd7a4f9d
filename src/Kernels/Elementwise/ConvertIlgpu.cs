using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// float32 ↔ bfloat16/float16 storages on an ILGPU accelerator: grid-stride loops over HalfBits (16-bit storage,
// float32 arithmetic; ILGPU has no bfloat16 type and System.Half does not compile in kernels).
public sealed partial class IlgpuBackend
{
    private static readonly Action<ArrayView<float>, ArrayView<ushort>, long, DType> NarrowEntry = NarrowKernel;
    private static readonly Action<ArrayView<ushort>, ArrayView<float>, long, DType> WidenEntry = WidenKernel;
    private static readonly Action<ArrayView<ushort>, ArrayView<ushort>, long, DType> RecastEntry = RecastKernel;

    public void Convert(Buf x, Buf y, long n)
    {
        DType from = x.Storage.DType, to = y.Storage.DType;
        if (from == to) { Copy(x, y, n); return; }
        if (n == 0) return;
        var grid = GridStride(n, Sizes.ElementGroup);
        if (from == DType.Float32 && to.Is16Bit()) Kernel(NarrowEntry)(grid, F(x, n), H(y, n), n, to);
        else if (from.Is16Bit() && to == DType.Float32) Kernel(WidenEntry)(grid, H(x, n), F(y, n), n, from);
        else if (from.Is16Bit() && to.Is16Bit()) Kernel(RecastEntry)(grid, H(x, n), H(y, n), n, from);
        else throw new NotSupportedException($"convert {from} → {to}");
    }

    internal static void NarrowKernel(ArrayView<float> x, ArrayView<ushort> y, long n, DType to)
    {
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep) y[i] = HalfBits.FromFloat(x[i], to);
    }

    internal static void WidenKernel(ArrayView<ushort> x, ArrayView<float> y, long n, DType from)
    {
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep) y[i] = HalfBits.ToFloat(x[i], from);
    }

    /// <summary>bfloat16 ↔ float16 (<paramref name="from"/> is the source type; the target is the other one).</summary>
    internal static void RecastKernel(ArrayView<ushort> x, ArrayView<ushort> y, long n, DType from)
    {
        var to = from == DType.BFloat16 ? DType.Float16 : DType.BFloat16;
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep) y[i] = HalfBits.FromFloat(HalfBits.ToFloat(x[i], from), to);
    }
}
