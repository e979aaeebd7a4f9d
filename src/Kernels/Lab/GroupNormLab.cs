using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Kernels.Lab;

/// <summary>The GroupNorm (and LayerNorm) forward (Norm/NormIlgpu.cs). FLOPs: ~8 per element (sum; deviation and
/// square; normalise and affine). Bytes: both versions read x three times (v1: sum, deviations, normalise; v2: the
/// chunk's two statistics passes, the second from cache, and the normalise) and write y once: 16 bytes per element.
/// v2 changes the parallelism, not the intensity.</summary>
public sealed class GroupNormLab : LabFamily
{
    public override string Name => "groupnorm";
    public override int UsedVersion => IlgpuBackend.NormForwardVersion;

    public override IReadOnlyList<LabVersion> Versions { get; } =
    [
        new(1, "a group per (sample, group) run: three passes over the run (sum, corrected deviations, normalise); a batch " +
               "of a few samples × 32 groups leaves most of the GPU idle",
            FlopsPerSharedLoad: 0, FlopsPerGlobalByte: 0.5, [IlgpuBackend.NormForwardEntry.Method]),
        new(2, "v1 where the runs fill the device, else each run split into chunks across groups: per-chunk mean and M2, " +
               "then every group of a run combines them in chunk order (Chan et al.) and normalises its chunk",
            FlopsPerSharedLoad: 0, FlopsPerGlobalByte: 0.5,
            [IlgpuBackend.NormForwardEntry.Method, IlgpuBackend.NormChunkStatsEntry.Method, IlgpuBackend.NormChunkApplyEntry.Method]),
    ];

    /// <summary>A single run split into uneven chunks (with SiLU), two runs, runs enough not to split.</summary>
    public override IReadOnlyList<LabCase> ValidationCases { get; } =
    [
        Case(new GroupNormDesc(N: 1, C: 3, HW: 171, Groups: 1, Eps: 1e-6f, FuseSilu: true)),
        Case(new GroupNormDesc(N: 1, C: 4, HW: 301, Groups: 2, Eps: 1e-5f)),
        Case(new GroupNormDesc(N: 2, C: 6, HW: 5, Groups: 3, Eps: 1e-5f)),
    ];

    /// <summary>The tokenizer's GroupNorms (32 groups): the first stage at 256×256 with 128 channels (batch 8), and the
    /// 16×16 middle with 512 channels (batch 1).</summary>
    public override IReadOnlyList<LabCase> BenchmarkCases { get; } =
    [
        Case(new GroupNormDesc(N: 8, C: 128, HW: 256 * 256, Groups: 32, Eps: 1e-6f, FuseSilu: true)),
        Case(new GroupNormDesc(N: 1, C: 512, HW: 16 * 16, Groups: 32, Eps: 1e-6f)),
    ];

    private static LabCase Case(GroupNormDesc d) =>
        new($"gn_{d.N}x{d.C}x{d.HW}_g{d.Groups}{(d.FuseSilu ? "_silu" : "")}", $"x ({d.N}, {d.C}, {d.HW}), {d.Groups} groups{(d.FuseSilu ? ", SiLU" : "")}",
            8.0 * d.N * d.C * d.HW, Tolerance: 2e-5, device => new GroupNormProblem(device, d));

    private sealed class GroupNormProblem : LabProblem
    {
        private readonly IlgpuBackend _device;
        private readonly GroupNormDesc _d;
        private readonly float[] _x, _gamma, _beta;
        private readonly LabBuffers _buffers;
        private readonly Buf _xBuf, _gammaBuf, _betaBuf, _yBuf, _mean, _rstd;
        private float[]? _reference;

        public GroupNormProblem(IlgpuBackend device, GroupNormDesc d)
        {
            (_device, _d) = (device, d);
            // An offset mean makes the corrected statistics matter.
            _x = LabData.Uniform((long)d.N * d.C * d.HW, 1).Select(v => v + 3f).ToArray();
            _gamma = LabData.Uniform(d.C, 2);
            _beta = LabData.Uniform(d.C, 3);
            _buffers = new LabBuffers(device);
            (_xBuf, _gammaBuf, _betaBuf) = (_buffers.Upload(_x), _buffers.Upload(_gamma), _buffers.Upload(_beta));
            (_yBuf, _mean, _rstd) = (_buffers.Allocate(_x.Length), _buffers.Allocate(Statistics), _buffers.Allocate(Statistics));
        }

        private long Statistics => (long)_d.N * _d.Groups;

        public override void Run(int version) =>
            _device.NormForward(version, IlgpuBackend.GroupNormArgs(_d), _xBuf, _gammaBuf, _betaBuf, _yBuf, _mean, _rstd);

        public override float[] Result() => _buffers.Download(_yBuf, _x.Length);

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu(cpu =>
        {
            var y = cpu.Allocate(_x.Length);
            cpu.Device.GroupNormForward(_d, cpu.Upload(_x), cpu.Upload(_gamma), cpu.Upload(_beta), y, cpu.Allocate(Statistics), cpu.Allocate(Statistics));
            return cpu.Download(y, _x.Length);
        });

        public override void Dispose() => _buffers.Dispose();
    }
}
