using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Axis reductions over a contiguous (outer, mid, inner) view: y[o, i] = ⊕_m x[o, m, i].
public sealed partial class IlgpuBackend
{
    /// <summary>An associative reduction with its identity (generic struct: inlined into the kernel).</summary>
    internal interface IReduction
    {
        float Identity { get; }
        float Combine(float a, float b);
    }

    internal readonly struct SumReduction : IReduction
    {
        public float Identity => 0f;
        public float Combine(float a, float b) => a + b;
    }

    internal readonly struct MaxReduction : IReduction
    {
        public float Identity => float.NegativeInfinity;
        public float Combine(float a, float b) => MaxOrNaN(a, b);
    }

    public struct ReduceArgs
    {
        public int Outer, Mid, Inner;
        public float Scale;
        public int Accumulate;

        public readonly int Outputs => Outer * Inner;

        /// <summary>Offset of x[o, 0, i] for output index o·inner + i.</summary>
        public readonly long First(int output)
        {
            int o = output / Inner;
            return (long)o * Mid * Inner + (output - o * Inner);
        }

        public readonly float Finish(float reduced, float previous) =>
            Accumulate != 0 ? previous + Scale * reduced : Scale * reduced;
    }

    private static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> SumGroupEntry = ReduceGroupKernel<SumReduction>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> MaxGroupEntry = ReduceGroupKernel<MaxReduction>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> SumThreadEntry = ReduceThreadKernel<SumReduction>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> MaxThreadEntry = ReduceThreadKernel<MaxReduction>;

    public void ReduceSum(Buf x, Buf y, int outer, int mid, int inner, float scale = 1f, bool accumulate = false) =>
        Reduce(x, y, new ReduceArgs { Outer = outer, Mid = mid, Inner = inner, Scale = scale, Accumulate = accumulate ? 1 : 0 }, max: false);

    public void ReduceMax(Buf x, Buf y, int outer, int mid, int inner) =>
        Reduce(x, y, new ReduceArgs { Outer = outer, Mid = mid, Inner = inner, Scale = 1f }, max: true);

    private void Reduce(Buf x, Buf y, ReduceArgs args, bool max)
    {
        long outputs = (long)args.Outer * args.Inner, inputs = outputs * args.Mid;
        if (outputs == 0) return;
        if (inputs > int.MaxValue) throw new NotSupportedException($"reduction over {inputs} elements exceeds one ILGPU launch");
        var xv = F(x, inputs);
        var yv = F(y, outputs);
        // Contiguous rows (inner = 1), or too few outputs to occupy the device one thread each: a group per
        // output, its threads striding over mid. Otherwise a thread per output, whose loads over i coalesce.
        bool groupPerOutput = args.Inner == 1 || outputs < (long)Sizes.ElementGroup * Sizes.MaxElementGroups;
        if (groupPerOutput)
        {
            var kernel = max ? Kernel(MaxGroupEntry)
                             : Kernel(SumGroupEntry);
            kernel(new KernelConfig(RowGroups(outputs), Sizes.ReduceGroup), xv, yv, args);
        }
        else
        {
            var kernel = max ? Kernel(MaxThreadEntry)
                             : Kernel(SumThreadEntry);
            kernel(GridStride(outputs, Sizes.ElementGroup), xv, yv, args);
        }
    }

    /// <summary>Groups stride over the outputs; the threads of a group stride over mid, then combine their
    /// partials with warp shuffles and one shared-memory slot per warp.</summary>
    internal static void ReduceGroupKernel<TReduction>(ArrayView<float> x, ArrayView<float> y, ReduceArgs args)
        where TReduction : struct, IReduction
    {
        var warpPartials = SharedMemory.Allocate<float>(MaxWarpsPerGroup);
        var op = default(TReduction);
        for (int output = Grid.IdxX; output < args.Outputs; output += Grid.DimX)
        {
            long first = args.First(output);
            float acc = op.Identity;
            for (int m = Group.IdxX; m < args.Mid; m += Group.DimX) acc = op.Combine(acc, x[first + (long)m * args.Inner]);
            acc = GroupReduce(op, acc, warpPartials);
            if (Group.IdxX == 0) y[output] = args.Finish(acc, y[output]);
            Group.Barrier();   // warpPartials is rewritten by the next output
        }
    }

    /// <summary>One thread per output; the loop over mid reads consecutive i in consecutive threads.</summary>
    internal static void ReduceThreadKernel<TReduction>(ArrayView<float> x, ArrayView<float> y, ReduceArgs args)
        where TReduction : struct, IReduction
    {
        var op = default(TReduction);
        for (int output = Grid.GlobalIndex.X; output < args.Outputs; output = GridStrideNext(output, args.Outputs, GridStrideStep))
        {
            long first = args.First(output);
            float acc = op.Identity;
            for (int m = 0; m < args.Mid; m++) acc = op.Combine(acc, x[first + (long)m * args.Inner]);
            y[output] = args.Finish(acc, y[output]);
        }
    }

    /// <summary>1024 threads (the CUDA maximum) in warps of 32.</summary>
    private const int MaxWarpsPerGroup = 32;

    /// <summary>The reduction of <paramref name="value"/> over the group, valid in thread 0. Every thread of the
    /// group must call it; the group size is a multiple of the warp size.</summary>
    private static float GroupReduce<TReduction>(TReduction op, float value, ArrayView<float> warpPartials)
        where TReduction : struct, IReduction
    {
        value = WarpReduce(op, value);
        if (Warp.IsFirstLane) warpPartials[Warp.WarpIdx] = value;
        Group.Barrier();
        if (Warp.WarpIdx != 0) return value;
        // A group may hold more warps than a warp has lanes (narrow warps on the CPU accelerator): each lane
        // first combines every warp-size-th partial.
        float partial = op.Identity;
        for (int w = Warp.LaneIdx, warps = Group.DimX / Warp.WarpSize; w < warps; w += Warp.WarpSize)
            partial = op.Combine(partial, warpPartials[w]);
        return WarpReduce(op, partial);
    }

    /// <summary>The reduction of <paramref name="value"/> over the group, returned to every thread (for row
    /// statistics that all threads go on to use). Every thread of the group must call it; the group size is a
    /// multiple of the warp size. warpPartials is free again on return.</summary>
    private static float GroupAllReduce<TReduction>(TReduction op, float value, ArrayView<float> warpPartials)
        where TReduction : struct, IReduction
    {
        value = WarpReduce(op, value);
        if (Warp.IsFirstLane) warpPartials[Warp.WarpIdx] = value;
        Group.Barrier();
        // Every thread combines the partials in the same order, so all see the same bits.
        float result = warpPartials[0];
        for (int w = 1, warps = Group.DimX / Warp.WarpSize; w < warps; w++) result = op.Combine(result, warpPartials[w]);
        Group.Barrier();
        return result;
    }

    /// <summary>Butterfly reduction over the lanes of a warp: the same result in every lane.</summary>
    private static float WarpAllReduce<TReduction>(TReduction op, float value) where TReduction : struct, IReduction
    {
        for (int mask = Warp.WarpSize / 2; mask > 0; mask /= 2) value = op.Combine(value, Warp.ShuffleXor(value, mask));
        return value;
    }

    /// <summary>Groups for a launch with one group per row (or plane) and grid-stride over the rest: as many
    /// threads in flight as a full element-wise launch.</summary>
    private int RowGroups(long rows) =>
        (int)Math.Clamp((long)Sizes.MaxElementGroups * Sizes.ElementGroup / Sizes.ReduceGroup, 1, Math.Max(rows, 1));

    /// <summary>Tree reduction over the lanes of a warp (result in lane 0), for any warp size.</summary>
    private static float WarpReduce<TReduction>(TReduction op, float value) where TReduction : struct, IReduction
    {
        for (int delta = Warp.WarpSize / 2; delta > 0; delta /= 2) value = op.Combine(value, Warp.ShuffleDown(value, delta));
        return value;
    }
}
