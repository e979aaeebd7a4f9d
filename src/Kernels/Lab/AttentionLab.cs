using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Kernels.Lab;

/// <summary>The fused attention forward, softmax(scale·Q·Kᵀ)·V with its log-sum-exp, per (batch·head), with dropout
/// on the weights (Attention/AttentionIlgpu.cs is v1, Attention/AttentionIlgpuV2.cs v2). FLOPs: 4·seq²·D per head
/// (the two products; the exponentials are not counted). The output compared is O followed by the lse.</summary>
public sealed class AttentionLab : LabFamily
{
    /// <summary>The version the ILGPU backend runs the attention forward with where the head dim fits (on every
    /// accelerator: the CPU accelerator emulates it faster than v1 too).</summary>
    public const int BackendVersion = 2;

    public override string Name => "attention";
    public override int UsedVersion => BackendVersion;

    public override IReadOnlyList<LabVersion> Versions { get; } =
    [
        // Per key a lane reads D + D shared values for D FMAs (the dot product), per dim D·2 more for the weighted V
        // rows; a group of 8 warps (8 query rows) reads K and V tiles of 32 keys: 8·32·D·4 FLOPs per 2·32·D·4 bytes.
        new(1, "a warp per query row, 8 rows per group sharing K/V tiles of one key per lane (rows padded to D + 1 floats): " +
               "each lane's score is a whole dot product from shared memory, online softmax with per-lane partial sums",
            FlopsPerSharedLoad: 1, FlopsPerGlobalByte: 4, [IlgpuBackend.AttentionForwardEntry.Method]),
        // S and P·V on the 8×8 micro-tile: per d (per key) 2 + 2 float4 loads for 64 FMAs; a block of 64 rows reads
        // K and V tiles of 64 keys: 4·64·64·D FLOPs per 2·64·D·4 bytes.
        new(2, "FlashAttention-2 block tiling: 64 query rows per group of 64 threads, K/V tiles of 64 keys through shared " +
               "memory, S = Q̃·Kᵀ and O += P·V on GEMM v2's 8×8 micro-tile (128-bit shared loads), online softmax in " +
               "registers with one O rescale per row and tile, P through shared memory (swizzled, conflict-free); head dim ≤ 64",
            FlopsPerSharedLoad: 32, FlopsPerGlobalByte: 32, [IlgpuBackend.FlashForwardEntry.Method], VectorSharedLoads: true),
    ];

    /// <summary>One row; query blocks and key tiles cut short (v2's 64, v1's 32); two heads with a dim off the float4
    /// multiple; dropout; a full 64-dim head; more blocks than groups launched on the CPU accelerator (a group takes
    /// several items). Small: the CPU accelerator emulates v1's warp per row slowly.</summary>
    public override IReadOnlyList<LabCase> ValidationCases { get; } =
    [
        Case("one", 1, 1, 8),
        Case("seq67_dim16", 1, 67, 16),
        Case("seq33_dim20_2heads", 2, 33, 20),
        Case("seq40_dim32_dropout", 1, 40, 32, dropout: 0.25f),
        Case("seq65_dim64", 1, 65, 64),
        Case("seq2_dim8_9heads", 9, 2, 8),
    ];

    /// <summary>The generator's attention (bench/: attention_b2, 2 × 16 heads of 257 tokens, head dim 64) and a longer
    /// sequence.</summary>
    public override IReadOnlyList<LabCase> BenchmarkCases { get; } =
    [
        Case("b2_h16_seq257_dim64", 32, 257, 64),
        Case("b1_h16_seq1024_dim64", 16, 1024, 64),
    ];

    private static LabCase Case(string name, int batchHeads, int seq, int dim, float dropout = 0f) =>
        new(name, $"q,k,v[{batchHeads},{seq},{dim}]{(dropout > 0 ? $" dropout {dropout}" : "")}", 4.0 * batchHeads * seq * seq * dim,
            Tolerance: 2e-5, device => new AttentionProblem(device, batchHeads, seq, dim, dropout));

    private sealed class AttentionProblem : LabProblem
    {
        private const ulong Seed = 7;
        private readonly IlgpuBackend _device;
        private readonly int _batchHeads, _seq, _dim;
        private readonly float _scale, _dropout;
        private readonly float[] _q, _k, _v;
        private readonly LabBuffers _buffers;
        private readonly Buf _qBuf, _kBuf, _vBuf, _oBuf, _lseBuf;
        private float[]? _reference;

        public AttentionProblem(IlgpuBackend device, int batchHeads, int seq, int dim, float dropout)
        {
            (_device, _batchHeads, _seq, _dim, _dropout) = (device, batchHeads, seq, dim, dropout);
            _scale = 1f / MathF.Sqrt(dim);
            long n = (long)batchHeads * seq * dim;
            // Scores of a few units, so the softmax is neither flat nor one-hot.
            (_q, _k, _v) = (LabData.Uniform(n, 1).Select(x => 3 * x).ToArray(), LabData.Uniform(n, 2), LabData.Uniform(n, 3));
            _buffers = new LabBuffers(device);
            (_qBuf, _kBuf, _vBuf) = (_buffers.Upload(_q), _buffers.Upload(_k), _buffers.Upload(_v));
            (_oBuf, _lseBuf) = (_buffers.Allocate(n), _buffers.Allocate(Rows));
        }

        private long Rows => (long)_batchHeads * _seq;

        public override void Run(int version) =>
            _device.AttentionForwardVersion(version, _batchHeads, _seq, _dim, _scale, _dropout, Seed, _qBuf, _kBuf, _vBuf, _oBuf, _lseBuf);

        public override float[] Result() => [.. _buffers.Download(_oBuf, _q.Length), .. _buffers.Download(_lseBuf, Rows)];

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu<float[]>(cpu =>
        {
            Buf o = cpu.Allocate(_q.Length), lse = cpu.Allocate(Rows);
            cpu.Device.AttentionForward(_batchHeads, _seq, _dim, _scale, _dropout, Seed, cpu.Upload(_q), cpu.Upload(_k), cpu.Upload(_v), o, lse);
            return [.. cpu.Download(o, _q.Length), .. cpu.Download(lse, Rows)];
        });

        public override void Dispose() => _buffers.Dispose();
    }
}

/// <summary>The fused attention backward: dQ, dK and dV of softmax(scale·Q·Kᵀ)·V from the forward's O and
/// log-sum-exp, with dropout regenerated from the forward's mask stream (Attention/AttentionIlgpu.cs is v1,
/// Attention/AttentionBackwardIlgpuV2.cs v2). FLOPs: 10·seq²·D per head (FlashAttention-2's count: the five products
/// S, dP, dV, dK, dQ; the recomputations of S and dP by the second pass are not counted). The inputs O and lse are the
/// CPU forward's, so that only the backward is compared; the output compared is dQ, dK, dV.</summary>
public sealed class AttentionBackwardLab : LabFamily
{
    /// <summary>The version the ILGPU backend runs the attention backward with on a GPU where the head dim fits: version
    /// 1, because ptxas 11.8 spills version 2's passes at the 255-register cap on sm_90 (bench/ptxas-check.sh: 540 / 584
    /// bytes in the key pass, 148 / 148 in the query pass). The CPU accelerator runs version 2
    /// (<see cref="Ilgpu.IlgpuLaunchSizes.For"/>).</summary>
    public const int BackendVersion = 1;

    public override string Name => "attention_backward";
    public override int UsedVersion => BackendVersion;

    public override IReadOnlyList<LabVersion> Versions { get; } =
    [
        // Two dot products and two weighted row sums per (row, key) from shared memory: one FMA per two shared loads.
        // A group of 8 warps (8 rows) reads two tiles of 32 rows per tile step; over both kernels 7 products
        // (S and dP twice): 14·8·32·D FLOPs per 4·32·D·4 bytes.
        new(1, "a warp per query row for dQ and a warp per key row for dK and dV (8 rows per group sharing tiles of one " +
               "row per lane, padded to D + 1 floats): each lane's score and dP are whole dot products from shared memory",
            FlopsPerSharedLoad: 1, FlopsPerGlobalByte: 7,
            [IlgpuBackend.RowDotEntry.Method, IlgpuBackend.AttentionQueryGradEntry.Method, IlgpuBackend.AttentionKeyValueGradEntry.Method]),
        // Every product on the 8×8 micro-tile: per d (or row) 2 + 2 float4 loads for 64 FMAs. Per 64×64 tile step the
        // key pass stages 5 tiles for 4 products and the query pass 4 tiles for 3: 7·2·64³ FLOPs per 9·64²·4 bytes.
        new(2, "FlashAttention-2 backward tiles: a key-block-outer pass (64 keys per group of 64 threads, K resident) for dK " +
               "and dV, and a query-block-outer pass (Q̃ resident) for dQ, so no float atomics; S, dP, P̃ᵀ·dO, dSᵀ·Q̃ and dS·K " +
               "on GEMM v2's 8×8 micro-tile (128-bit shared loads); head dim ≤ 64",
            FlopsPerSharedLoad: 32, FlopsPerGlobalByte: 25,
            [IlgpuBackend.RowDotEntry.Method, IlgpuBackend.FlashKeyValueGradEntry.Method, IlgpuBackend.FlashQueryGradEntry.Method], VectorSharedLoads: true),
    ];

    /// <summary>The forward's cases: one row; blocks and tiles cut short; two heads with a dim off the float4 multiple;
    /// dropout; a full 64-dim head; more blocks than groups launched on the CPU accelerator.</summary>
    public override IReadOnlyList<LabCase> ValidationCases { get; } =
    [
        Case("one", 1, 1, 8),
        Case("seq67_dim16", 1, 67, 16),
        Case("seq33_dim20_2heads", 2, 33, 20),
        Case("seq40_dim32_dropout", 1, 40, 32, dropout: 0.25f),
        Case("seq65_dim64", 1, 65, 64),
        Case("seq2_dim8_9heads", 9, 2, 8),
    ];

    /// <summary>The generator's attention (bench/: attention_b2_fb) and a longer sequence.</summary>
    public override IReadOnlyList<LabCase> BenchmarkCases { get; } =
    [
        Case("b2_h16_seq257_dim64", 32, 257, 64),
        Case("b1_h16_seq1024_dim64", 16, 1024, 64),
    ];

    private static LabCase Case(string name, int batchHeads, int seq, int dim, float dropout = 0f) =>
        new(name, $"q,k,v,dO[{batchHeads},{seq},{dim}]{(dropout > 0 ? $" dropout {dropout}" : "")}", 10.0 * batchHeads * seq * seq * dim,
            Tolerance: 2e-5, device => new AttentionBackwardProblem(device, batchHeads, seq, dim, dropout));

    private sealed class AttentionBackwardProblem : LabProblem
    {
        private const ulong Seed = 7;
        private readonly IlgpuBackend _device;
        private readonly int _batchHeads, _seq, _dim;
        private readonly float _scale, _dropout;
        private readonly float[] _q, _k, _v, _dO, _o, _lse;
        private readonly LabBuffers _buffers;
        private readonly Buf _qBuf, _kBuf, _vBuf, _dOBuf, _oBuf, _lseBuf, _dqBuf, _dkBuf, _dvBuf;
        private float[]? _reference;

        public AttentionBackwardProblem(IlgpuBackend device, int batchHeads, int seq, int dim, float dropout)
        {
            (_device, _batchHeads, _seq, _dim, _dropout) = (device, batchHeads, seq, dim, dropout);
            _scale = 1f / MathF.Sqrt(dim);
            long n = (long)batchHeads * seq * dim;
            // Scores of a few units, so the softmax is neither flat nor one-hot.
            (_q, _k, _v, _dO) = (LabData.Uniform(n, 1).Select(x => 3 * x).ToArray(), LabData.Uniform(n, 2), LabData.Uniform(n, 3), LabData.Uniform(n, 4));
            (_o, _lse) = LabBuffers.OnCpu(cpu =>
            {
                Buf o = cpu.Allocate(n), lse = cpu.Allocate(Rows);
                cpu.Device.AttentionForward(_batchHeads, _seq, _dim, _scale, _dropout, Seed, cpu.Upload(_q), cpu.Upload(_k), cpu.Upload(_v), o, lse);
                return (cpu.Download(o, n), cpu.Download(lse, Rows));
            });
            _buffers = new LabBuffers(device);
            (_qBuf, _kBuf, _vBuf, _dOBuf) = (_buffers.Upload(_q), _buffers.Upload(_k), _buffers.Upload(_v), _buffers.Upload(_dO));
            (_oBuf, _lseBuf) = (_buffers.Upload(_o), _buffers.Upload(_lse));
            (_dqBuf, _dkBuf, _dvBuf) = (_buffers.Allocate(n), _buffers.Allocate(n), _buffers.Allocate(n));
        }

        private long Rows => (long)_batchHeads * _seq;

        public override void Run(int version) =>
            _device.AttentionBackwardVersion(version, _batchHeads, _seq, _dim, _scale, _dropout, Seed,
                _qBuf, _kBuf, _vBuf, _oBuf, _lseBuf, _dOBuf, _dqBuf, _dkBuf, _dvBuf);

        public override float[] Result() =>
            [.. _buffers.Download(_dqBuf, _q.Length), .. _buffers.Download(_dkBuf, _q.Length), .. _buffers.Download(_dvBuf, _q.Length)];

        public override float[] Reference() => _reference ??= LabBuffers.OnCpu<float[]>(cpu =>
        {
            long n = _q.Length;
            Buf dq = cpu.Allocate(n), dk = cpu.Allocate(n), dv = cpu.Allocate(n);
            cpu.Device.AttentionBackward(_batchHeads, _seq, _dim, _scale, _dropout, Seed, cpu.Upload(_q), cpu.Upload(_k), cpu.Upload(_v),
                cpu.Upload(_o), cpu.Upload(_lse), cpu.Upload(_dO), dq, dk, dv);
            return [.. cpu.Download(dq, n), .. cpu.Download(dk, n), .. cpu.Download(dv, n)];
        });

        public override void Dispose() => _buffers.Dispose();
    }
}
