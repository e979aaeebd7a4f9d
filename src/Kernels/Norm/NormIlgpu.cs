using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// GroupNorm (optionally fused with SiLU) and LayerNorm on an ILGPU accelerator. LayerNorm over (rows, cols) is
// GroupNorm with N = rows, C = cols, HW = 1 and one group, so forward and input gradient share the kernels: a
// group of threads per normalised run (one (n, group) or one row), statistics by corrected two-pass group
// reductions (the centre's rounding error comes back through Σ(x − centre), as on the CPU). The γ/β gradients
// are summed per (part, channel) into scratch and then over the parts by ReduceSum, in a fixed order
// (deterministic, no atomics): GroupNorm's parts are the samples (a group reduces each (n, c) plane over HW),
// LayerNorm's are chunks of rows (a thread per (chunk, column), so loads coalesce along the row).
// The forward has two versions (the kernel lab's "groupnorm" family; the backend runs NormForwardVersion): v1 a group
// per run; v2 splits runs across groups where the runs alone would not fill the device (a GroupNorm of a few samples
// × 32 groups over large planes): per chunk statistics, then every group of a run combines them and normalises its chunk.
// GroupNorm's backward has two versions too (the lab's "groupnorm_backward"; the backend runs NormBackwardVersion): v1 sums
// each (n, c) plane in one group and then runs a group per run over x and dy twice more for dx; v2 cuts the planes into
// chunks across groups, finds each run's two dx coefficients from the plane sums the γ/β gradients need anyway (dx needs
// Σ_run γ·dv and Σ_run γ·dv·x̂, which are Σ_c γ_c times the plane sums), and then writes dx in one element-parallel pass.
public sealed partial class IlgpuBackend
{
    /// <summary>The normalisation layout: N samples of C channels × HW, normalised over C/Groups channels.</summary>
    public struct NormArgs
    {
        public int N, C, HW, Groups;
        public float Eps;
        public int Silu;

        public readonly int PerGroup => C / Groups;
        public readonly int GroupLength => PerGroup * HW;
        public readonly int Runs => N * Groups;

        /// <summary>Channel of element e of run <paramref name="run"/>.</summary>
        public readonly int Channel(int run, int e) => run % Groups * PerGroup + e / HW;

        /// <summary>dv = dy·act'(v) at v = x̂·γ + β: the gradient at the normalisation output (before SiLU).</summary>
        public readonly float OutputGrad(float dy, float xhat, float gamma, float beta)
        {
            if (Silu == 0) return dy;
            float v = xhat * gamma + beta, s = Sigmoid(v);
            return dy * s * (1f + v * (1f - s));
        }
    }

    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs> NormForwardEntry = NormForwardKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs> NormInputGradEntry = NormInputGradKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs, NormChunks> GroupNormPlaneSumsEntry = GroupNormPlaneSumsKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs> GroupNormRunCoefficientsEntry = GroupNormRunCoefficientsKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs, NormChunks> GroupNormChunkInputGradEntry = GroupNormChunkInputGradKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs, int> LayerNormColumnSumsEntry = LayerNormColumnSumsKernel;

    internal static readonly Action<ArrayView<float>, ArrayView<float>, NormArgs, NormChunks> NormChunkStatsEntry = NormChunkStatsKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs, NormChunks> NormChunkApplyEntry = NormChunkApplyKernel;

    /// <summary>The normalisation forward the backend runs (the kernel lab's groupnorm family).</summary>
    internal const int NormForwardVersion = 2;

    /// <summary>The GroupNorm backward the backend runs (the kernel lab's groupnorm_backward family).</summary>
    internal const int NormBackwardVersion = 2;

    /// <summary>v2: a run's chunks (Count of Length elements; the last may be shorter).</summary>
    public struct NormChunks
    {
        public int Count, Length;
    }

    /// <summary>v2 splits a run no finer than this many elements per thread of a group.</summary>
    private const int NormChunkElementsPerThread = 4;

    /// <summary>Rows per chunk of the LayerNorm γ/β partial sums.</summary>
    private const int LayerNormRowsPerChunk = 32;

    internal static NormArgs GroupNormArgs(in GroupNormDesc d) =>
        new() { N = d.N, C = d.C, HW = d.HW, Groups = d.Groups, Eps = d.Eps, Silu = d.FuseSilu ? 1 : 0 };

    private static NormArgs LayerNormArgs(int rows, int cols, float eps) => new() { N = rows, C = cols, HW = 1, Groups = 1, Eps = eps };

    // ---- host side ----------------------------------------------------------------------------------------
    public void GroupNormForward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd) =>
        NormForward(GroupNormArgs(d), x, gamma, beta, y, mean, rstd);

    public void LayerNormForward(int rows, int cols, float eps, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd) =>
        NormForward(LayerNormArgs(rows, cols, eps), x, gamma, beta, y, mean, rstd);

    public void GroupNormBackward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf mean, Buf rstd, Buf dy,
        Buf dx, Buf dgamma, Buf dbeta) =>
        GroupNormBackward(NormBackwardVersion, GroupNormArgs(d), x, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta);

    /// <summary>The GroupNorm backward with the given version: 1 a group per (n, c) plane for the γ/β sums and a group
    /// per run for dx; 2 planes cut into chunks across groups, dx from the plane sums in one element-parallel pass.</summary>
    internal void GroupNormBackward(int version, NormArgs args, Buf x, Buf gamma, Buf beta, Buf mean, Buf rstd, Buf dy,
        Buf dx, Buf dgamma, Buf dbeta)
    {
        long n = (long)args.N * args.C * args.HW;
        if (n == 0) return;
        RequireOneLaunch(n, "GroupNorm");
        if (version is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(version), version, "GroupNorm backward versions are 1 and 2");
        long planes = (long)args.N * args.C;
        var chunks = version == 2 ? Chunking(args.HW, planes) : new NormChunks { Count = 1, Length = args.HW };
        // Per (n, c) plane: [Σ dv·x̂ | Σ dv], from per-chunk partials [2][plane][chunk] when the planes are cut.
        using var sums = Allocate(2 * planes, zero: false);
        using var chunkSums = chunks.Count == 1 ? null : Allocate(2 * planes * chunks.Count, zero: false);
        var partials = chunkSums ?? sums;
        var config = new KernelConfig(RowGroups(planes * chunks.Count), Sizes.ReduceGroup);
        Kernel(GroupNormPlaneSumsEntry)(config,
            F(x, n), F(gamma, args.C), F(beta, args.C), F(mean, args.Runs), F(rstd, args.Runs), F(dy, n), F(new Buf(partials, 0), 2 * planes * chunks.Count), args, chunks);
        if (chunkSums != null) ReduceSum(new Buf(chunkSums, 0), new Buf(sums, 0), (int)(2 * planes), chunks.Count, 1);
        SumParameterGrads(sums, args.N, args.C, dgamma, dbeta);
        if (version == 1)
        {
            NormInputGrad(args, x, gamma, beta, mean, rstd, dy, dx);
            return;
        }
        using var coefficients = Allocate(4L * args.Runs, zero: false);
        var cv = F(new Buf(coefficients, 0), 4L * args.Runs);
        Kernel(GroupNormRunCoefficientsEntry)(GridStride(args.Runs, Sizes.ElementGroup),
            F(gamma, args.C), F(mean, args.Runs), F(rstd, args.Runs), F(new Buf(sums, 0), 2 * planes), cv, args);
        Kernel(GroupNormChunkInputGradEntry)(config, F(x, n), F(gamma, args.C), F(beta, args.C), F(dy, n), cv, F(dx, n), args, chunks);
    }

    public void LayerNormBackward(int rows, int cols, Buf x, Buf gamma, Buf mean, Buf rstd, Buf dy,
        Buf dx, Buf dgamma, Buf dbeta)
    {
        var args = LayerNormArgs(rows, cols, 0f);
        long n = (long)rows * cols;
        if (n == 0) return;
        RequireOneLaunch(n, "LayerNorm");
        int chunks = (rows + LayerNormRowsPerChunk - 1) / LayerNormRowsPerChunk;
        using var sums = Allocate(2L * chunks * cols, zero: false);
        Kernel(LayerNormColumnSumsEntry)(
            GridStride((long)chunks * cols, Sizes.ElementGroup),
            F(x, n), F(mean, rows), F(rstd, rows), F(dy, n), F(new Buf(sums, 0), 2L * chunks * cols), args, chunks);
        SumParameterGrads(sums, chunks, cols, dgamma, dbeta);
        // LayerNorm has no β in the backward (no SiLU): gamma stands in for the unused argument.
        NormInputGrad(args, x, gamma, gamma, mean, rstd, dy, dx);
    }

    private void NormForward(NormArgs args, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd) =>
        NormForward(NormForwardVersion, args, x, gamma, beta, y, mean, rstd);

    /// <summary>The forward with the given version: 1 a group per run; 2 as 1 where the runs fill the device, else
    /// each run split into chunks across groups.</summary>
    internal void NormForward(int version, NormArgs args, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd)
    {
        long n = (long)args.N * args.C * args.HW;
        if (n == 0) return;
        RequireOneLaunch(n, "normalisation");
        if (version is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(version), version, "normalisation forward versions are 1 and 2");
        var chunks = version == 2 ? NormChunking(args) : new NormChunks { Count = 1, Length = args.GroupLength };
        if (chunks.Count == 1)
        {
            Kernel(NormForwardEntry)(
                new KernelConfig(RowGroups(args.Runs), Sizes.ReduceGroup),
                F(x, n), F(gamma, args.C), F(beta, args.C), F(y, n), F(mean, args.Runs), F(rstd, args.Runs), args);
            return;
        }
        long blocks = (long)args.Runs * chunks.Count;
        using var partials = Allocate(2 * blocks, zero: false);
        var pv = F(new Buf(partials, 0), 2 * blocks);
        var config = new KernelConfig((int)Math.Min(blocks, RowGroups(blocks)), Sizes.ReduceGroup);
        Kernel(NormChunkStatsEntry)(config, F(x, n), pv, args, chunks);
        Kernel(NormChunkApplyEntry)(config, F(x, n), F(gamma, args.C), F(beta, args.C), pv, F(y, n), F(mean, args.Runs), F(rstd, args.Runs), args, chunks);
    }

    /// <summary>v2's chunks of the forward's runs (see <see cref="Chunking"/>).</summary>
    internal NormChunks NormChunking(NormArgs args) => Chunking(args.GroupLength, args.Runs);

    /// <summary>Chunks of <paramref name="pieces"/> stretches of <paramref name="length"/> elements: as many per stretch
    /// as fill the device's groups, each at least <see cref="NormChunkElementsPerThread"/> elements per thread.</summary>
    private NormChunks Chunking(int length, long pieces)
    {
        long slots = RowGroups(long.MaxValue);
        int minimum = NormChunkElementsPerThread * Sizes.ReduceGroup;
        int count = (int)Math.Clamp(slots / Math.Max(pieces, 1), 1, Math.Max(1, length / minimum));
        int chunkLength = (length + count - 1) / count;
        return new NormChunks { Count = (length + chunkLength - 1) / chunkLength, Length = chunkLength };
    }

    private void NormInputGrad(NormArgs args, Buf x, Buf gamma, Buf beta, Buf mean, Buf rstd, Buf dy, Buf dx)
    {
        long n = (long)args.N * args.C * args.HW;
        Kernel(NormInputGradEntry)(
            new KernelConfig(RowGroups(args.Runs), Sizes.ReduceGroup),
            F(x, n), F(gamma, args.C), F(beta, args.C), F(mean, args.Runs), F(rstd, args.Runs), F(dy, n), F(dx, n), args);
    }

    /// <summary>dγ = Σ_parts sums[0, part, c], dβ = Σ_parts sums[1, part, c] (overwritten).</summary>
    private void SumParameterGrads(Storage sums, int parts, int channels, Buf dgamma, Buf dbeta)
    {
        ReduceSum(new Buf(sums, 0), dgamma, 1, parts, channels);
        ReduceSum(new Buf(sums, (long)parts * channels), dbeta, 1, parts, channels);
    }

    private static void RequireOneLaunch(long elements, string op)
    {
        if (elements > int.MaxValue) throw new NotSupportedException($"{op} over {elements} elements exceeds one ILGPU launch");
    }

    // ---- kernels ------------------------------------------------------------------------------------------
    /// <summary>The mean of a stretch of x and M2 = Σ(x − mean)² (clamped at 0, NaN kept).</summary>
    internal struct Moments
    {
        public float Mean, M2;
    }

    /// <summary>The moments of x[start, start + count) by the calling group (every thread gets them), by a corrected
    /// two-pass reduction: a centre from the sum, then Σ(x − centre) and Σ(x − centre)², whose first term gives back
    /// the centre's rounding error (as on the CPU).</summary>
    private static Moments GroupMoments(ArrayView<float> x, long start, int count, ArrayView<float> warpPartials)
    {
        var sum = default(SumReduction);
        float acc = 0f;
        for (int e = Group.IdxX; e < count; e += Group.DimX) acc += x[start + e];
        float center = GroupAllReduce(sum, acc, warpPartials) / count;
        float deviation = 0f, squares = 0f;
        for (int e = Group.IdxX; e < count; e += Group.DimX)
        {
            float d = x[start + e] - center;
            deviation += d;
            squares += d * d;
        }
        deviation = GroupAllReduce(sum, deviation, warpPartials);
        squares = GroupAllReduce(sum, squares, warpPartials);
        return new Moments { Mean = center + deviation / count, M2 = MaxOrNaN(squares - deviation * deviation / count, 0f) };
    }

    /// <summary>y = act((x − m)·rs·γ + β) over elements [begin, end) of run <paramref name="run"/>, by the calling group.</summary>
    private static void NormaliseRange(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        NormArgs args, int run, int begin, int end, float m, float rs)
    {
        long start = (long)run * args.GroupLength;
        for (int e = begin + Group.IdxX; e < end; e += Group.DimX)
        {
            int c = args.Channel(run, e);
            float v = (x[start + e] - m) * (rs * gamma[c]) + beta[c];
            y[start + e] = args.Silu != 0 ? v * Sigmoid(v) : v;
        }
    }

    /// <summary>A group per run: mean and rstd from <see cref="GroupMoments"/>, then <see cref="NormaliseRange"/>.</summary>
    internal static void NormForwardKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> mean, ArrayView<float> rstd, NormArgs args)
    {
        var partials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        int length = args.GroupLength;
        for (int run = Grid.IdxX; run < args.Runs; run += Grid.DimX)
        {
            var moments = GroupMoments(x, (long)run * length, length, partials);
            float rs = 1f / XMath.Sqrt(moments.M2 / length + args.Eps);
            if (Group.IdxX == 0) { mean[run] = moments.Mean; rstd[run] = rs; }
            NormaliseRange(x, gamma, beta, y, args, run, 0, length, moments.Mean, rs);
        }
    }

    /// <summary>v2, pass 1: a group per (run, chunk) writes the chunk's mean and M2 (<see cref="GroupMoments"/>, whose
    /// second read of the chunk comes from cache).</summary>
    internal static void NormChunkStatsKernel(ArrayView<float> x, ArrayView<float> partials, NormArgs args, NormChunks chunks)
    {
        var warpPartials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        for (int block = Grid.IdxX; block < args.Runs * chunks.Count; block += Grid.DimX)
        {
            int run = block / chunks.Count, begin = (block - run * chunks.Count) * chunks.Length;
            var moments = GroupMoments(x, (long)run * args.GroupLength + begin, XMath.Min(chunks.Length, args.GroupLength - begin), warpPartials);
            if (Group.IdxX != 0) continue;
            partials[2 * block] = moments.Mean;
            partials[2 * block + 1] = moments.M2;
        }
    }

    /// <summary>v2, pass 2: a group per (run, chunk) combines the run's chunk statistics in chunk order (Chan et al.:
    /// M2 = Σ M2_j + Σ n_j·(mean_j − mean)², the same bits in every group of the run), writes mean and rstd from
    /// the first chunk's group, and normalises its chunk.</summary>
    internal static void NormChunkApplyKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> partials,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, NormArgs args, NormChunks chunks)
    {
        int length = args.GroupLength;
        for (int block = Grid.IdxX; block < args.Runs * chunks.Count; block += Grid.DimX)
        {
            int run = block / chunks.Count, chunk = block - run * chunks.Count, begin = chunk * chunks.Length;
            int first = run * chunks.Count;
            float weighted = 0f;
            for (int j = 0; j < chunks.Count; j++) weighted += XMath.Min(chunks.Length, length - j * chunks.Length) * partials[2 * (first + j)];
            float m = weighted / length, m2 = 0f;
            for (int j = 0; j < chunks.Count; j++)
            {
                float d = partials[2 * (first + j)] - m;
                m2 += partials[2 * (first + j) + 1] + XMath.Min(chunks.Length, length - j * chunks.Length) * d * d;
            }
            float rs = 1f / XMath.Sqrt(m2 / length + args.Eps);
            if (chunk == 0 && Group.IdxX == 0) { mean[run] = m; rstd[run] = rs; }
            NormaliseRange(x, gamma, beta, y, args, run, begin, XMath.Min(length, begin + chunks.Length), m, rs);
        }
    }

    /// <summary>A group per run: dx = rstd·(γ·dv − mean(γ·dv) − x̂·mean(γ·dv·x̂)).</summary>
    internal static void NormInputGradKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dy, ArrayView<float> dx, NormArgs args)
    {
        var partials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        var sum = default(SumReduction);
        int length = args.GroupLength;
        for (int run = Grid.IdxX; run < args.Runs; run += Grid.DimX)
        {
            long start = (long)run * length;
            float m = mean[run], rs = rstd[run];
            float sumG = 0f, sumGXhat = 0f;
            for (int e = Group.IdxX; e < length; e += Group.DimX)
            {
                int c = args.Channel(run, e);
                float xhat = (x[start + e] - m) * rs;
                float g = gamma[c] * args.OutputGrad(dy[start + e], xhat, gamma[c], beta[c]);
                sumG += g;
                sumGXhat += g * xhat;
            }
            float k0 = -rs * GroupAllReduce(sum, sumG, partials) / length;
            float kx = -rs * GroupAllReduce(sum, sumGXhat, partials) / length;
            for (int e = Group.IdxX; e < length; e += Group.DimX)
            {
                int c = args.Channel(run, e);
                float xhat = (x[start + e] - m) * rs;
                float g = gamma[c] * args.OutputGrad(dy[start + e], xhat, gamma[c], beta[c]);
                dx[start + e] = rs * g + xhat * kx + k0;
            }
        }
    }

    /// <summary>A group per (plane, chunk) of the (n, c) planes cut into <paramref name="chunks"/>: sums[0, plane, chunk]
    /// = Σ dv·x̂ and sums[1, plane, chunk] = Σ dv over the chunk (one chunk: the plane's sums).</summary>
    internal static void GroupNormPlaneSumsKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dy, ArrayView<float> sums, NormArgs args, NormChunks chunks)
    {
        var partials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        var sum = default(SumReduction);
        int blocks = args.N * args.C * chunks.Count;
        for (int block = Grid.IdxX; block < blocks; block += Grid.DimX)
        {
            int plane = block / chunks.Count, begin = (block - plane * chunks.Count) * chunks.Length;
            int n = plane / args.C, c = plane - n * args.C, run = n * args.Groups + c / args.PerGroup;
            int end = XMath.Min(args.HW, begin + chunks.Length);
            long start = (long)plane * args.HW;
            float m = mean[run], rs = rstd[run], g = gamma[c], b = beta[c];
            float sumDvXhat = 0f, sumDv = 0f;
            for (int e = begin + Group.IdxX; e < end; e += Group.DimX)
            {
                float xhat = (x[start + e] - m) * rs, dv = args.OutputGrad(dy[start + e], xhat, g, b);
                sumDvXhat += dv * xhat;
                sumDv += dv;
            }
            sumDvXhat = GroupAllReduce(sum, sumDvXhat, partials);
            sumDv = GroupAllReduce(sum, sumDv, partials);
            if (Group.IdxX == 0) { sums[block] = sumDvXhat; sums[blocks + block] = sumDv; }
        }
    }

    /// <summary>v2: a thread per run gathers what dx needs of it, [mean | rstd | constant | factor of x̂] (Runs each),
    /// the last two from the plane sums [Σ dv·x̂ | Σ dv] (N·C each): −rstd·Σ_c γ_c·Σ dv / length and −rstd·Σ_c
    /// γ_c·Σ dv·x̂ / length, c over the run's channels in order.</summary>
    internal static void GroupNormRunCoefficientsKernel(ArrayView<float> gamma, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> planeSums, ArrayView<float> coefficients, NormArgs args)
    {
        int planes = args.N * args.C, runs = args.Runs;
        for (int run = Grid.GlobalIndex.X; run < runs; run = GridStrideNext(run, runs, GridStrideStep))
        {
            int n = run / args.Groups, c0 = (run - n * args.Groups) * args.PerGroup;
            float sumG = 0f, sumGXhat = 0f;
            for (int c = c0; c < c0 + args.PerGroup; c++)
            {
                sumGXhat += gamma[c] * planeSums[n * args.C + c];
                sumG += gamma[c] * planeSums[planes + n * args.C + c];
            }
            float rs = rstd[run];
            coefficients[run] = mean[run];
            coefficients[runs + run] = rs;
            coefficients[2 * runs + run] = -rs * sumG / args.GroupLength;
            coefficients[3 * runs + run] = -rs * sumGXhat / args.GroupLength;
        }
    }

    /// <summary>v2: a group per (plane, chunk) writes dx = rstd·γ·dv + x̂·(x̂'s factor) + the constant over its chunk.</summary>
    internal static void GroupNormChunkInputGradKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> dy, ArrayView<float> coefficients, ArrayView<float> dx, NormArgs args, NormChunks chunks)
    {
        int blocks = args.N * args.C * chunks.Count, runs = args.Runs;
        for (int block = Grid.IdxX; block < blocks; block += Grid.DimX)
        {
            int plane = block / chunks.Count, begin = (block - plane * chunks.Count) * chunks.Length;
            int n = plane / args.C, c = plane - n * args.C, run = n * args.Groups + c / args.PerGroup;
            int end = XMath.Min(args.HW, begin + chunks.Length);
            long start = (long)plane * args.HW;
            float m = coefficients[run], rs = coefficients[runs + run], k0 = coefficients[2 * runs + run], kx = coefficients[3 * runs + run];
            float g = gamma[c], b = beta[c];
            for (int e = begin + Group.IdxX; e < end; e += Group.DimX)
            {
                float xhat = (x[start + e] - m) * rs;
                dx[start + e] = rs * g * args.OutputGrad(dy[start + e], xhat, g, b) + xhat * kx + k0;
            }
        }
    }

    /// <summary>A thread per (chunk of rows, column): sums[0, chunk, c] = Σ dy·x̂, sums[1, chunk, c] = Σ dy.</summary>
    internal static void LayerNormColumnSumsKernel(ArrayView<float> x, ArrayView<float> mean, ArrayView<float> rstd,
        ArrayView<float> dy, ArrayView<float> sums, NormArgs args, int chunks)
    {
        int cols = args.C, items = chunks * cols;
        for (int item = Grid.GlobalIndex.X; item < items; item = GridStrideNext(item, items, GridStrideStep))
        {
            int chunk = item / cols, c = item - chunk * cols;
            int end = XMath.Min((chunk + 1) * LayerNormRowsPerChunk, args.N);
            float sumDyXhat = 0f, sumDy = 0f;
            for (int r = chunk * LayerNormRowsPerChunk; r < end; r++)
            {
                long at = (long)r * cols + c;
                sumDyXhat += dy[at] * (x[at] - mean[r]) * rstd[r];
                sumDy += dy[at];
            }
            sums[item] = sumDyXhat;
            sums[items + item] = sumDy;
        }
    }
}
