using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Axis reductions over a contiguous (outer, mid, inner) view: y[o, i] = ⊕_m x[o, m, i]. Two launch policies (the
// kernel lab's "reduce" family; the backend runs ReduceVersion):
// - v1: a 256-thread group per output for contiguous rows or when there are too few outputs to give each a thread,
//   else a thread per output — so an output that sums 4–30 values still takes a group, most of it idle;
// - v2: the shape is chosen by the reduced length: a thread per output for short rows (mid ≤ 16) and for strided
//   reductions (inner > 1: consecutive threads read consecutive i) up to mid 256, a warp per output (no barrier, no
//   shared memory) for contiguous rows up to 4096 values, a group per output only beyond.
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

    internal static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> SumGroupEntry = ReduceGroupKernel<SumReduction>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> MaxGroupEntry = ReduceGroupKernel<MaxReduction>;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> SumThreadEntry = ReduceThreadKernel<SumReduction>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> MaxThreadEntry = ReduceThreadKernel<MaxReduction>;
    internal static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> SumWarpEntry = ReduceWarpKernel<SumReduction>;
    private static readonly Action<ArrayView<float>, ArrayView<float>, ReduceArgs> MaxWarpEntry = ReduceWarpKernel<MaxReduction>;

    /// <summary>The launch policy of the reductions the backend runs (the kernel lab's reduce family).</summary>
    internal const int ReduceVersion = 2;

    /// <summary>The launch shapes of the reductions.</summary>
    internal enum ReduceShape { GroupPerOutput, WarpPerOutput, ThreadPerOutput }

    public void ReduceSum(Buf x, Buf y, int outer, int mid, int inner, float scale = 1f, bool accumulate = false) =>
        Reduce(ReduceVersion, x, y, new ReduceArgs { Outer = outer, Mid = mid, Inner = inner, Scale = scale, Accumulate = accumulate ? 1 : 0 }, max: false);

    public void ReduceMax(Buf x, Buf y, int outer, int mid, int inner) =>
        Reduce(ReduceVersion, x, y, new ReduceArgs { Outer = outer, Mid = mid, Inner = inner, Scale = 1f }, max: true);

    /// <summary>The reduction with the launch policy of <paramref name="version"/> (see the file comment).</summary>
    internal void Reduce(int version, Buf x, Buf y, ReduceArgs args, bool max)
    {
        long outputs = (long)args.Outer * args.Inner, inputs = outputs * args.Mid;
        if (outputs == 0) return;
        if (inputs > int.MaxValue) throw new NotSupportedException($"reduction over {inputs} elements exceeds one ILGPU launch");
        var xv = F(x, inputs);
        var yv = F(y, outputs);
        switch (Shape(version, args, outputs))
        {
            case ReduceShape.GroupPerOutput:
                (max ? Kernel(MaxGroupEntry) : Kernel(SumGroupEntry))(new KernelConfig(RowGroups(outputs), Sizes.ReduceGroup), xv, yv, args);
                break;
            case ReduceShape.WarpPerOutput:
                long groups = Math.Clamp((outputs * _accelerator.WarpSize + Sizes.ReduceGroup - 1) / Sizes.ReduceGroup, 1, RowGroups(outputs));
                (max ? Kernel(MaxWarpEntry) : Kernel(SumWarpEntry))(new KernelConfig((int)groups, Sizes.ReduceGroup), xv, yv, args);
                break;
            default:
                (max ? Kernel(MaxThreadEntry) : Kernel(SumThreadEntry))(GridStride(outputs, Sizes.ElementGroup), xv, yv, args);
                break;
        }
    }

    /// <summary>v1: a group per output for contiguous rows or too few outputs to occupy the device one thread each.
    /// v2: by the reduced length (see the file comment).</summary>
    internal ReduceShape Shape(int version, ReduceArgs args, long outputs)
    {
        if (version == 1)
            return args.Inner == 1 || outputs < (long)Sizes.ElementGroup * Sizes.MaxElementGroups ? ReduceShape.GroupPerOutput : ReduceShape.ThreadPerOutput;
        if (version != 2) throw new ArgumentOutOfRangeException(nameof(version), version, "reduce versions are 1 and 2");
        if (args.Mid <= 16 || (args.Inner > 1 && (args.Mid <= 256 || outputs >= (long)Sizes.ElementGroup * Sizes.MaxElementGroups)))
            return ReduceShape.ThreadPerOutput;
        return args.Inner == 1 && args.Mid <= 4096 ? ReduceShape.WarpPerOutput : ReduceShape.GroupPerOutput;
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

    /// <summary>A warp per output: its lanes stride over mid (consecutive lanes, consecutive values of a contiguous
    /// row), then a shuffle tree; no shared memory and no barrier, so a group serves Group.DimX / WarpSize outputs.</summary>
    internal static void ReduceWarpKernel<TReduction>(ArrayView<float> x, ArrayView<float> y, ReduceArgs args)
        where TReduction : struct, IReduction
    {
        var op = default(TReduction);
        int warpsPerGroup = Group.DimX / Warp.WarpSize, warps = Grid.DimX * warpsPerGroup;
        for (int output = Grid.IdxX * warpsPerGroup + Warp.WarpIdx; output < args.Outputs; output += warps)
        {
            long first = args.First(output);
            float acc = op.Identity;
            for (int m = Warp.LaneIdx; m < args.Mid; m += Warp.WarpSize) acc = op.Combine(acc, x[first + (long)m * args.Inner]);
            acc = WarpReduce(op, acc);
            if (Warp.IsFirstLane) y[output] = args.Finish(acc, y[output]);
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
