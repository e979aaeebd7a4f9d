using MaskBit.Kernels.Cpu;
using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Kernels.Lab;

/// <summary>The last kernel of the LFQ entropy backward: per position, the per-code weights summed over the codes
/// with each bit set and clear (Lfq/LfqIlgpu.cs; the preparation kernels are shared by both versions). The FLOPs
/// counted are the weights' ~10 double operations per (position, code).</summary>
public sealed class LfqBackwardLab : LabFamily
{
    public override string Name => "lfq_backward";
    public override int UsedVersion => IlgpuBackend.LfqBackwardVersion;

    public override IReadOnlyList<LabVersion> Versions { get; } =
    [
        // Every weight twice (row and column pass) and the 8-byte code gradient read twice per position from L2,
        // the column pass with a stride of 2^(K/2) doubles between threads: 10 FLOPs per 16 bytes.
        new(1, "a group per position; row sums (thread per low-half code) and column sums (thread per high-half code, " +
               "uncoalesced) each evaluate every code's weight and read the code-gradient table",
            FlopsPerSharedLoad: 0, FlopsPerGlobalByte: 10.0 / 16,
            [.. IlgpuBackend.LfqBackwardPreparation, IlgpuBackend.LfqBackwardEntry.Method]),
        // One weight per (position, code), one shared read-modify-write of the position's row sum per weight; the code
        // gradient read once (coalesced) per tile of 8 positions: 10 FLOPs per 8/8 bytes.
        new(2, "a group per tile of up to 8 positions walking the high-half codes: coalesced code-gradient reads shared by " +
               "the tile, each weight once, row sums in shared memory owned by one thread, column sums by warp shuffles",
            FlopsPerSharedLoad: 10, FlopsPerGlobalByte: 10,
            [.. IlgpuBackend.LfqBackwardPreparation, IlgpuBackend.LfqBackwardTiledEntry.Method]),
    ];

    /// <summary>One bit (no low half), an odd split, a tile cut short (10 positions).</summary>
    public override IReadOnlyList<LabCase> ValidationCases { get; } =
        [Case("bits1", 2, 1, 5), Case("bits5", 2, 5, 5), Case("bits9", 2, 9, 5)];

    /// <summary>The 12-bit tokenizer's latents (16×16, batch 8) and the 18 bits.</summary>
    public override IReadOnlyList<LabCase> BenchmarkCases { get; } =
        [Case("bits12_b8_16x16", 8, 12, 256), Case("bits18_b2_16x16", 2, 18, 256)];

    private static LabCase Case(string name, int batch, int bits, int hw) =>
        new(name, $"z ({batch}, {bits}, {hw})", 10.0 * batch * hw * (1L << bits), Tolerance: 2e-5,
            device => new LfqProblem(device, batch, bits, hw));

    private sealed class LfqProblem : LabProblem
    {
        private const float InvTemperature = 2f;
        private readonly IlgpuBackend _device;
        private readonly int _batch, _bits, _hw;
        private readonly float[] _z, _upstream = [0.7f, -1.3f];
        private readonly LabBuffers _buffers;
        private readonly Buf _zBuf, _avg, _up, _dz;
        private float[]? _reference;

        public LfqProblem(IlgpuBackend device, int batch, int bits, int hw)
        {
            (_device, _batch, _bits, _hw) = (device, batch, bits, hw);
            _z = LabData.Uniform((long)batch * bits * hw, bits);
            _buffers = new LabBuffers(device);
            (_zBuf, _up) = (_buffers.Upload(_z), _buffers.Upload(_upstream));
            (_avg, _dz) = (_buffers.Allocate(1L << bits), _buffers.Allocate(_z.Length));
            device.LfqEntropyForward(batch, bits, hw, InvTemperature, _zBuf, _avg, _buffers.Allocate(2));
        }

        public override void Run(int version) =>
            _device.LfqEntropyBackward(version, _batch, _bits, _hw, InvTemperature, _zBuf, _avg, _up, _dz);

        public override float[] Result() => _buffers.Download(_dz, _z.Length);

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu(cpu =>
        {
            Buf z = cpu.Upload(_z), avg = cpu.Allocate(1L << _bits), dz = cpu.Allocate(_z.Length);
            var lfq = CpuBackend.Instance;
            lfq.LfqEntropyForward(_batch, _bits, _hw, InvTemperature, z, avg, cpu.Allocate(2));
            lfq.LfqEntropyBackward(_batch, _bits, _hw, InvTemperature, z, avg, cpu.Upload(_upstream), dz);
            return cpu.Download(dz, _z.Length);
        });

        public override void Dispose() => _buffers.Dispose();
    }
}
