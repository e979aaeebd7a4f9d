using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Lookup-free quantization on an ILGPU accelerator, with the CPU kernel's streamed algorithm (Lfq/LfqCpu.cs):
// a position's softmax over the 2^K codes factorises over bits, p(c) = A[c_hi]·B[c_lo] (and log p = log A +
// log B) with A and B products over the two halves of the bits, so no N×2^K matrix is ever stored; every code
// is still visited, because the clamp in log(max(p, 1e-5)) does not factorise.
//
// - Forward: a group owns a block of codes (one low-half code per thread × HiPerThread high-half codes) and a
//   chunk of positions; it stages each position's per-bit probabilities and the A entries of its block in
//   shared memory, accumulates its codes' probabilities (for the mean distribution p̄) and Σ p·clog p, and
//   writes per-chunk partial sums that a reduction combines (deterministic: no atomics).
// - Backward, in double (see the backward's section): per-bit probabilities and the half-code tables of every
//   position (O(N·2^(K/2))), p̄ and each code's batch-term gradient (O(2^K)), then a group per position sums the
//   per-code gradient weights over rows (per low-half code) and over columns (per high-half code), from which each
//   bit's gradient follows as in the CPU kernel: weights measured from the most probable code, and each bit's
//   gradient from the sums over codes with the bit set and clear (no cancelling totals). Two versions of that last
//   kernel (the kernel lab's "lfq_backward" family): v1 a group per position, v2 a group per tile of positions
//   (see LfqEntropyBackwardTiledKernel); the backend runs LfqBackwardVersion.
public sealed partial class IlgpuBackend
{
    /// <summary>The most bits the ILGPU LFQ kernels take (the backward keeps two 2^(K/2) sums in shared memory).</summary>
    internal const int MaxLfqBits = 20;
    private const int MaxLfqHalfCodes = 1 << ((MaxLfqBits + 1) / 2);
    /// <summary>Per bit: q(+1), q(−1), log q(+1), log q(−1).</summary>
    private const int LfqBitValues = 4;

    /// <summary>Geometry of the entropy forward as compile-time constants (shared memory is sized by them).</summary>
    internal interface ILfqTile
    {
        /// <summary>Threads per group (a power of two).</summary>
        int Threads { get; }
        /// <summary>High-half codes per thread: the amortisation of each thread's B[c_lo] over codes.</summary>
        int HiPerThread { get; }
        /// <summary>Positions staged in shared memory at a time.</summary>
        int Positions { get; }
    }

    /// <summary>The tile of narrow groups (the CPU accelerator): many high-half codes per thread, so few groups
    /// (the emulator pays for every barrier in every thread; 18 bits take 128 groups, not 2048).</summary>
    internal readonly struct LfqTile32 : ILfqTile
    {
        public int Threads => 32;
        public int HiPerThread => 64;
        public int Positions => 8;
    }

    internal readonly struct LfqTile256 : ILfqTile
    {
        public int Threads => 256;
        public int HiPerThread => 16;
        public int Positions => 16;
    }

    public struct LfqArgs
    {
        public int Batch, Bits, HW;
        public float InvTemperature, LogEps;
        /// <summary>Forward: low-half bits (one code per thread), blocks of high-half codes, position chunks.</summary>
        public int LoBits, HiBlocks, ChunkLength;
        /// <summary>Finish: the number of partial entropies.</summary>
        public int Partials;
        /// <summary>Backward v2: positions per group.</summary>
        public int TilePositions;

        public readonly int Positions => Batch * HW;
        /// <summary>Offset of z[b, 0, s] for position b·HW + s.</summary>
        public readonly int ZBase(int position)
        {
            int b = position / HW;
            return b * Bits * HW + position - b * HW;
        }
    }

    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, LfqArgs> LfqQuantizeEntry = LfqQuantizeKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, LfqArgs> LfqPartialsSmallEntry = LfqEntropyPartialsKernel<LfqTile32>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, LfqArgs> LfqPartialsLargeEntry = LfqEntropyPartialsKernel<LfqTile256>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, LfqArgs> LfqFinishEntry = LfqEntropyFinishKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<double>, LfqArgs> LfqBitValuesEntry = LfqBitValuesKernel;
    internal static readonly Action<ArrayView<double>, ArrayView<double>, LfqArgs> LfqHalfTablesEntry = LfqHalfTablesKernel;
    internal static readonly Action<ArrayView<double>, ArrayView<float>, ArrayView<double>, LfqArgs> LfqCodeGradEntry = LfqCodeGradKernel;
    internal static readonly Action<ArrayView<double>, ArrayView<double>, ArrayView<double>, ArrayView<float>, ArrayView<float>, LfqArgs> LfqBackwardEntry = LfqEntropyBackwardKernel;
    internal static readonly Action<ArrayView<double>, ArrayView<double>, ArrayView<double>, ArrayView<float>, ArrayView<float>, LfqArgs> LfqBackwardTiledEntry = LfqEntropyBackwardTiledKernel;

    /// <summary>The backward's kernels before its last (both versions launch them).</summary>
    internal static System.Reflection.MethodInfo[] LfqBackwardPreparation =>
        [LfqBitValuesEntry.Method, LfqHalfTablesEntry.Method, LfqCodeGradEntry.Method];

    /// <summary>The version of the backward's last kernel the backend runs (the kernel lab's lfq_backward family).</summary>
    internal const int LfqBackwardVersion = 2;

    private static LfqArgs LfqShape(int batch, int bits, int hw, float invTemperature)
    {
        if (bits < 1 || bits > MaxLfqBits) throw new NotSupportedException($"LFQ with {bits} bits: the ILGPU kernels take 1 to {MaxLfqBits}");
        if ((long)batch * bits * hw > int.MaxValue) throw new NotSupportedException($"LFQ input ({batch}, {bits}, {hw}) exceeds 32-bit indexing");
        return new LfqArgs { Batch = batch, Bits = bits, HW = hw, InvTemperature = invTemperature, LogEps = MathF.Log(LfqEntropyEps) };
    }

    /// <summary>The reference's clamp bound, float32(1e-5).</summary>
    private const float LfqEntropyEps = 1e-5f;

    /// <summary>Groups of the quantizer: each writes one partial commitment sum, summed by a reduction.</summary>
    public void LfqQuantize(int batch, int bits, int hw, Buf z, Buf zq, Buf indices, Buf commitmentSum)
    {
        var args = LfqShape(batch, bits, hw, 1f);
        int n = args.Positions;
        if (n == 0) { Fill(commitmentSum, 1, 0f); return; }
        long groups = Math.Clamp(((long)n + Sizes.ReduceGroup - 1) / Sizes.ReduceGroup, 1, Math.Max(1, (long)Sizes.MaxElementGroups * Sizes.ElementGroup / Sizes.ReduceGroup));
        using var partials = Allocate(groups, DType.Float32, zero: false);
        long size = (long)n * bits;
        Kernel(LfqQuantizeEntry)(new KernelConfig((int)groups, Sizes.ReduceGroup),
            F(z, size), F(zq, size), I(indices, n), F(new Buf(partials, 0), groups), args);
        ReduceSum(new Buf(partials, 0), commitmentSum, 1, (int)groups, 1);
    }

    public void LfqEntropyForward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf result)
    {
        var args = LfqShape(batch, bits, hw, invTemperature);
        int n = args.Positions, codes = 1 << bits;
        bool large = Sizes.ReduceGroup >= default(LfqTile256).Threads;
        int threads = large ? default(LfqTile256).Threads : default(LfqTile32).Threads;
        int hiPerThread = large ? default(LfqTile256).HiPerThread : default(LfqTile32).HiPerThread;
        int stagedPositions = large ? default(LfqTile256).Positions : default(LfqTile32).Positions;

        args.LoBits = Math.Min(bits, System.Numerics.BitOperations.Log2((uint)threads));
        int hiPerGroup = (threads >> args.LoBits) * hiPerThread, hiCodes = 1 << (bits - args.LoBits);
        args.HiBlocks = (hiCodes + hiPerGroup - 1) / hiPerGroup;
        // Enough position chunks to fill the device; each chunk at least one staging round.
        int chunks = (int)Math.Clamp(Sizes.MaxElementGroups / args.HiBlocks, 1, Math.Max(1, (n + stagedPositions - 1) / stagedPositions));
        args.ChunkLength = Math.Max(1, (n + chunks - 1) / chunks);
        chunks = Math.Max(1, (n + args.ChunkLength - 1) / args.ChunkLength);
        int groups = args.HiBlocks * chunks;

        using var partialProbs = Allocate((long)chunks * codes, DType.Float32, zero: false);
        using var partialEntropy = Allocate(groups, DType.Float32, zero: false);
        var zv = F(z, (long)n * bits);
        var pv = F(new Buf(partialProbs, 0), (long)chunks * codes);
        var ev = F(new Buf(partialEntropy, 0), groups);
        var kernel = large
            ? Kernel(LfqPartialsLargeEntry)
            : Kernel(LfqPartialsSmallEntry);
        kernel(new KernelConfig(groups, threads), zv, pv, ev, args);
        ReduceSum(new Buf(partialProbs, 0), avgProbs, 1, chunks, codes, scale: 1f / n);
        args.Partials = groups;
        Kernel(LfqFinishEntry)(new KernelConfig(1, Sizes.ReduceGroup),
            ev, F(avgProbs, codes), F(result, 2), args);
    }

    public void LfqEntropyBackward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf dResult, Buf dz) =>
        LfqEntropyBackward(LfqBackwardVersion, batch, bits, hw, invTemperature, z, avgProbs, dResult, dz);

    /// <summary><see cref="LfqEntropyBackward(int, int, int, float, Buf, Buf, Buf, Buf)"/> with the given version of its
    /// last kernel (1: a group per position; 2: a group per tile of positions).</summary>
    internal void LfqEntropyBackward(int version, int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf dResult, Buf dz)
    {
        var args = LfqShape(batch, bits, hw, invTemperature);
        args.LoBits = bits / 2;
        int n = args.Positions, codes = 1 << bits;
        int halfCodes = (1 << (bits - args.LoBits)) + (1 << args.LoBits);
        // Double scratch, allocated as pairs of floats: O(N·K + N·2^(K/2) + 2^K), never N·2^K.
        using var bitValues = Allocate(2L * n * bits * LfqBitDoubles, DType.Float32, zero: false);
        using var halfTables = Allocate(2L * n * halfCodes * 2, DType.Float32, zero: false);
        using var codeGrad = Allocate(2L * codes, DType.Float32, zero: false);
        var bv = F(new Buf(bitValues, 0), 2L * n * bits * LfqBitDoubles).Cast<double>();
        var tv = F(new Buf(halfTables, 0), 2L * n * halfCodes * 2).Cast<double>();
        var hv = F(new Buf(codeGrad, 0), 2L * codes).Cast<double>();
        var upstream = F(dResult, 2);
        Kernel(LfqBitValuesEntry)(GridStride((long)n * bits, Sizes.ElementGroup), F(z, (long)n * bits), bv, args);
        Kernel(LfqHalfTablesEntry)(GridStride((long)n * halfCodes, Sizes.ElementGroup), bv, tv, args);
        Kernel(LfqCodeGradEntry)(GridStride(codes, Sizes.ElementGroup), tv, upstream, hv, args);
        long groupCap = Math.Max(1, (long)Sizes.MaxElementGroups * Sizes.ElementGroup / Sizes.ReduceGroup);
        if (version == 1)
        {
            Kernel(LfqBackwardEntry)(new KernelConfig((int)Math.Clamp(n, 1, groupCap), Sizes.ReduceGroup), bv, tv, hv, upstream, F(dz, (long)n * bits), args);
            return;
        }
        if (version != 2) throw new ArgumentOutOfRangeException(nameof(version), version, "LFQ backward versions are 1 and 2");
        if (Sizes.ReduceGroup / _accelerator.WarpSize > MaxWarpsPerGroup)
            throw new NotSupportedException($"LFQ backward v2 needs at most {MaxWarpsPerGroup} warps per group");
        args.TilePositions = Math.Min(LfqTileMaxPositions, LfqTileRowSums >> args.LoBits);
        long tiles = (n + args.TilePositions - 1) / args.TilePositions;
        Kernel(LfqBackwardTiledEntry)(new KernelConfig((int)Math.Clamp(tiles, 1, groupCap), Sizes.ReduceGroup), bv, tv, hv, upstream, F(dz, (long)n * bits), args);
    }

    // ---- kernels ------------------------------------------------------------------------------------------
    /// <summary>A thread per position (consecutive threads read consecutive positions of each channel).</summary>
    internal static void LfqQuantizeKernel(ArrayView<float> z, ArrayView<float> zq, ArrayView<int> indices, ArrayView<float> partials, LfqArgs a)
    {
        var warpPartials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        float sum = 0f;
        for (int pos = Grid.GlobalIndex.X; pos < a.Positions; pos = GridStrideNext(pos, a.Positions, GridStrideStep))
        {
            int zBase = a.ZBase(pos), index = 0;
            for (int k = 0; k < a.Bits; k++)
            {
                float v = z[zBase + k * a.HW];
                float q = v > 0f ? 1f : -1f;
                zq[zBase + k * a.HW] = q;
                if (v > 0f) index |= 1 << k;
                float d = q - v;
                sum += d * d;
            }
            indices[pos] = index;
        }
        sum = GroupReduce(default(SumReduction), sum, warpPartials);
        if (Group.IdxX == 0) partials[Grid.IdxX] = sum;
    }

    /// <summary>Stores q(±1) of a bit with logit x = 4·z/T, and their logs, without cancellation:
    /// q(+1) = σ(x), log σ(x) = −log(1 + e^−x).</summary>
    private static void StageBit(ArrayView<float> stage, int at, float x)
    {
        float e = XMath.Exp(-XMath.Abs(x));
        float softplus = XMath.Log(1f + e);   // log(1 + e^−|x|)
        float big = 1f / (1f + e), small = e / (1f + e);
        bool positive = x >= 0f;
        stage[at] = positive ? big : small;
        stage[at + 1] = positive ? small : big;
        stage[at + 2] = positive ? -softplus : x - softplus;
        stage[at + 3] = positive ? -x - softplus : -softplus;
    }

    /// <summary>Π and Σ log over bits [first, first + count) of the staged per-bit values, picked by code's bits.</summary>
    private static void HalfCode(ArrayView<float> stage, int bitBase, int first, int count, int code, out float product, out float logProduct)
    {
        product = 1f;
        logProduct = 0f;
        for (int k = 0; k < count; k++)
        {
            int at = (bitBase + first + k) * LfqBitValues + ((code >> k & 1) != 0 ? 0 : 1);
            product *= stage[at];
            logProduct += stage[at + 2];
        }
    }

    internal static void LfqEntropyPartialsKernel<TTile>(ArrayView<float> z, ArrayView<float> partialProbs, ArrayView<float> partialEntropy, LfqArgs a)
        where TTile : struct, ILfqTile
    {
        var tile = default(TTile);
        int threads = tile.Threads, hiPerThread = tile.HiPerThread, staged = tile.Positions;
        var bitStage = SharedMemory.Allocate<float>(tile.Positions * MaxLfqBits * LfqBitValues);
        var hiStage = SharedMemory.Allocate<float>(tile.Positions * tile.HiPerThread * 2);   // [position][u]: A, log A
        var probSums = SharedMemory.Allocate<float>(tile.HiPerThread * tile.Threads);     // [h][thread]
        var warpPartials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);

        int tid = Group.IdxX, loBits = a.LoBits, hiBits = a.Bits - loBits;
        int lo = tid & ((1 << loBits) - 1), slot = tid >> loBits;
        int hiCodes = 1 << hiBits, hiPerGroup = (threads >> loBits) * hiPerThread, codes = 1 << a.Bits;
        int positions = a.Positions;
        float entropy = 0f;
        for (int block = Grid.IdxX; block < a.HiBlocks * ((positions + a.ChunkLength - 1) / a.ChunkLength); block += Grid.DimX)
        {
            int chunk = block / a.HiBlocks, hiBase = (block - chunk * a.HiBlocks) * hiPerGroup, myHi = hiBase + slot * hiPerThread;
            // At most hiPerThread distinct valid high codes per group: either one thread per low code, or all
            // bits are low bits and the only high code is 0.
            int validHi = XMath.Min(hiPerGroup, hiCodes - hiBase);
            for (int h = 0; h < hiPerThread; h++) probSums[h * threads + tid] = 0f;
            int end = XMath.Min(positions, (chunk + 1) * a.ChunkLength);
            for (int first = chunk * a.ChunkLength; first < end; first += staged)
            {
                int count = XMath.Min(staged, end - first);
                for (int e = tid; e < count * a.Bits; e += threads)
                {
                    int p = e / a.Bits, k = e - p * a.Bits;
                    StageBit(bitStage, (p * MaxLfqBits + k) * LfqBitValues, 4f * z[a.ZBase(first + p) + k * a.HW] * a.InvTemperature);
                }
                Group.Barrier();
                for (int e = tid; e < count * validHi; e += threads)
                {
                    int p = e / validHi, u = e - p * validHi;
                    HalfCode(bitStage, p * MaxLfqBits, loBits, hiBits, hiBase + u, out float product, out float logProduct);
                    hiStage[(p * hiPerThread + u) * 2] = product;
                    hiStage[(p * hiPerThread + u) * 2 + 1] = logProduct;
                }
                Group.Barrier();
                for (int p = 0; p < count; p++)
                {
                    HalfCode(bitStage, p * MaxLfqBits, 0, loBits, lo, out float bLo, out float logBLo);
                    for (int h = 0; h < hiPerThread; h++)
                    {
                        int u = myHi + h - hiBase;
                        if (myHi + h >= hiCodes) break;
                        float prob = hiStage[(p * hiPerThread + u) * 2] * bLo;
                        entropy += prob * (prob >= LfqEntropyEps ? hiStage[(p * hiPerThread + u) * 2 + 1] + logBLo : a.LogEps);
                        probSums[h * threads + tid] += prob;
                    }
                }
                Group.Barrier();   // both stages are rewritten by the next round
            }
            for (int h = 0; h < hiPerThread && myHi + h < hiCodes; h++)
                partialProbs[chunk * codes + ((myHi + h) << loBits) + lo] = probSums[h * threads + tid];
        }
        entropy = GroupReduce(default(SumReduction), entropy, warpPartials);
        if (tid == 0) partialEntropy[Grid.IdxX] = entropy;
    }

    /// <summary>One group: result[0] = −Σ partial entropies / N, result[1] = −Σ_c p̄·log(max(p̄, eps)).</summary>
    internal static void LfqEntropyFinishKernel(ArrayView<float> partialEntropy, ArrayView<float> avgProbs, ArrayView<float> result, LfqArgs a)
    {
        var warpPartials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        float perSample = 0f;
        for (int i = Group.IdxX; i < a.Partials; i += Group.DimX) perSample += partialEntropy[i];
        perSample = GroupReduce(default(SumReduction), perSample, warpPartials);
        Group.Barrier();   // warpPartials is reused
        float average = 0f;
        for (int c = Group.IdxX; c < 1 << a.Bits; c += Group.DimX)
        {
            float p = avgProbs[c];
            average -= p * (p >= LfqEntropyEps ? XMath.Log(p) : a.LogEps);
        }
        average = GroupReduce(default(SumReduction), average, warpPartials);
        if (Group.IdxX != 0) return;
        result[0] = -perSample / a.Positions;
        result[1] = average;
    }

    // ---- the backward, in double ------------------------------------------------------------------------
    // With the entropy loss per_sample − avg the two terms' gradients cancel to ~1e-4 of their size where the latents
    // are large, and the batch term needs log p̄_c − log p̄_c* of nearly equal codes: beyond float32. The backward
    // therefore keeps per-bit probabilities, the half-code tables, p̄ and the per-code weights in double, as the CPU
    // kernel does. Double logs and exps are written out (LogDouble, ExpDouble) from adds, multiplies and a divide:
    // XMath's double versions become large software routines on PTX (notes/ilgpu.md).

    /// <summary>Per (position, bit), in double: q(+1), q(−1), the two values' logs measured from the more probable
    /// one (0 and −|x|), and the log of the more probable one, log σ(|x|).</summary>
    private const int LfqBitDoubles = 5;

    /// <summary>A thread per (position, bit): x = 4·z/T, σ(±x) and the logs of <see cref="LfqBitDoubles"/>.</summary>
    internal static void LfqBitValuesKernel(ArrayView<float> z, ArrayView<double> bitValues, LfqArgs a)
    {
        for (int i = Grid.GlobalIndex.X; i < a.Positions * a.Bits; i = GridStrideNext(i, a.Positions * a.Bits, GridStrideStep))
        {
            int pos = i / a.Bits, k = i - pos * a.Bits;
            double x = 4.0 * z[a.ZBase(pos) + k * a.HW] * a.InvTemperature;
            double magnitude = x >= 0 ? x : -x;
            double e = ExpDouble(-magnitude);
            double big = 1.0 / (1.0 + e), small = e / (1.0 + e);
            bool positive = x >= 0;
            int at = i * LfqBitDoubles;
            bitValues[at] = positive ? big : small;
            bitValues[at + 1] = positive ? small : big;
            bitValues[at + 2] = positive ? 0.0 : -magnitude;
            bitValues[at + 3] = positive ? -magnitude : 0.0;
            bitValues[at + 4] = -LogDouble(1.0 + e);
        }
    }

    /// <summary>A thread per (position, half code): the high-half codes' products A and the low-half codes' B
    /// (table [position][hi codes, then lo codes][product, log − log of the most probable]).</summary>
    internal static void LfqHalfTablesKernel(ArrayView<double> bitValues, ArrayView<double> tables, LfqArgs a)
    {
        int loBits = a.LoBits, hiBits = a.Bits - loBits, hiCodes = 1 << hiBits, halfCodes = hiCodes + (1 << loBits);
        for (int i = Grid.GlobalIndex.X; i < a.Positions * halfCodes; i = GridStrideNext(i, a.Positions * halfCodes, GridStrideStep))
        {
            int pos = i / halfCodes, j = i - pos * halfCodes;
            bool high = j < hiCodes;
            int code = high ? j : j - hiCodes, first = high ? loBits : 0, count = high ? hiBits : loBits;
            double product = 1.0, log = 0.0;
            for (int k = 0; k < count; k++)
            {
                int at = (pos * a.Bits + first + k) * LfqBitDoubles + ((code >> k & 1) != 0 ? 0 : 1);
                product *= bitValues[at];
                log += bitValues[at + 2];
            }
            tables[2 * i] = product;
            tables[2 * i + 1] = log;
        }
    }

    /// <summary>A thread per code: p̄_c = Σ_positions A·B / N in double, and h_c = −(dResult[1]/N)·(log p̄_c + 1),
    /// or −(dResult[1]/N)·log eps below the clamp: the batch-entropy term's gradient with respect to p_c.</summary>
    internal static void LfqCodeGradKernel(ArrayView<double> tables, ArrayView<float> upstream, ArrayView<double> codeGrad, LfqArgs a)
    {
        int loBits = a.LoBits, hiCodes = 1 << (a.Bits - loBits), halfCodes = hiCodes + (1 << loBits);
        double cAvg = (double)upstream[1] / a.Positions;
        for (int c = Grid.GlobalIndex.X; c < 1 << a.Bits; c = GridStrideNext(c, 1 << a.Bits, GridStrideStep))
        {
            int hi = c >> loBits, lo = c & ((1 << loBits) - 1);
            double sum = 0.0;
            for (int pos = 0; pos < a.Positions; pos++)
                sum += tables[2 * (pos * halfCodes + hi)] * tables[2 * (pos * halfCodes + hiCodes + lo)];
            double p = sum / a.Positions;
            codeGrad[c] = cAvg * -(p >= LfqEntropyEps ? LogDouble(p) + 1.0 : LfqLogEps);
        }
    }

    /// <summary>A group per position. With G_c = g_c + h_c (g the per-sample term's gradient, h the batch term's)
    /// and w_c = p_c·(G_c − G_c*), c* the most probable code (a constant shift leaves the softmax gradient unchanged,
    /// and measured from c* the weights stay small where p is large):
    /// dz_k = (4/T)·(σ(−x_k)·Σ_{c: bit k set} w_c − σ(x_k)·Σ_{c: bit k clear} w_c).</summary>
    internal static void LfqEntropyBackwardKernel(ArrayView<double> bitValues, ArrayView<double> tables, ArrayView<double> codeGrad,
        ArrayView<float> upstream, ArrayView<float> dz, LfqArgs a)
    {
        var rowSums = SharedMemory.Allocate<double>(MaxLfqHalfCodes);     // Σ over high codes, per low code
        var colSums = SharedMemory.Allocate<double>(MaxLfqHalfCodes);     // Σ over low codes, per high code
        int tid = Group.IdxX, threads = Group.DimX;
        int loBits = a.LoBits, hiBits = a.Bits - loBits, loCodes = 1 << loBits, hiCodes = 1 << hiBits, halfCodes = hiCodes + loCodes;
        double cPerSample = (double)upstream[0] / a.Positions;
        for (int pos = Grid.IdxX; pos < a.Positions; pos += Grid.DimX)
        {
            // The most probable code c* and log p(c*) (every thread the same).
            int star = 0;
            double logPStar = 0.0;
            for (int k = 0; k < a.Bits; k++)
            {
                int at = (pos * a.Bits + k) * LfqBitDoubles;
                if (bitValues[at] >= bitValues[at + 1]) star |= 1 << k;
                logPStar += bitValues[at + 4];
            }
            var weights = new LfqCodeWeights
            {
                Table = pos * halfCodes,
                LoTable = pos * halfCodes + hiCodes,
                LoBits = loBits,
                Above = -cPerSample,
                Below = logPStar >= LfqLogEps ? cPerSample * (logPStar + 1.0 - LfqLogEps) : 0.0,
                HStar = codeGrad[star],
            };
            for (int lo = tid; lo < loCodes; lo += threads)
            {
                double sum = 0.0;
                for (int hi = 0; hi < hiCodes; hi++) sum += weights.Of(tables, codeGrad, hi, lo);
                rowSums[lo] = sum;
            }
            for (int hi = tid; hi < hiCodes; hi += threads)
            {
                double sum = 0.0;
                for (int lo = 0; lo < loCodes; lo++) sum += weights.Of(tables, codeGrad, hi, lo);
                colSums[hi] = sum;
            }
            Group.Barrier();
            for (int k = tid; k < a.Bits; k += threads)
            {
                bool low = k < loBits;
                int bit = low ? k : k - loBits, count = low ? loCodes : hiCodes;
                double set = 0.0, clear = 0.0;
                for (int c = 0; c < count; c++)
                {
                    double s = low ? rowSums[c] : colSums[c];
                    if ((c >> bit & 1) != 0) set += s;
                    else clear += s;
                }
                int at = (pos * a.Bits + k) * LfqBitDoubles;
                dz[a.ZBase(pos) + k * a.HW] = (float)(4.0 * a.InvTemperature * (bitValues[at + 1] * set - bitValues[at] * clear));
            }
            Group.Barrier();   // the sums are rewritten for the next position
        }
    }

    /// <summary>Backward v2: at most this many positions per group (a tile), and shared room for the tile's row sums
    /// (tile positions × low-half codes doubles: 8 positions up to 18 bits, 4 at 20).</summary>
    private const int LfqTileMaxPositions = 8, LfqTileRowSums = 4096;

    /// <summary>
    /// Backward v2, a group per tile of P positions. v1 evaluates every code's weight twice per position (once for
    /// the row sums, once for the column sums), reads the 2^K code gradients twice per position, and its column
    /// pass reads them with a stride of 2^(K/2) doubles between threads. Here the group walks the high-half codes
    /// in order; for each, its threads take consecutive low-half codes (coalesced reads of the code gradients,
    /// which then serve all P positions from L1), evaluate each weight once, add it to the position's row sum (a
    /// shared slot owned by the thread: no barrier) and to a column partial, which warp shuffles and one
    /// shared slot per warp finish; thread p then adds position p's column sum into its high bits' set/clear
    /// sums. So the code gradients come from L2 once per P positions instead of twice per position, and the
    /// weights cost half. The column sums are added in a different order than v1's (lanes, then warps).
    /// </summary>
    internal static void LfqEntropyBackwardTiledKernel(ArrayView<double> bitValues, ArrayView<double> tables, ArrayView<double> codeGrad,
        ArrayView<float> upstream, ArrayView<float> dz, LfqArgs a)
    {
        var rowSums = SharedMemory.Allocate<double>(LfqTileRowSums);                                // [p][lo]
        var warpColumns = SharedMemory.Allocate<double>(LfqTileMaxPositions * MaxWarpsPerGroup);     // [p][warp]
        var highSums = SharedMemory.Allocate<double>(LfqTileMaxPositions * MaxLfqBits * 2);         // [p][high bit][set, clear]
        var tileWeights = SharedMemory.Allocate<double>(LfqTileMaxPositions * 3);                   // [p][Above, Below, HStar]
        int tid = Group.IdxX, threads = Group.DimX, warps = threads / Warp.WarpSize;
        int loBits = a.LoBits, hiBits = a.Bits - loBits, loCodes = 1 << loBits, hiCodes = 1 << hiBits, halfCodes = hiCodes + loCodes;
        double cPerSample = (double)upstream[0] / a.Positions;
        for (int first = Grid.IdxX * a.TilePositions; first < a.Positions; first += Grid.DimX * a.TilePositions)
        {
            int count = XMath.Min(a.TilePositions, a.Positions - first);
            for (int p = tid; p < count; p += threads)
            {
                int star = 0;
                double logPStar = 0.0;
                for (int k = 0; k < a.Bits; k++)
                {
                    int at = ((first + p) * a.Bits + k) * LfqBitDoubles;
                    if (bitValues[at] >= bitValues[at + 1]) star |= 1 << k;
                    logPStar += bitValues[at + 4];
                }
                tileWeights[3 * p] = -cPerSample;
                tileWeights[3 * p + 1] = logPStar >= LfqLogEps ? cPerSample * (logPStar + 1.0 - LfqLogEps) : 0.0;
                tileWeights[3 * p + 2] = codeGrad[star];
            }
            for (int e = tid; e < count * loCodes; e += threads) rowSums[e] = 0.0;
            for (int e = tid; e < count * MaxLfqBits * 2; e += threads) highSums[e] = 0.0;
            Group.Barrier();
            for (int hi = 0; hi < hiCodes; hi++)
            {
                for (int p = 0; p < count; p++)
                {
                    var weights = new LfqCodeWeights
                    {
                        Table = (first + p) * halfCodes,
                        LoTable = (first + p) * halfCodes + hiCodes,
                        LoBits = loBits,
                        Above = tileWeights[3 * p],
                        Below = tileWeights[3 * p + 1],
                        HStar = tileWeights[3 * p + 2],
                    };
                    double column = 0.0;
                    for (int lo = tid; lo < loCodes; lo += threads)
                    {
                        double w = weights.Of(tables, codeGrad, hi, lo);
                        rowSums[p * loCodes + lo] += w;
                        column += w;
                    }
                    for (int delta = Warp.WarpSize / 2; delta > 0; delta /= 2) column += Warp.ShuffleDown(column, delta);
                    if (Warp.IsFirstLane) warpColumns[p * MaxWarpsPerGroup + Warp.WarpIdx] = column;
                }
                Group.Barrier();
                for (int p = tid; p < count; p += threads)
                {
                    double column = 0.0;
                    for (int w = 0; w < warps; w++) column += warpColumns[p * MaxWarpsPerGroup + w];
                    for (int k = 0; k < hiBits; k++) highSums[(p * MaxLfqBits + k) * 2 + ((hi >> k & 1) != 0 ? 0 : 1)] += column;
                }
                Group.Barrier();   // warpColumns is rewritten for the next high code
            }
            for (int e = tid; e < count * a.Bits; e += threads)
            {
                int p = e / a.Bits, k = e - p * a.Bits;
                double set = 0.0, clear = 0.0;
                if (k < loBits)
                {
                    for (int lo = 0; lo < loCodes; lo++)
                    {
                        double s = rowSums[p * loCodes + lo];
                        if ((lo >> k & 1) != 0) set += s;
                        else clear += s;
                    }
                }
                else
                {
                    set = highSums[(p * MaxLfqBits + k - loBits) * 2];
                    clear = highSums[(p * MaxLfqBits + k - loBits) * 2 + 1];
                }
                int at = ((first + p) * a.Bits + k) * LfqBitDoubles;
                dz[a.ZBase(first + p) + k * a.HW] = (float)(4.0 * a.InvTemperature * (bitValues[at + 1] * set - bitValues[at] * clear));
            }
            Group.Barrier();   // the tile's sums are rewritten for the next tile
        }
    }

    /// <summary>The per-code weight w_c = p_c·(G_c − G_c*) of one position: G − G* is <c>Above·(log p_c − log p_c*)</c>
    /// at or above the clamp, <c>Below</c> under it, plus h_c − <c>HStar</c>.</summary>
    internal struct LfqCodeWeights
    {
        /// <summary>Entries of the position's high-half and low-half codes in the half-code tables.</summary>
        public int Table, LoTable, LoBits;
        public double Above, Below, HStar;

        public readonly double Of(ArrayView<double> tables, ArrayView<double> codeGrad, int hi, int lo)
        {
            int high = 2 * (Table + hi), low = 2 * (LoTable + lo);
            double p = tables[high] * tables[low];
            double g = p >= LfqEntropyEps ? Above * (tables[high + 1] + tables[low + 1]) : Below;
            return p * (g + (codeGrad[(hi << LoBits) + lo] - HStar));
        }
    }

    /// <summary>log(float32(1e-5)) in double.</summary>
    private const double LfqLogEps = -11.512925464970229;

    private const double Ln2 = 0.69314718055994531;

    /// <summary>log x for a normal x > 0, to double precision: x = m·2^e with m in [√½, √2), and
    /// log m = 2·atanh(s) = 2·(s + s³/3 + … + s²¹/21) with s = (m − 1)/(m + 1), |s| ≤ 0.172 (the next term is
    /// below 2e-17 of the sum).</summary>
    internal static double LogDouble(double x)
    {
        ulong bits = Interop.FloatAsInt(x);
        int e = (int)((bits >> 52) & 0x7FF) - 1023;
        double m = Interop.IntAsFloat((bits & 0x000FFFFFFFFFFFFFUL) | 0x3FF0000000000000UL);
        if (m > 1.4142135623730951) { m *= 0.5; e++; }
        double s = (m - 1.0) / (m + 1.0), s2 = s * s;
        double series = 1.0 / 21;
        for (int i = 19; i >= 1; i -= 2) series = series * s2 + 1.0 / i;
        return e * Ln2 + 2.0 * s * series;
    }

    /// <summary>e^y for y ≤ 0 to double precision (0 below −708, where it would be subnormal): y = n·ln 2 + r with
    /// |r| ≤ ln 2 / 2, e^r by its Taylor series to r¹³ (the next term is below 1e-17), times 2^n.</summary>
    internal static double ExpDouble(double y)
    {
        if (y < -708.0) return 0.0;
        int n = (int)(y * 1.4426950408889634 - 0.5);   // round to nearest (y ≤ 0: the cast rounds up)
        double r = y - n * 0.693147180369123816490 - n * 1.90821492927058770002e-10;   // ln 2 split, exact n·hi
        double series = 1.0;
        for (int i = 13; i >= 1; i--) series = series * r / i + 1.0;
        return series * Interop.IntAsFloat((ulong)(n + 1023) << 52);
    }
}
