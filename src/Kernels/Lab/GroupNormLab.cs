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

/// <summary>The GroupNorm backward (Norm/NormIlgpu.cs): dx, dγ and dβ from x, dy and the forward's statistics. FLOPs:
/// ~12 per element (x̂, dv, the two sums; dx). Bytes: v1 reads x and dy three times (plane sums; the input gradient's
/// two passes) and writes dx once, 28 bytes per element; v2 reads them twice (plane sums; dx), 20 bytes.</summary>
public sealed class GroupNormBackwardLab : LabFamily
{
    public override string Name => "groupnorm_backward";
    public override int UsedVersion => IlgpuBackend.NormBackwardVersion;

    public override IReadOnlyList<LabVersion> Versions { get; } =
    [
        new(1, "a group per (n, c) plane sums dv·x̂ and dv (the γ/β gradients), then a group per (sample, group) run reads x " +
               "and dy twice more for dx (its two sums, then dx): a batch of a few samples × 32 groups leaves most of the GPU idle",
            FlopsPerSharedLoad: 0, FlopsPerGlobalByte: 12.0 / 28, [IlgpuBackend.GroupNormPlaneSumsEntry.Method, IlgpuBackend.NormInputGradEntry.Method]),
        new(2, "planes cut into chunks across groups for the sums (partials summed in chunk order); dx's two run sums taken " +
               "from the plane sums (Σ_c γ_c·plane sum, a thread per run), then dx in one pass, a group per (plane, chunk)",
            FlopsPerSharedLoad: 0, FlopsPerGlobalByte: 12.0 / 20,
            [IlgpuBackend.GroupNormPlaneSumsEntry.Method, IlgpuBackend.GroupNormRunCoefficientsEntry.Method, IlgpuBackend.GroupNormChunkInputGradEntry.Method]),
    ];

    /// <summary>The forward's cases, and two planes of 700 (cut into chunks even on the CPU accelerator's four groups).</summary>
    public override IReadOnlyList<LabCase> ValidationCases { get; } =
    [
        Case(new GroupNormDesc(N: 1, C: 3, HW: 171, Groups: 1, Eps: 1e-6f, FuseSilu: true)),
        Case(new GroupNormDesc(N: 1, C: 4, HW: 301, Groups: 2, Eps: 1e-5f)),
        Case(new GroupNormDesc(N: 2, C: 6, HW: 5, Groups: 3, Eps: 1e-5f)),
        Case(new GroupNormDesc(N: 1, C: 2, HW: 700, Groups: 1, Eps: 1e-6f, FuseSilu: true)),
    ];

    public override IReadOnlyList<LabCase> BenchmarkCases { get; } =
    [
        Case(new GroupNormDesc(N: 8, C: 128, HW: 256 * 256, Groups: 32, Eps: 1e-6f, FuseSilu: true)),
        Case(new GroupNormDesc(N: 1, C: 512, HW: 16 * 16, Groups: 32, Eps: 1e-6f)),
    ];

    private static LabCase Case(GroupNormDesc d) =>
        new($"gn_bwd_{d.N}x{d.C}x{d.HW}_g{d.Groups}{(d.FuseSilu ? "_silu" : "")}", $"x ({d.N}, {d.C}, {d.HW}), {d.Groups} groups{(d.FuseSilu ? ", SiLU" : "")}",
            12.0 * d.N * d.C * d.HW, Tolerance: 2e-5 * Math.Sqrt(d.C / d.Groups * d.HW / 64.0 + 1), device => new GroupNormBackwardProblem(device, d));

    /// <summary>The output compared is dx, dγ and dβ one after another; both sides start from the CPU forward's
    /// statistics.</summary>
    private sealed class GroupNormBackwardProblem : LabProblem
    {
        private readonly IlgpuBackend _device;
        private readonly GroupNormDesc _d;
        private readonly float[] _x, _gamma, _beta, _dy, _mean, _rstd;
        private readonly LabBuffers _buffers;
        private readonly Buf[] _inputs;
        private readonly Buf _dx, _dgamma, _dbeta;
        private float[]? _reference;

        public GroupNormBackwardProblem(IlgpuBackend device, GroupNormDesc d)
        {
            (_device, _d) = (device, d);
            _x = LabData.Uniform((long)d.N * d.C * d.HW, 1).Select(v => v + 3f).ToArray();
            _gamma = LabData.Uniform(d.C, 2);
            _beta = LabData.Uniform(d.C, 3);
            _dy = LabData.Uniform(_x.Length, 4);
            long runs = (long)d.N * d.Groups;
            (_mean, _rstd) = LabBuffers.OnCpu(cpu =>
            {
                Buf mean = cpu.Allocate(runs), rstd = cpu.Allocate(runs);
                cpu.Device.GroupNormForward(d, cpu.Upload(_x), cpu.Upload(_gamma), cpu.Upload(_beta), cpu.Allocate(_x.Length), mean, rstd);
                return (cpu.Download(mean, runs), cpu.Download(rstd, runs));
            });
            _buffers = new LabBuffers(device);
            _inputs = Upload(_buffers);
            (_dx, _dgamma, _dbeta) = (_buffers.Allocate(_x.Length), _buffers.Allocate(d.C), _buffers.Allocate(d.C));
        }

        private Buf[] Upload(LabBuffers buffers) => [.. new[] { _x, _gamma, _beta, _mean, _rstd, _dy }.Select(buffers.Upload)];

        /// <summary>dx, dγ and dβ one after another.</summary>
        private float[] Gradients(LabBuffers buffers, Buf dx, Buf dgamma, Buf dbeta) =>
            [.. buffers.Download(dx, _x.Length), .. buffers.Download(dgamma, _d.C), .. buffers.Download(dbeta, _d.C)];

        public override void Run(int version)
        {
            var b = _inputs;
            _device.GroupNormBackward(version, IlgpuBackend.GroupNormArgs(_d), b[0], b[1], b[2], b[3], b[4], b[5], _dx, _dgamma, _dbeta);
        }

        public override float[] Result() => Gradients(_buffers, _dx, _dgamma, _dbeta);

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu(cpu =>
        {
            var b = Upload(cpu);
            Buf dx = cpu.Allocate(_x.Length), dgamma = cpu.Allocate(_d.C), dbeta = cpu.Allocate(_d.C);
            cpu.Device.GroupNormBackward(_d, b[0], b[1], b[2], b[3], b[4], b[5], dx, dgamma, dbeta);
            return Gradients(cpu, dx, dgamma, dbeta);
        });

        public override void Dispose() => _buffers.Dispose();
    }
}
