using MaskBit.Kernels.Ilgpu;
using static MaskBit.Kernels.Ilgpu.IlgpuBackend;

namespace MaskBit.Kernels.Lab;

/// <summary>The convolution forward as an implicit GEMM (the backward passes run through the GEMM family's tile as
/// well, with v1's index math). Kernels: Conv/ConvIlgpu.cs, Conv/ConvIlgpuV2.cs, and the GEMM family's tiles.</summary>
public sealed class ConvLab : LabFamily
{
    /// <summary>The version the ILGPU backend runs convolution forwards with where it runs the lab's GEMM (CUDA).</summary>
    public const int BackendVersion = 3;

    public override string Name => "conv";
    public override int UsedVersion => BackendVersion;

    public override IReadOnlyList<LabVersion> Versions { get; } =
    [
        new(1, "implicit GEMM on GEMM v1 (64×64 tiles): each staged patch value divides k into (ci, kh, kw) and j into (n, oh, ow)",
            FlopsPerSharedLoad: 2.0 * 16 / 8, FlopsPerGlobalByte: 2.0 * 64 * 64 / (4 * (64 + 64)),
            [TiledKernels<ConvForwardProduct>.LargeEntry.Method, TiledKernels<ConvForwardProduct>.SmallEntry.Method]),
        new(2, "v1's index math on the GEMM family's used version (128×128 tiles, 8×8 per thread, double-buffered, split-K)",
            FlopsPerSharedLoad: 2.0 * 64 / 4, FlopsPerGlobalByte: 2.0 * 128 * 128 / (4 * (128 + 128)),
            [TiledKernels<ConvForwardProduct>.Large128Entry.Method, SplitKKernels<ConvForwardProduct>.Entry.Method], VectorSharedLoads: true),
        new(3, "v2 with index tables (per k and per output column, written once per launch) instead of four divisions per " +
               "staged value: two table reads, two adds and a bounds test",
            FlopsPerSharedLoad: 2.0 * 64 / 4, FlopsPerGlobalByte: 2.0 * 128 * 128 / (4 * (128 + 128)),
            [TiledKernels<ConvForwardTabledProduct>.Large128Entry.Method, SplitKKernels<ConvForwardTabledProduct>.Entry.Method,
             ConvForwardTablesEntry.Method], VectorSharedLoads: true),
    ];

    /// <summary>Small shapes: odd maps, SAME and asymmetric padding, stride 2, 1×1, groups, and a long reduction
    /// (split-K), with and without bias.</summary>
    public override IReadOnlyList<LabCase> ValidationCases { get; } =
    [
        Case("3x3_same_bias", Desc(2, 5, 7, 6, 6, 3, 1, 1, 1, 1, 1), bias: true),
        Case("1x1", Desc(2, 6, 5, 5, 7, 1, 1, 0, 0, 0, 0), bias: false),
        Case("4x4_stride2_bias", Desc(2, 4, 9, 8, 5, 4, 2, 1, 1, 1, 1), bias: true),
        Case("3x3_stride2_pad_0011", Desc(1, 4, 8, 7, 4, 3, 2, 0, 0, 1, 1), bias: true),
        Case("grouped_3x3", Desc(1, 8, 6, 5, 8, 3, 1, 1, 1, 1, 1, groups: 2), bias: true),
        Case("3x3_130_columns_long_k", Desc(2, 40, 5, 13, 9, 3, 1, 1, 1, 1, 1), bias: false),
    ];

    /// <summary>The tokenizer's ResidualBlock convs at batch 1 (bench/: conv3x3_*) and its 4×4 stride-2 downsampling.</summary>
    public override IReadOnlyList<LabCase> BenchmarkCases { get; } =
    [
        Case("conv3x3_128x128", Desc(1, 128, 128, 128, 128, 3, 1, 1, 1, 1, 1), bias: true),
        Case("conv3x3_256x64", Desc(1, 256, 64, 64, 256, 3, 1, 1, 1, 1, 1), bias: true),
        Case("conv3x3_512x16", Desc(1, 512, 16, 16, 512, 3, 1, 1, 1, 1, 1), bias: true),
        Case("conv4x4_s2_128x128", Desc(1, 128, 128, 128, 128, 4, 2, 1, 1, 1, 1), bias: true),
    ];

    private static Conv2dDesc Desc(int n, int cin, int h, int w, int cout, int k, int stride, int top, int left, int bottom, int right, int groups = 1) =>
        new(n, cin, h, w, cout, k, k, stride, stride, top, left,
            Conv2dDesc.OutSize(h, k, stride, top, bottom), Conv2dDesc.OutSize(w, k, stride, left, right), groups);

    private static LabCase Case(string name, Conv2dDesc d, bool bias) =>
        new(name, $"x[{d.N},{d.Cin},{d.H},{d.W}] w[{d.Cout},{d.CinPerGroup},{d.KH},{d.KW}] s{d.StrideH}{(d.Groups > 1 ? $" groups {d.Groups}" : "")}{(bias ? " bias" : "")}",
            d.Flops, Tolerance: 2e-6 * Math.Sqrt(d.CinPerGroup * d.KH * d.KW) + 1e-5, device => new ConvProblem(device, d, bias));

    private sealed class ConvProblem : LabProblem
    {
        private readonly IlgpuBackend _device;
        private readonly Conv2dDesc _d;
        private readonly float[] _x, _w, _b;
        private readonly LabBuffers _buffers;
        private readonly Buf _xBuf, _wBuf, _bBuf, _yBuf;
        private readonly bool _bias;
        private float[]? _reference;

        public ConvProblem(IlgpuBackend device, Conv2dDesc d, bool bias)
        {
            (_device, _d, _bias) = (device, d, bias);
            _x = LabData.Uniform((long)d.N * d.Cin * d.H * d.W, 1);
            _w = LabData.Uniform((long)d.Cout * d.CinPerGroup * d.KH * d.KW, 2);
            _b = LabData.Uniform(d.Cout, 3);
            _buffers = new LabBuffers(device);
            (_xBuf, _wBuf, _bBuf) = (_buffers.Upload(_x), _buffers.Upload(_w), _buffers.Upload(_b));
            _yBuf = _buffers.Allocate(OutputLength);
        }

        private long OutputLength => (long)_d.N * _d.Cout * _d.OH * _d.OW;

        public override void Run(int version) =>
            _device.ConvForwardVersion(version, _d, _xBuf, _wBuf, _bias ? _bBuf : null, _yBuf);

        public override float[] Result() => _buffers.Download(_yBuf, OutputLength);

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu(cpu =>
        {
            var y = cpu.Allocate(OutputLength);
            cpu.Device.Conv2dForward(_d, cpu.Upload(_x), cpu.Upload(_w), _bias ? cpu.Upload(_b) : null, y);
            return cpu.Download(y, OutputLength);
        });

        public override void Dispose() => _buffers.Dispose();
    }
}
