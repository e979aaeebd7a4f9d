using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Embedding lookup (row gather) and its gradient (row scatter-add) on an ILGPU accelerator. The scatter-add is
// deterministic without sorting or atomics: group g owns the weight rows r with r mod groups = g, walks all
// indices in order and adds the dy rows of the ones it owns (its threads split the columns). Each weight row thus
// sums its contributions in index order, like the CPU kernel, whatever the launch geometry.
public sealed partial class IlgpuBackend
{
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int> EmbeddingForwardEntry = EmbeddingForwardKernel;
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int> EmbeddingBackwardEntry = EmbeddingBackwardKernel;

    private static IEnumerable<MethodInfo> EmbeddingEntryPoints => [EmbeddingForwardEntry.Method, EmbeddingBackwardEntry.Method];

    private Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>? _embeddingForward, _embeddingBackward;

    public void EmbeddingForward(int count, int dim, Buf weight, Buf indices, Buf y)
    {
        long n = (long)count * dim;
        if (n == 0) return;
        RequireOneLaunch(n, "embedding");
        // The weight view spans what the indices can reach; the caller validated them against its rows.
        Kernel(ref _embeddingForward, static a => a.LoadStreamKernel(EmbeddingForwardEntry))(
            GridStride(n, Sizes.ElementGroup), WeightView(weight), I(indices, count), F(y, n), count, dim);
    }

    public void EmbeddingBackward(int count, int dim, Buf dy, Buf indices, Buf dweight)
    {
        long n = (long)count * dim;
        if (n == 0) return;
        RequireOneLaunch(n, "embedding");
        Kernel(ref _embeddingBackward, static a => a.LoadStreamKernel(EmbeddingBackwardEntry))(
            new KernelConfig(Sizes.MaxElementGroups, Sizes.ElementGroup), F(dy, n), I(indices, count), WeightView(dweight), count, dim);
    }

    /// <summary>The weight matrix from its offset to the end of its storage (the row count is not passed).</summary>
    private ArrayView<float> WeightView(Buf weight) => F(weight, weight.Storage.Length - weight.Offset);

    /// <summary>A thread per output element: y[i, d] = w[idx[i], d].</summary>
    internal static void EmbeddingForwardKernel(ArrayView<float> weight, ArrayView<int> indices, ArrayView<float> y, int count, int dim)
    {
        long n = (long)count * dim;
        for (long e = Grid.GlobalIndex.X; e < n; e += GridStrideStep)
        {
            int i = (int)(e / dim);
            y[e] = weight[(long)indices[i] * dim + (e - (long)i * dim)];
        }
    }

    /// <summary>dweight[idx[i]] += dy[i], rows owned by groups (see the file comment).</summary>
    internal static void EmbeddingBackwardKernel(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dweight, int count, int dim)
    {
        for (int i = 0; i < count; i++)
        {
            int row = indices[i];
            if (row % Grid.DimX != Grid.IdxX) continue;
            for (int d = Group.IdxX; d < dim; d += Group.DimX) dweight[(long)row * dim + d] += dy[(long)i * dim + d];
        }
    }
}
