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
        private readonly Storage _zBuf, _avg, _result, _up, _dz;
        private float[]? _reference;

        public LfqProblem(IlgpuBackend device, int batch, int bits, int hw)
        {
            (_device, _batch, _bits, _hw) = (device, batch, bits, hw);
            _z = LabData.Uniform((long)batch * bits * hw, bits);
            _zBuf = Put(device, _z);
            _avg = device.Allocate(1L << bits);
            _result = device.Allocate(2);
            _up = Put(device, _upstream);
            _dz = device.Allocate(_z.Length);
            device.LfqEntropyForward(batch, bits, hw, InvTemperature, new Buf(_zBuf, 0), new Buf(_avg, 0), new Buf(_result, 0));
        }

        private static Storage Put(IBackend device, float[] values)
        {
            var storage = device.Allocate(values.Length, zero: false);
            device.Upload(values, new Buf(storage, 0));
            return storage;
        }

        public override void Run(int version) =>
            _device.LfqEntropyBackward(version, _batch, _bits, _hw, InvTemperature, new Buf(_zBuf, 0), new Buf(_avg, 0), new Buf(_up, 0), new Buf(_dz, 0));

        public override float[] Result()
        {
            var dz = new float[_z.Length];
            _device.Download(new Buf(_dz, 0), dz);
            return dz;
        }

        public override float[] Reference()
        {
            if (_reference != null) return _reference;
            var cpu = CpuBackend.Instance;
            using Storage z = Put(cpu, _z), avg = cpu.Allocate(1L << _bits), result = cpu.Allocate(2), up = Put(cpu, _upstream), dz = cpu.Allocate(_z.Length);
            cpu.LfqEntropyForward(_batch, _bits, _hw, InvTemperature, new Buf(z, 0), new Buf(avg, 0), new Buf(result, 0));
            cpu.LfqEntropyBackward(_batch, _bits, _hw, InvTemperature, new Buf(z, 0), new Buf(avg, 0), new Buf(up, 0), new Buf(dz, 0));
            _reference = new float[_z.Length];
            cpu.Download(new Buf(dz, 0), _reference);
            return _reference;
        }

        public override void Dispose()
        {
            _zBuf.Dispose();
            _avg.Dispose();
            _result.Dispose();
            _up.Dispose();
            _dz.Dispose();
        }
    }
}
