using MaskBit.Kernels.Cpu;
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
        private readonly Storage _xBuf, _gammaBuf, _betaBuf, _yBuf, _mean, _rstd;
        private float[]? _reference;

        public GroupNormProblem(IlgpuBackend device, GroupNormDesc d)
        {
            (_device, _d) = (device, d);
            // An offset mean makes the corrected statistics matter.
            _x = LabData.Uniform((long)d.N * d.C * d.HW, 1).Select(v => v + 3f).ToArray();
            _gamma = LabData.Uniform(d.C, 2);
            _beta = LabData.Uniform(d.C, 3);
            (_xBuf, _gammaBuf, _betaBuf) = (Put(device, _x), Put(device, _gamma), Put(device, _beta));
            _yBuf = device.Allocate(_x.Length);
            _mean = device.Allocate((long)d.N * d.Groups);
            _rstd = device.Allocate((long)d.N * d.Groups);
        }

        private static Storage Put(IBackend device, float[] values)
        {
            var storage = device.Allocate(values.Length, zero: false);
            device.Upload(values, new Buf(storage, 0));
            return storage;
        }

        public override void Run(int version) =>
            _device.NormForward(version, IlgpuBackend.GroupNormArgs(_d), new Buf(_xBuf, 0), new Buf(_gammaBuf, 0), new Buf(_betaBuf, 0),
                new Buf(_yBuf, 0), new Buf(_mean, 0), new Buf(_rstd, 0));

        public override float[] Result()
        {
            var y = new float[_x.Length];
            _device.Download(new Buf(_yBuf, 0), y);
            return y;
        }

        public override float[] Reference()
        {
            if (_reference != null) return _reference;
            var cpu = CpuBackend.Instance;
            using Storage x = Put(cpu, _x), gamma = Put(cpu, _gamma), beta = Put(cpu, _beta), y = cpu.Allocate(_x.Length),
                mean = cpu.Allocate((long)_d.N * _d.Groups), rstd = cpu.Allocate((long)_d.N * _d.Groups);
            cpu.GroupNormForward(_d, new Buf(x, 0), new Buf(gamma, 0), new Buf(beta, 0), new Buf(y, 0), new Buf(mean, 0), new Buf(rstd, 0));
            _reference = new float[_x.Length];
            cpu.Download(new Buf(y, 0), _reference);
            return _reference;
        }

        public override void Dispose()
        {
            foreach (var s in new[] { _xBuf, _gammaBuf, _betaBuf, _yBuf, _mean, _rstd }) s.Dispose();
        }
    }
}
