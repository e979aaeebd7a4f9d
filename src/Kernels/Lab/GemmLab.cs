using MaskBit.Kernels.Ilgpu;
using static MaskBit.Kernels.Ilgpu.IlgpuBackend;

namespace MaskBit.Kernels.Lab;

/// <summary>GEMM (C = alpha·op(A)·op(B) + beta·C, batched, any transposes) and, through the same tiled kernel, the
/// implicit-GEMM convolutions. Kernels: Gemm/GemmIlgpu.cs (v1), Gemm/GemmIlgpuV2.cs (v2, v3), Gemm/GemmIlgpuMma.cs
/// (v4–v6, tensor cores, CUDA only: not validated until a GPU runs the lab).</summary>
public sealed class GemmLab : LabFamily
{
    /// <summary>The version the ILGPU backend runs GEMMs and implicit-GEMM convolutions with on a GPU.</summary>
    public const int BackendVersion = 3;

    public override string Name => "gemm";
    public override int UsedVersion => BackendVersion;

    public override IReadOnlyList<LabVersion> Versions { get; } =
    [
        // Per k a thread reads 4 + 4 scalars for 16 FMAs; per K step of 16 a group reads (64 + 64)·16 floats for
        // 2·64·64·16 FLOPs.
        new(1, "64×64 tiles, 4×4 per thread (256 threads), K step 16, scalar shared loads, no prefetch " +
               "(32×32 tiles with 64 threads on the CPU accelerator)",
            FlopsPerSharedLoad: 2.0 * 16 / 8, FlopsPerGlobalByte: 2.0 * 64 * 64 / (4 * (64 + 64)),
            [TiledKernels<GemmArgs>.LargeEntry.Method, TiledKernels<GemmArgs>.SmallEntry.Method]),
        // Per k a thread reads 2 + 2 float4 for 64 FMAs; per K step of 8 a group reads (128 + 128)·8 floats for
        // 2·128·128·8 FLOPs.
        new(2, "128×128 tiles, 8×8 per thread (256 threads), K step 8, [k][row] shared slices padded to 132 floats " +
               "(conflict-free, 128-bit loads), register prefetch and double-buffered shared memory (one barrier per K step)",
            FlopsPerSharedLoad: 2.0 * 64 / 4, FlopsPerGlobalByte: 2.0 * 128 * 128 / (4 * (128 + 128)),
            [TiledKernels<GemmArgs>.Large128Entry.Method], VectorSharedLoads: true),
        // As v2, plus 8·slices bytes per output for the partial sums (written once, read once by the sum pass).
        new(3, "v2 with split-K where the output has fewer tiles than two waves of the GPU: slices of K write partial " +
               "products, a second pass sums them in slice order (deterministic) and applies alpha/beta",
            FlopsPerSharedLoad: 2.0 * 64 / 4, FlopsPerGlobalByte: 2.0 * 128 * 128 / (4 * (128 + 128)),
            [TiledKernels<GemmArgs>.Large128Entry.Method, SplitKKernels<GemmArgs>.Entry.Method, SplitKKernels<GemmArgs>.SumEntry.Method],
            VectorSharedLoads: true),
        // Per k step of 8 a lane loads 8 A and 8 B fragment values for its share (1/32) of 8 mma tiles of 16×8×8:
        // 8·2·16·8·8/32 = 512 FLOPs per 16 loads; per K step of 16 a group reads (64 + 64)·16 floats for 2·64·64·16 FLOPs.
        new(4, "tensor cores, TF32 (mma.sync m16n8k8 through inline PTX, cvt.rna rounding, float32 accumulation): 64×64 tiles, " +
               "4 warps of 32×32 (2×4 mma tiles each), K step 16, [row][k] slices padded to 20 floats; CUDA sm_80+ only",
            FlopsPerSharedLoad: 32, FlopsPerGlobalByte: 2.0 * 64 * 64 / (4 * (64 + 64)),
            [TensorCoreKernels<GemmArgs>.Tf32Entry.Method], CudaOnly: true, ToleranceFloor: 5e-3),
        // As v4; three mma per fragment pair (the FLOPs counted are the product's, not the tensor cores' 3×).
        new(5, "v4 as 3×TF32: each operand split into a TF32 head and tail, tail·head + head·tail + head·head, for float32 " +
               "accuracy at three times the tensor-core work; CUDA sm_80+ only",
            FlopsPerSharedLoad: 32, FlopsPerGlobalByte: 2.0 * 64 * 64 / (4 * (64 + 64)),
            [TensorCoreKernels<GemmArgs>.Tf32x3Entry.Method], CudaOnly: true),
        // Per K step of 16 a lane loads 16 A and 16 B values (8 bf16 pairs each) for 1/32 of 8 mma tiles of 16×8×16.
        new(6, "v4's tiling on bf16 mma.sync m16n8k16 (operands rounded to bf16 by cvt.rn.bf16x2, float32 accumulation): " +
               "exact for bf16 operands (widened to float32 before the GEMM), lossy for float32 ones; CUDA sm_80+ only",
            FlopsPerSharedLoad: 32, FlopsPerGlobalByte: 2.0 * 64 * 64 / (4 * (64 + 64)),
            [TensorCoreKernels<GemmArgs>.Bf16Entry.Method], CudaOnly: true, ToleranceFloor: 3e-2),
    ];

    /// <summary>Small shapes for the CPU accelerator: single elements, sizes off every tile multiple, every
    /// transpose, a long skinny reduction (split-K), a batch with a shared operand and alpha/beta.</summary>
    public override IReadOnlyList<LabCase> ValidationCases { get; } =
    [
        Case("one", new GemmDesc(1, 1, 1)),
        Case("odd_5x7x3", new GemmDesc(5, 7, 3, TransB: true)),
        .. from ta in new[] { false, true }
           from tb in new[] { false, true }
           select Case($"edges_130x129x40_{(ta ? "T" : "N")}{(tb ? "T" : "N")}", new GemmDesc(130, 129, 40, ta, tb)),
        Case("skinny_9x6x300_TN", new GemmDesc(9, 6, 300, TransA: true)),
        Case("batched_shared_b_alpha_beta", new GemmDesc(9, 14, 11, Batch: 3, StrideA: 9 * 11, StrideB: 0, StrideC: 9 * 14), 0.7f, 0.3f),
    ];

    /// <summary>The model's shapes (bench/: the generator's linear layers, x·Wᵀ forward and gᵀ·x weight gradient with
    /// 514 tokens) and large squares; a conv-like weight gradient (short M, N, long K) for split-K.</summary>
    public override IReadOnlyList<LabCase> BenchmarkCases { get; } =
    [
        Case("square_2048", new GemmDesc(2048, 2048, 2048)),
        Case("square_4096", new GemmDesc(4096, 4096, 4096)),
        Case("linear_qkv_T514_fwd", new GemmDesc(514, 3072, 1024, TransB: true)),
        Case("linear_mlp_down_T514_fwd", new GemmDesc(514, 1024, 4096, TransB: true)),
        Case("linear_mlp_up_T514_wgrad", new GemmDesc(4096, 1024, 514, TransA: true)),
        Case("wgrad_256x2304x65536", new GemmDesc(256, 2304, 65536, TransB: true)),
    ];

    private static LabCase Case(string name, GemmDesc d, float alpha = 1f, float beta = 0f) =>
        new(name, $"{d.M}×{d.N}×{d.K}{(d.TransA ? " Aᵀ" : "")}{(d.TransB ? " Bᵀ" : "")}{(d.Batch > 1 ? $" batch {d.Batch}" : "")}" +
                  (alpha != 1f || beta != 0f ? $" alpha {alpha} beta {beta}" : ""),
            d.Flops, Tolerance: 2e-6 * Math.Sqrt(d.K) + 1e-5, device => new GemmProblem(device, d, alpha, beta));

    private sealed class GemmProblem : LabProblem
    {
        private readonly IlgpuBackend _device;
        private readonly GemmDesc _d;
        private readonly float _alpha, _beta;
        private readonly float[] _a, _b, _c0;
        private readonly LabBuffers _buffers;
        private readonly Buf _aBuf, _bBuf, _cBuf;
        private float[]? _reference;

        public GemmProblem(IlgpuBackend device, GemmDesc d, float alpha, float beta)
        {
            (_device, _d, _alpha, _beta) = (device, d, alpha, beta);
            _a = LabData.Uniform(Extent(d.Batch, d.StrideA, (long)d.M * d.K), 1);
            _b = LabData.Uniform(Extent(d.Batch, d.StrideB, (long)d.K * d.N), 2);
            _c0 = LabData.Uniform(Extent(d.Batch, d.StrideC, (long)d.M * d.N), 3);
            _buffers = new LabBuffers(device);
            (_aBuf, _bBuf, _cBuf) = (_buffers.Upload(_a), _buffers.Upload(_b), _buffers.Upload(_c0));
        }

        private static long Extent(int batch, long stride, long item) => (batch - 1) * stride + item;

        public override void Run(int version)
        {
            if (_beta != 0f) _device.Upload(_c0, _cBuf);   // beta reads C: every run starts from the same C
            _device.GemmVersion(version, _d, _aBuf, _bBuf, _cBuf, _alpha, _beta);
        }

        public override float[] Result() => _buffers.Download(_cBuf, _c0.Length);

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu(cpu =>
        {
            var c = cpu.Upload(_c0);
            cpu.Device.Gemm(_d, cpu.Upload(_a), cpu.Upload(_b), c, _alpha, _beta);
            return cpu.Download(c, _c0.Length);
        });

        public override void Dispose() => _buffers.Dispose();
    }
}
