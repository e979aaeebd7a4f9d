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

    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs> NormForwardEntry = NormForwardKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs> NormInputGradEntry = NormInputGradKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs> GroupNormPlaneSumsEntry = GroupNormPlaneSumsKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, NormArgs, int> LayerNormColumnSumsEntry = LayerNormColumnSumsKernel;

    /// <summary>Rows per chunk of the LayerNorm γ/β partial sums.</summary>
    private const int LayerNormRowsPerChunk = 32;

    private static NormArgs GroupNormArgs(in GroupNormDesc d) =>
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

    private void NormForward(NormArgs args, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd)
    {
        long n = (long)args.N * args.C * args.HW;
        if (n == 0) return;
        RequireOneLaunch(n, "normalisation");
        Kernel(NormForwardEntry)(
            new KernelConfig(RowGroups(args.Runs), Sizes.ReduceGroup),
            F(x, n), F(gamma, args.C), F(beta, args.C), F(y, n), F(mean, args.Runs), F(rstd, args.Runs), args);
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
