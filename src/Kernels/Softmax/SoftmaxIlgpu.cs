using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Softmax / log-softmax over the last axis and label-smoothed cross-entropy on an ILGPU accelerator: a group
// of threads per row (grid-stride over rows), row statistics by group reductions that every thread receives.
// The cross-entropy gradient needs no reduction (the forward saved each row's log-sum-exp): a thread per element.
public sealed partial class IlgpuBackend
{
    public struct RowArgs
    {
        public int Rows, Cols;
        /// <summary>Log-softmax instead of softmax (0/1).</summary>
        public int Log;
        public float LabelSmoothing;
    }

    private static readonly Action<ArrayView<float>, ArrayView<float>, RowArgs> SoftmaxForwardEntry = SoftmaxForwardKernel;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, RowArgs> SoftmaxBackwardEntry = SoftmaxBackwardKernel;
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, RowArgs> CrossEntropyForwardEntry = CrossEntropyForwardKernel;
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, RowArgs> CrossEntropyBackwardEntry = CrossEntropyBackwardKernel;

    // ---- host side ----------------------------------------------------------------------------------------
    public void SoftmaxForward(int rows, int cols, Buf x, Buf y, bool log)
    {
        long n = RowElements(rows, cols);
        if (n == 0) return;
        Kernel(SoftmaxForwardEntry)(
            new KernelConfig(RowGroups(rows), Sizes.ReduceGroup), F(x, n), F(y, n), new RowArgs { Rows = rows, Cols = cols, Log = log ? 1 : 0 });
    }

    public void SoftmaxBackward(int rows, int cols, Buf y, Buf dy, Buf dx, bool log)
    {
        long n = RowElements(rows, cols);
        if (n == 0) return;
        Kernel(SoftmaxBackwardEntry)(
            new KernelConfig(RowGroups(rows), Sizes.ReduceGroup), F(y, n), F(dy, n), F(dx, n), new RowArgs { Rows = rows, Cols = cols, Log = log ? 1 : 0 });
    }

    public void CrossEntropyForward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf loss, Buf lse)
    {
        long n = RowElements(rows, cols);
        if (n == 0) return;
        Kernel(CrossEntropyForwardEntry)(
            new KernelConfig(RowGroups(rows), Sizes.ReduceGroup), F(logits, n), I(targets, rows), F(loss, rows), F(lse, rows), IndexFaultView,
            new RowArgs { Rows = rows, Cols = cols, LabelSmoothing = labelSmoothing });
    }

    public void CrossEntropyBackward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf lse, Buf dloss, Buf dlogits)
    {
        long n = RowElements(rows, cols);
        if (n == 0) return;
        Kernel(CrossEntropyBackwardEntry)(
            GridStride(n, Sizes.ElementGroup), F(logits, n), I(targets, rows), F(lse, rows), F(dloss, rows), F(dlogits, n),
            new RowArgs { Rows = rows, Cols = cols, LabelSmoothing = labelSmoothing });
    }

    private static long RowElements(int rows, int cols)
    {
        long n = (long)rows * cols;
        RequireOneLaunch(n, "softmax");
        return n;
    }

    // ---- kernels ------------------------------------------------------------------------------------------
    /// <summary>A group per row: max, Σ e^(x − max), then p or log p.</summary>
    internal static void SoftmaxForwardKernel(ArrayView<float> x, ArrayView<float> y, RowArgs args)
    {
        var partials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        for (int row = Grid.IdxX; row < args.Rows; row += Grid.DimX)
        {
            long start = (long)row * args.Cols;
            float max = RowMax(x, start, args.Cols, partials);
            float sumExp = 0f;
            for (int c = Group.IdxX; c < args.Cols; c += Group.DimX) sumExp += XMath.Exp(x[start + c] - max);
            sumExp = GroupAllReduce(default(SumReduction), sumExp, partials);
            float logSum = XMath.Log(sumExp), inverseSum = 1f / sumExp;
            for (int c = Group.IdxX; c < args.Cols; c += Group.DimX)
            {
                float shifted = x[start + c] - max;
                y[start + c] = args.Log != 0 ? shifted - logSum : XMath.Exp(shifted) * inverseSum;
            }
        }
    }

    /// <summary>A group per row: log-softmax dx = dy − p·Σdy; softmax dx = p·(dy − Σ dy·p).</summary>
    internal static void SoftmaxBackwardKernel(ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, RowArgs args)
    {
        var partials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        for (int row = Grid.IdxX; row < args.Rows; row += Grid.DimX)
        {
            long start = (long)row * args.Cols;
            float acc = 0f;
            for (int c = Group.IdxX; c < args.Cols; c += Group.DimX) acc += args.Log != 0 ? dy[start + c] : dy[start + c] * y[start + c];
            float total = GroupAllReduce(default(SumReduction), acc, partials);
            for (int c = Group.IdxX; c < args.Cols; c += Group.DimX)
            {
                long i = start + c;
                dx[i] = args.Log != 0 ? dy[i] - XMath.Exp(y[i]) * total : y[i] * (dy[i] - total);
            }
        }
    }

    /// <summary>A group per row: lse = max + log Σ e^(x − max), loss = lse − (1−ε)·x[t] − ε/C·Σ x.</summary>
    internal static void CrossEntropyForwardKernel(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss,
        ArrayView<float> lse, ArrayView<int> fault, RowArgs args)
    {
        var partials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        var sum = default(SumReduction);
        for (int row = Grid.IdxX; row < args.Rows; row += Grid.DimX)
        {
            long start = (long)row * args.Cols;
            float max = RowMax(logits, start, args.Cols, partials);
            float sumExp = 0f, sumX = 0f;
            for (int c = Group.IdxX; c < args.Cols; c += Group.DimX)
            {
                float v = logits[start + c];
                sumExp += XMath.Exp(v - max);
                sumX += v;
            }
            sumExp = GroupAllReduce(sum, sumExp, partials);
            sumX = GroupAllReduce(sum, sumX, partials);
            if (Group.IdxX == 0)
            {
                float rowLse = max + XMath.Log(sumExp);
                lse[row] = rowLse;
                int target = targets[row];
                float targetLogit = InTable(fault, IndexedOp.CrossEntropy, target, row, args.Cols) ? logits[start + target] : 0f;
                loss[row] = rowLse - (1f - args.LabelSmoothing) * targetLogit - args.LabelSmoothing * sumX / args.Cols;
            }
        }
    }

    /// <summary>A thread per element: dx = g·(e^(x − lse) − ε/C − (1−ε)·[c = t]).</summary>
    internal static void CrossEntropyBackwardKernel(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse,
        ArrayView<float> dloss, ArrayView<float> dlogits, RowArgs args)
    {
        long n = (long)args.Rows * args.Cols;
        float smoothing = args.LabelSmoothing / args.Cols;
        for (long i = Grid.GlobalIndex.X; i < n; i += GridStrideStep)
        {
            int row = (int)(i / args.Cols), c = (int)(i - (long)row * args.Cols);
            float hit = c == targets[row] ? 1f - args.LabelSmoothing : 0f;
            dlogits[i] = dloss[row] * (XMath.Exp(logits[i] - lse[row]) - smoothing - hit);
        }
    }

    /// <summary>The maximum of x[start, start + cols), in every thread of the group.</summary>
    private static float RowMax(ArrayView<float> x, long start, int cols, ArrayView<float> partials)
    {
        var max = default(MaxReduction);
        float acc = max.Identity;
        for (int c = Group.IdxX; c < cols; c += Group.DimX) acc = max.Combine(acc, x[start + c]);
        return GroupAllReduce(max, acc, partials);
    }
}
