using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Kernels.Lab;

/// <summary>Axis sums over a contiguous (outer, mid, inner) view (Elementwise/ReduceIlgpu.cs): the versions are
/// launch policies over the same loops, so their intensities are equal (one add per 4-byte load: memory-bound);
/// what differs is how many threads a short reduction leaves idle.</summary>
public sealed class ReduceLab : LabFamily
{
    public override string Name => "reduce";
    public override int UsedVersion => IlgpuBackend.ReduceVersion;

    public override IReadOnlyList<LabVersion> Versions { get; } =
    [
        new(1, "a 256-thread group per output for contiguous rows or fewer outputs than the device has threads, else a " +
               "thread per output (an output of 4–30 values leaves most of its group idle)",
            FlopsPerSharedLoad: 0, FlopsPerGlobalByte: 0.25,
            [IlgpuBackend.SumGroupEntry.Method, IlgpuBackend.SumThreadEntry.Method]),
        new(2, "by the reduced length: a thread per output for mid ≤ 16 and for strided reductions up to mid 256, a warp " +
               "per output (shuffles only) for contiguous rows up to 4096, a group per output beyond",
            FlopsPerSharedLoad: 0, FlopsPerGlobalByte: 0.25,
            [IlgpuBackend.SumGroupEntry.Method, IlgpuBackend.SumWarpEntry.Method, IlgpuBackend.SumThreadEntry.Method]),
    ];

    /// <summary>Every launch shape of both versions, with outputs left off the warp and group multiples.</summary>
    public override IReadOnlyList<LabCase> ValidationCases { get; } =
        [Case(3, 5, 1), Case(2, 16, 3), Case(4, 100, 1), Case(2, 5000, 1), Case(2, 20, 9), Case(3, 300, 7), Case(1, 1, 1)];

    /// <summary>The models' reductions: short rows (per-head and per-group statistics), the LFQ forward's
    /// per-chunk code sums, GroupNorm's γ/β partials over samples, a bias gradient and a loss mean.</summary>
    public override IReadOnlyList<LabCase> BenchmarkCases { get; } =
    [
        Case(65536, 8, 1), Case(16384, 30, 1), Case(8192, 1024, 1), Case(1, 16, 4096), Case(1, 8, 512),
        Case(1, 8192, 1024), Case(1, 1 << 20, 1),
    ];

    private static LabCase Case(int outer, int mid, int inner) =>
        new($"sum_{outer}x{mid}x{inner}", $"(outer {outer}, mid {mid}, inner {inner})", (double)outer * mid * inner,
            Tolerance: 1e-6 * Math.Sqrt(mid) + 1e-6, device => new ReduceProblem(device, outer, mid, inner));

    private sealed class ReduceProblem : LabProblem
    {
        private readonly IlgpuBackend _device;
        private readonly int _outer, _mid, _inner;
        private readonly float[] _x;
        private readonly LabBuffers _buffers;
        private readonly Buf _xBuf, _yBuf;
        private float[]? _reference;

        public ReduceProblem(IlgpuBackend device, int outer, int mid, int inner)
        {
            (_device, _outer, _mid, _inner) = (device, outer, mid, inner);
            _x = LabData.Uniform((long)outer * mid * inner, mid);
            _buffers = new LabBuffers(device);
            _xBuf = _buffers.Upload(_x);
            _yBuf = _buffers.Allocate(OutputLength);
        }

        private long OutputLength => (long)_outer * _inner;

        public override void Run(int version) =>
            _device.Reduce(version, _xBuf, _yBuf, new IlgpuBackend.ReduceArgs { Outer = _outer, Mid = _mid, Inner = _inner, Scale = 1f }, max: false);

        public override float[] Result() => _buffers.Download(_yBuf, OutputLength);

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu(cpu =>
        {
            var y = cpu.Allocate(OutputLength);
            cpu.Device.ReduceSum(cpu.Upload(_x), y, _outer, _mid, _inner);
            return cpu.Download(y, OutputLength);
        });

        public override void Dispose() => _buffers.Dispose();
    }
}
