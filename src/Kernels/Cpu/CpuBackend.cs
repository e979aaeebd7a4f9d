namespace MaskBit.Kernels.Cpu;

/// <summary>The default device: SIMD (Vector256/FMA, TensorPrimitives) kernels over pooled host arrays,
/// spread over the cores with <see cref="CpuParallel"/>. Op families live in partial files next to their
/// ILGPU counterparts (Elementwise/, Gemm/, Conv/, ...).</summary>
public sealed partial class CpuBackend : IBackend, IModelOps
{
    public static readonly CpuBackend Instance = new();

    public string Name => "cpu";
    public IModelOps ModelOps => this;

    public Storage Allocate(long length, DType dtype = DType.Float32, bool zero = true) => new CpuStorage(this, length, dtype, zero);

    public void Upload(ReadOnlySpan<float> src, Buf dst) => src.CopyTo(F(dst, src.Length));
    public void Upload(ReadOnlySpan<int> src, Buf dst) => src.CopyTo(I(dst, src.Length));
    public void Download(Buf src, Span<float> dst) => F(src, dst.Length).CopyTo(dst);
    public void Download(Buf src, Span<int> dst) => I(src, dst.Length).CopyTo(dst);
    public void Upload(ReadOnlySpan<ushort> src, Buf dst) => src.CopyTo(H(dst, src.Length));
    public void Download(Buf src, Span<ushort> dst) => H(src, dst.Length).CopyTo(dst);
    public void Synchronize() { }
    public void Dispose() { }

    /// <summary>The float span [offset, offset + n) of a CPU buffer.</summary>
    internal static Span<float> F(Buf b, long n) => ((CpuStorage)b.Storage).Floats.AsSpan(checked((int)b.Offset), checked((int)n));
    internal static Span<int> I(Buf b, long n) => ((CpuStorage)b.Storage).Ints.AsSpan(checked((int)b.Offset), checked((int)n));
    /// <summary>The raw 16-bit span [offset, offset + n) of a bfloat16/float16 CPU buffer.</summary>
    internal static Span<ushort> H(Buf b, long n) => ((CpuStorage)b.Storage).Halves.AsSpan(checked((int)b.Offset), checked((int)n));
    /// <summary>The backing array and offset of a CPU buffer (for kernels that index across threads).</summary>
    internal static float[] Arr(Buf b) => ((CpuStorage)b.Storage).Floats;
    internal static int[] IntArr(Buf b) => ((CpuStorage)b.Storage).Ints;
    internal static int Off(Buf b) => checked((int)b.Offset);
}
