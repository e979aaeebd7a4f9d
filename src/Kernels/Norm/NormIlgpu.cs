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
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs> NormInputGradEntry = NormInputGradKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs> GroupNormPlaneSumsEntry = GroupNormPlaneSumsKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs, int> LayerNormColumnSumsEntry = LayerNormColumnSumsKernel;

    internal static readonly Action<ArrayView<float>, ArrayView<float>, NormArgs, NormChunks> NormChunkStatsEntry = NormChunkStatsKernel;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs, NormChunks> NormChunkApplyEntry = NormChunkApplyKernel;

    /// <summary>The normalisation forward the backend runs (the kernel lab's groupnorm family).</summary>
    internal const int NormForwardVersion = 2;

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
        Buf dx, Buf dgamma, Buf dbeta)
    {
        var args = GroupNormArgs(d);
        long n = (long)args.N * args.C * args.HW;
        if (n == 0) return;
        RequireOneLaunch(n, "GroupNorm");
        using var sums = Allocate(2L * args.N * args.C, zero: false);
        Kernel(GroupNormPlaneSumsEntry)(
            new KernelConfig(RowGroups((long)args.N * args.C), Sizes.ReduceGroup),
            F(x, n), F(gamma, args.C), F(beta, args.C), F(mean, args.Runs), F(rstd, args.Runs), F(dy, n), F(new Buf(sums, 0), 2L * args.N * args.C), args);
        SumParameterGrads(sums, args.N, args.C, dgamma, dbeta);
        NormInputGrad(args, x, gamma, beta, mean, rstd, dy, dx);
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

    /// <summary>v2's chunks: as many per run as fill the device's groups, each at least
    /// <see cref="NormChunkElementsPerThread"/> elements per thread.</summary>
    internal NormChunks NormChunking(NormArgs args)
    {
        long slots = RowGroups(long.MaxValue);
        int length = args.GroupLength, minimum = NormChunkElementsPerThread * Sizes.ReduceGroup;
        int count = (int)Math.Clamp(slots / Math.Max(args.Runs, 1), 1, Math.Max(1, length / minimum));
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
    /// <summary>A group per run: mean and rstd by a corrected two-pass reduction, then y = act((x − mean)·rstd·γ + β).</summary>
    internal static void NormForwardKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> mean, ArrayView<float> rstd, NormArgs args)
    {
        var partials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        var sum = default(SumReduction);
        int length = args.GroupLength;
        for (int run = Grid.IdxX; run < args.Runs; run += Grid.DimX)
        {
            long start = (long)run * length;
            float acc = 0f;
            for (int e = Group.IdxX; e < length; e += Group.DimX) acc += x[start + e];
            float center = GroupAllReduce(sum, acc, partials) / length;
            float deviation = 0f, squares = 0f;
            for (int e = Group.IdxX; e < length; e += Group.DimX)
            {
                float d = x[start + e] - center;
                deviation += d;
                squares += d * d;
            }
            deviation = GroupAllReduce(sum, deviation, partials);
            squares = GroupAllReduce(sum, squares, partials);
            float m = center + deviation / length;
            float variance = MaxOrNaN((squares - deviation * deviation / length) / length, 0f);
            float rs = 1f / XMath.Sqrt(variance + args.Eps);
            if (Group.IdxX == 0) { mean[run] = m; rstd[run] = rs; }

            for (int e = Group.IdxX; e < length; e += Group.DimX)
            {
                int c = args.Channel(run, e);
                float v = (x[start + e] - m) * (rs * gamma[c]) + beta[c];
                y[start + e] = args.Silu != 0 ? v * Sigmoid(v) : v;
            }
        }
    }

    /// <summary>v2, pass 1: a group per (run, chunk) writes the chunk's mean and M2 = Σ(x − mean)², by the corrected
    /// two-pass reduction of v1 over the chunk (whose second read comes from cache).</summary>
    internal static void NormChunkStatsKernel(ArrayView<float> x, ArrayView<float> partials, NormArgs args, NormChunks chunks)
    {
        var warpPartials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        var sum = default(SumReduction);
        for (int block = Grid.IdxX; block < args.Runs * chunks.Count; block += Grid.DimX)
        {
            int run = block / chunks.Count, begin = (block - run * chunks.Count) * chunks.Length;
            int count = XMath.Min(chunks.Length, args.GroupLength - begin);
            long start = (long)run * args.GroupLength + begin;
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
            if (Group.IdxX != 0) continue;
            partials[2 * block] = center + deviation / count;
            partials[2 * block + 1] = MaxOrNaN(squares - deviation * deviation / count, 0f);
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
            long start = (long)run * length;
            int end = XMath.Min(length, begin + chunks.Length);
            for (int e = begin + Group.IdxX; e < end; e += Group.DimX)
            {
                int c = args.Channel(run, e);
                float v = (x[start + e] - m) * (rs * gamma[c]) + beta[c];
                y[start + e] = args.Silu != 0 ? v * Sigmoid(v) : v;
            }
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

    /// <summary>A group per (n, c) plane: sums[0, n, c] = Σ_hw dv·x̂, sums[1, n, c] = Σ_hw dv.</summary>
    internal static void GroupNormPlaneSumsKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dy, ArrayView<float> sums, NormArgs args)
    {
        var partials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        var sum = default(SumReduction);
        int planes = args.N * args.C;
        for (int plane = Grid.IdxX; plane < planes; plane += Grid.DimX)
        {
            int n = plane / args.C, c = plane - n * args.C, run = n * args.Groups + c / args.PerGroup;
            long start = (long)plane * args.HW;
            float m = mean[run], rs = rstd[run], g = gamma[c], b = beta[c];
            float sumDvXhat = 0f, sumDv = 0f;
            for (int e = Group.IdxX; e < args.HW; e += Group.DimX)
            {
                float xhat = (x[start + e] - m) * rs, dv = args.OutputGrad(dy[start + e], xhat, g, b);
                sumDvXhat += dv * xhat;
                sumDv += dv;
            }
            sumDvXhat = GroupAllReduce(sum, sumDvXhat, partials);
            sumDv = GroupAllReduce(sum, sumDv, partials);
            if (Group.IdxX == 0) { sums[plane] = sumDvXhat; sums[planes + plane] = sumDv; }
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
