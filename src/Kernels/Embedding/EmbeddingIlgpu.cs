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
    private static readonly Action<ArrayView<float>, ArrayView<int>, TableArgs> BitsToIndicesEntry = BitsToIndicesKernel;
    private static readonly Action<ArrayView<int>, ArrayView<int>, ArrayView<int>, TableArgs> SplitTokenGroupsEntry = SplitTokenGroupsKernel;
    private static readonly Action<ArrayView<int>, ArrayView<int>, ArrayView<int>, TableArgs> CombineTokenGroupsEntry = CombineTokenGroupsKernel;

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

    public void BitsToIndices(int count, int bits, Buf values, Buf indices)
    {
        if (count == 0) return;
        Kernel(BitsToIndicesEntry)(GridStride(count, Sizes.ElementGroup), F(values, (long)count * bits), I(indices, count),
            new TableArgs { Count = count, Dim = bits });
    }

    public void SplitTokenGroups(int count, int splits, int shift, Buf tokens, Buf groups)
    {
        if (count == 0) return;
        RequireOneLaunch((long)count * splits, "token groups");
        Kernel(SplitTokenGroupsEntry)(GridStride(count, Sizes.ElementGroup), I(tokens, count), I(groups, (long)count * splits), IndexFaultView,
            new TableArgs { Count = count, Dim = splits, Rows = shift });
    }

    public void CombineTokenGroups(int count, int splits, int shift, Buf groups, Buf tokens)
    {
        if (count == 0) return;
        RequireOneLaunch((long)count * splits, "token groups");
        Kernel(CombineTokenGroupsEntry)(GridStride(count, Sizes.ElementGroup), I(groups, (long)count * splits), I(tokens, count), IndexFaultView,
            new TableArgs { Count = count, Dim = splits, Rows = shift });
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

    /// <summary>A thread per index (Dim bits): the signs of its row.</summary>
    internal static void BitsToIndicesKernel(ArrayView<float> values, ArrayView<int> indices, TableArgs a)
    {
        var rows = new DeviceFloats(values);
        for (int i = Grid.GlobalIndex.X; i < a.Count; i = GridStrideNext(i, a.Count, GridStrideStep))
            indices[i] = Cpu.TokenBitValue.Index(rows, (long)i * a.Dim, a.Dim);
    }

    /// <summary>A thread per token: its Dim groups of Rows bits; a bad token gives zeros.</summary>
    internal static void SplitTokenGroupsKernel(ArrayView<int> tokens, ArrayView<int> groups, ArrayView<int> fault, TableArgs a)
    {
        int groupMask = (1 << a.Rows) - 1;
        for (int t = Grid.GlobalIndex.X; t < a.Count; t = GridStrideNext(t, a.Count, GridStrideStep))
        {
            int token = tokens[t];
            if (!InTable(fault, IndexedOp.TokenGroups, token, t, 1 << a.Dim * a.Rows)) token = 0;
            for (int i = 0; i < a.Dim; i++) groups[(long)t * a.Dim + i] = token >> i * a.Rows & groupMask;
        }
    }

    /// <summary>A thread per token: its Dim groups of Rows bits combined; a bad group adds nothing.</summary>
    internal static void CombineTokenGroupsKernel(ArrayView<int> groups, ArrayView<int> tokens, ArrayView<int> fault, TableArgs a)
    {
        for (int t = Grid.GlobalIndex.X; t < a.Count; t = GridStrideNext(t, a.Count, GridStrideStep))
        {
            int token = 0;
            for (int i = 0; i < a.Dim; i++)
            {
                int position = t * a.Dim + i, group = groups[position];
                if (InTable(fault, IndexedOp.TokenGroups, group, position, 1 << a.Rows)) token |= group << i * a.Rows;
            }
            tokens[t] = token;
        }
    }
}
