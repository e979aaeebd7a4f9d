using MaskBit.Kernels.Ilgpu;
using static MaskBit.Kernels.Ilgpu.IlgpuBackend;

namespace MaskBit.Kernels.Lab;

/// <summary>The convolution forward as an implicit GEMM (the backward passes: <see cref="ConvBackwardLab"/>). Kernels:
/// Conv/ConvIlgpu.cs, Conv/ConvIlgpuV2.cs, and the GEMM family's tiles.</summary>
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
             ConvTablesEntry.Method], VectorSharedLoads: true),
    ];

    /// <summary>Small shapes: odd maps, SAME and asymmetric padding, stride 2, 1×1, groups, and a long reduction
    /// (split-K), with and without bias (the backward families run the same shapes).</summary>
    internal static readonly (string Name, Conv2dDesc Desc, bool Bias)[] ValidationShapes =
    [
        ("3x3_same_bias", Desc(2, 5, 7, 6, 6, 3, 1, 1, 1, 1, 1), true),
        ("1x1", Desc(2, 6, 5, 5, 7, 1, 1, 0, 0, 0, 0), false),
        ("4x4_stride2_bias", Desc(2, 4, 9, 8, 5, 4, 2, 1, 1, 1, 1), true),
        ("3x3_stride2_pad_0011", Desc(1, 4, 8, 7, 4, 3, 2, 0, 0, 1, 1), true),
        ("grouped_3x3", Desc(1, 8, 6, 5, 8, 3, 1, 1, 1, 1, 1, groups: 2), true),
        ("3x3_130_columns_long_k", Desc(2, 40, 5, 13, 9, 3, 1, 1, 1, 1, 1), false),
    ];

    /// <summary>The tokenizer's ResidualBlock convs at batch 1 (bench/: conv3x3_*) and its 4×4 stride-2 downsampling.</summary>
    internal static readonly (string Name, Conv2dDesc Desc, bool Bias)[] BenchmarkShapes =
    [
        ("conv3x3_128x128", Desc(1, 128, 128, 128, 128, 3, 1, 1, 1, 1, 1), true),
        ("conv3x3_256x64", Desc(1, 256, 64, 64, 256, 3, 1, 1, 1, 1, 1), true),
        ("conv3x3_512x16", Desc(1, 512, 16, 16, 512, 3, 1, 1, 1, 1, 1), true),
        ("conv4x4_s2_128x128", Desc(1, 128, 128, 128, 128, 4, 2, 1, 1, 1, 1), true),
    ];

    public override IReadOnlyList<LabCase> ValidationCases { get; } = [.. ValidationShapes.Select(c => Case(c.Name, c.Desc, c.Bias))];

    public override IReadOnlyList<LabCase> BenchmarkCases { get; } = [.. BenchmarkShapes.Select(c => Case(c.Name, c.Desc, c.Bias))];

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

/// <summary>A backward pass of the convolution as an implicit GEMM: the input gradient (dx = Σ w · dy gathered at the
/// output each tap fed) or the weight gradient (dw = Σ dy · x-patch over (n, oh, ow)), on the forward's shapes.
/// Kernels: Conv/ConvIlgpu.cs (v1, v2), Conv/ConvIlgpuV2.cs (v3), and the GEMM family's tiles.</summary>
public sealed class ConvBackwardLab : LabFamily
{
    /// <summary>The version the ILGPU backend runs both backward passes with where it runs the lab's GEMM (CUDA).</summary>
    public const int BackendVersion = 3;

    private readonly bool _weights;

    /// <param name="weights">The weight gradient's family; else the input gradient's.</param>
    public ConvBackwardLab(bool weights)
    {
        _weights = weights;
        string pass = weights ? "weight gradient" : "input gradient";
        Versions =
        [
            new(1, $"{pass} as an implicit GEMM on GEMM v1 (64×64 tiles): each staged value divides k and j into their coordinates" +
                   (weights ? ", the reduction cut into slices by the conv" : " and tests the stride phase with two more divisions"),
                FlopsPerSharedLoad: 2.0 * 16 / 8, FlopsPerGlobalByte: 2.0 * 64 * 64 / (4 * (64 + 64)),
                weights
                    ? [TiledKernels<ConvWeightGradProduct>.LargeEntry.Method, TiledKernels<ConvWeightGradProduct>.SmallEntry.Method]
                    : [TiledKernels<ConvInputGradProduct>.LargeEntry.Method, TiledKernels<ConvInputGradProduct>.SmallEntry.Method]),
            new(2, "v1's index math on the GEMM family's used version (128×128 tiles, 8×8 per thread, double-buffered, split-K)",
                FlopsPerSharedLoad: 2.0 * 64 / 4, FlopsPerGlobalByte: 2.0 * 128 * 128 / (4 * (128 + 128)),
                weights
                    ? [TiledKernels<ConvWeightGradProduct>.Large128Entry.Method, SplitKKernels<ConvWeightGradProduct>.Entry.Method]
                    : [TiledKernels<ConvInputGradProduct>.Large128Entry.Method, SplitKKernels<ConvInputGradProduct>.Entry.Method],
                VectorSharedLoads: true),
            new(3, weights
                    ? "v2 with the forward's index tables (per tap; per output position with its dy offset), no division per staged " +
                      "value, the reduction left to GEMM v3's split-K"
                    : "v2 with index tables (per tap; per input position) whose rows carry the stride phase, so that one unsigned " +
                      "test per axis checks phase and range: two table reads, two adds, two tests, no division",
                FlopsPerSharedLoad: 2.0 * 64 / 4, FlopsPerGlobalByte: 2.0 * 128 * 128 / (4 * (128 + 128)),
                weights
                    ? [TiledKernels<ConvWeightGradTabledProduct>.Large128Entry.Method, SplitKKernels<ConvWeightGradTabledProduct>.Entry.Method,
                       ConvTablesEntry.Method]
                    : [TiledKernels<ConvInputGradTabledProduct>.Large128Entry.Method, SplitKKernels<ConvInputGradTabledProduct>.Entry.Method,
                       ConvInputGradTablesEntry.Method],
                VectorSharedLoads: true),
        ];
        ValidationCases = [.. ConvLab.ValidationShapes.Select(c => Case(c.Name, c.Desc))];
        // The widest map and the deepest (a long, skinny weight-gradient reduction): gpu-check's lab stage has 30 s.
        BenchmarkCases = [.. ConvLab.BenchmarkShapes.Where(c => c.Name is "conv3x3_128x128" or "conv3x3_512x16").Select(c => Case(c.Name, c.Desc))];
    }

    public override string Name => _weights ? "conv_weight_grad" : "conv_input_grad";
    public override int UsedVersion => BackendVersion;
    public override IReadOnlyList<LabVersion> Versions { get; }
    public override IReadOnlyList<LabCase> ValidationCases { get; }
    public override IReadOnlyList<LabCase> BenchmarkCases { get; }

    private LabCase Case(string name, Conv2dDesc d) =>
        new(name, $"x[{d.N},{d.Cin},{d.H},{d.W}] w[{d.Cout},{d.CinPerGroup},{d.KH},{d.KW}] s{d.StrideH}{(d.Groups > 1 ? $" groups {d.Groups}" : "")}",
            d.Flops, Tolerance: 2e-6 * Math.Sqrt(_weights ? (double)d.N * d.OH * d.OW : d.CoutPerGroup * d.KH * d.KW) + 1e-5,
            device => new ConvBackwardProblem(device, d, _weights));

    private sealed class ConvBackwardProblem : LabProblem
    {
        private readonly IlgpuBackend _device;
        private readonly Conv2dDesc _d;
        private readonly bool _weights;
        private readonly float[] _x, _w, _dy;
        private readonly LabBuffers _buffers;
        private readonly Buf _xBuf, _wBuf, _dyBuf, _gradient;
        private float[]? _reference;

        public ConvBackwardProblem(IlgpuBackend device, Conv2dDesc d, bool weights)
        {
            (_device, _d, _weights) = (device, d, weights);
            _x = LabData.Uniform((long)d.N * d.Cin * d.H * d.W, 1);
            _w = LabData.Uniform((long)d.Cout * d.CinPerGroup * d.KH * d.KW, 2);
            _dy = LabData.Uniform((long)d.N * d.Cout * d.OH * d.OW, 4);
            _buffers = new LabBuffers(device);
            (_xBuf, _wBuf, _dyBuf) = (_buffers.Upload(_x), _buffers.Upload(_w), _buffers.Upload(_dy));
            _gradient = _buffers.Allocate(GradientLength);
        }

        private long GradientLength => _weights ? _w.Length : _x.Length;

        public override void Run(int version)
        {
            if (_weights) _device.ConvWeightGradVersion(version, _d, _xBuf, _dyBuf, _gradient, null);
            else _device.ConvInputGradVersion(version, _d, _dyBuf, _wBuf, _gradient);
        }

        public override float[] Result() => _buffers.Download(_gradient, GradientLength);

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu(cpu =>
        {
            var gradient = cpu.Allocate(GradientLength);
            if (_weights) cpu.Device.Conv2dBackwardWeight(_d, cpu.Upload(_x), cpu.Upload(_dy), gradient, null);
            else cpu.Device.Conv2dBackwardInput(_d, cpu.Upload(_dy), cpu.Upload(_w), gradient);
            return cpu.Download(gradient, GradientLength);
        });

        public override void Dispose() => _buffers.Dispose();
    }
}
