using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// Embedding lookup (row gather) and its gradient (row scatter-add) on an ILGPU accelerator, and LFQBert's bit
// expansion of token groups. The scatter-add is deterministic without sorting or atomics: group g owns the weight
// rows r with r mod groups = g, walks all indices in order and adds the dy rows of the ones it owns (its threads
// split the columns). Each weight row thus sums its contributions in index order, like the CPU kernel, whatever
// the launch geometry. Bad indices are recorded as the backend's index fault (IndexFault) and read as row 0.
public sealed partial class IlgpuBackend
{
    public struct TableArgs
    {
        public int Count, Dim, Rows, MaskToken;
    }

    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, TableArgs> EmbeddingForwardEntry = EmbeddingForwardKernel;
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<float>, TableArgs> EmbeddingBackwardEntry = EmbeddingBackwardKernel;
    private static readonly Action<ArrayView<int>, ArrayView<float>, ArrayView<int>, TableArgs> TokenBitsEntry = TokenBitsKernel;

    public void EmbeddingForward(int count, int dim, int rows, Buf weight, Buf indices, Buf y)
    {
        long n = (long)count * dim;
        if (n == 0) return;
        RequireOneLaunch(n, "embedding");
        Kernel(EmbeddingForwardEntry)(
            GridStride(n, Sizes.ElementGroup), F(weight, (long)rows * dim), I(indices, count), F(y, n), IndexFaultView,
            new TableArgs { Count = count, Dim = dim, Rows = rows });
    }

    public void EmbeddingBackward(int count, int dim, int rows, Buf dy, Buf indices, Buf dweight)
    {
        long n = (long)count * dim;
        if (n == 0) return;
        RequireOneLaunch(n, "embedding");
        Kernel(EmbeddingBackwardEntry)(
            new KernelConfig(Sizes.MaxElementGroups, Sizes.ElementGroup), F(dy, n), I(indices, count), F(dweight, (long)rows * dim),
            new TableArgs { Count = count, Dim = dim, Rows = rows });
    }

    public void TokenBits(int count, int bits, int maskToken, Buf tokens, Buf y)
    {
        long n = (long)count * bits;
        if (n == 0) return;
        RequireOneLaunch(n, "bit tokens");
        Kernel(TokenBitsEntry)(
            GridStride(n, Sizes.ElementGroup), I(tokens, count), F(y, n), IndexFaultView,
            new TableArgs { Count = count, Dim = bits, Rows = Cpu.TokenBitValue.Count(bits, maskToken), MaskToken = maskToken });
    }

    /// <summary>A thread per output element: y[i, d] = w[idx[i], d].</summary>
    internal static void EmbeddingForwardKernel(ArrayView<float> weight, ArrayView<int> indices, ArrayView<float> y, ArrayView<int> fault, TableArgs a)
    {
        long n = (long)a.Count * a.Dim;
        for (long e = Grid.GlobalIndex.X; e < n; e += GridStrideStep)
        {
            int i = (int)(e / a.Dim), row = indices[i];
            if (!InTable(fault, IndexedOp.Embedding, row, i, a.Rows)) row = 0;
            y[e] = weight[(long)row * a.Dim + (e - (long)i * a.Dim)];
        }
    }

    /// <summary>dweight[idx[i]] += dy[i], rows owned by groups (see the file comment); bad rows add nothing.</summary>
    internal static void EmbeddingBackwardKernel(ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dweight, TableArgs a)
    {
        for (int i = 0; i < a.Count; i++)
        {
            int row = indices[i];
            if ((uint)row >= (uint)a.Rows || row % Grid.DimX != Grid.IdxX) continue;
            for (int d = Group.IdxX; d < a.Dim; d += Group.DimX) dweight[(long)row * a.Dim + d] += dy[(long)i * a.Dim + d];
        }
    }

    /// <summary>A thread per output value (Rows valid values).</summary>
    internal static void TokenBitsKernel(ArrayView<int> tokens, ArrayView<float> y, ArrayView<int> fault, TableArgs a)
    {
        long n = (long)a.Count * a.Dim;
        for (long e = Grid.GlobalIndex.X; e < n; e += GridStrideStep)
        {
            int i = (int)(e / a.Dim), token = tokens[i];
            y[e] = InTable(fault, IndexedOp.TokenBits, token, i, a.Rows) ? Cpu.TokenBitValue.Of(token, (int)(e - (long)i * a.Dim), a.MaskToken) : 0f;
        }
    }
}
