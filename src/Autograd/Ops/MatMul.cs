using MaskBit.Kernels;

namespace MaskBit.Autograd;

// Matrix products: 2-D, batched (leading axes), and linear layers.
public sealed partial class Tensor
{
    /// <summary>Matrix product over the last two axes. Supported: (M,K)·(K,N), (…,M,K)·(K,N) (the right side is
    /// shared by every batch item), and (…,M,K)·(…,K,N) with equal batch shapes. Optional transposes read
    /// an operand as its transpose without copying it. Operands may be 16-bit tensors; under <see cref="Autocast"/>
    /// float32 ones are rounded to its type. The product accumulates in float32 and is float32.</summary>
    public static Tensor MatMul(Tensor a, Tensor b, bool transA = false, bool transB = false)
    {
        if (a.Rank < 2 || b.Rank < 2) throw new ArgumentException($"matmul needs rank ≥ 2, got {a} and {b}");
        int M = transA ? a.Shape[^1] : a.Shape[^2], Ka = transA ? a.Shape[^2] : a.Shape[^1];
        int Kb = transB ? b.Shape[^1] : b.Shape[^2], N = transB ? b.Shape[^2] : b.Shape[^1];
        if (Ka != Kb) throw new ArgumentException($"matmul: inner sizes differ: {ShapeUtil.Format(a.Shape)}{(transA ? "ᵀ" : "")} · {ShapeUtil.Format(b.Shape)}{(transB ? "ᵀ" : "")}");
        var batchShape = a.Shape[..^2];
        int batch = (int)ShapeUtil.Numel(batchShape);
        bool bShared = b.Rank == 2;
        if (!bShared && !b.Shape[..^2].AsSpan().SequenceEqual(batchShape))
            throw new ArgumentException($"matmul: batch shapes {ShapeUtil.Format(batchShape)} and {ShapeUtil.Format(b.Shape[..^2])} differ");

        // A shared right operand with a non-transposed left one folds the batch into M: one big GEMM.
        if (bShared && !transA && batch > 1)
            return MatMul(a.Reshape(-1, a.Shape[^1]), b, false, transB).Reshape(a.Shape[..^1].Append(N).ToArray());

        var y = Empty(batchShape.Append(M).Append(N).ToArray(), a.Device);
        var desc = new GemmDesc(M, N, Ka, transA, transB, batch, (long)M * Ka, bShared ? 0 : (long)Ka * N, (long)M * N);
        // Under autocast the operands (and what the backward keeps of them) are 16-bit copies; see Autocast.
        var precision = Autocast.DType;
        Tensor aKept = Autocast.Lower(a, precision), bKept = Autocast.Lower(b, precision);
        a.Device.Gemm(desc, aKept.Buf, bKept.Buf, y.Buf);   // the kernels read 16-bit operands as they pack them
        Tape.Record(y, "matmul", new[] { a, b }, [aKept, bKept], g =>
        {
            using var _ = Autocast.Enable(precision);
            // y = op(A)·op(B): dop(A) = g·op(B)ᵀ, dop(B) = op(A)ᵀ·g, then undo the transposes.
            Tensor? da = null, db = null;
            if (Tape.NeedsGrad(a))
            {
                if (!transA) da = MatMul(g, bKept, false, !transB);
                else if (!bShared) da = MatMul(bKept, g, transB, true);
                else da = MatMul(g, bKept, false, !transB).Transpose(-1, -2); // a shared op(B) cannot lead a batched product
            }
            if (Tape.NeedsGrad(b))
            {
                if (bShared)
                {
                    var a2 = aKept.Reshape(-1, a.Shape[^1]); var g2 = g.Reshape(-1, N);
                    // Batched A with transA cannot fold; sum per-batch products instead.
                    db = transA ? SumBatchedWeightGrad(aKept, g, transB) : (transB ? MatMul(g2, a2, true, false) : MatMul(a2, g2, true, false));
                }
                else db = transB ? MatMul(g, aKept, true, transA) : MatMul(aKept, g, !transA, false);
            }
            return new[] { da, db };
        });
        return y;
    }

    private static Tensor SumBatchedWeightGrad(Tensor a, Tensor g, bool transB)
    {
        // a: (batch, K, M) read transposed; g: (batch, M, N). dB (K,N) = Σ_b a_b·g_b, or its transpose.
        var per = transB ? MatMul(g, a, true, true) : MatMul(a, g, false, false);
        return per.Sum(Enumerable.Range(0, per.Rank - 2).ToArray());
    }

    public Tensor MatMul(Tensor other) => MatMul(this, other);

    /// <summary>y = x·Wᵀ + b with W (out, in), as torch.nn.functional.linear (16-bit operands under <see cref="Autocast"/>,
    /// the bias added in float32). With a bias, y starts as the bias in
    /// every row and the GEMM accumulates onto it (beta 1): no separate broadcast add, which would read and write y
    /// once more and allocate a second output.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (weight.Rank != 2 || x.Shape[^1] != weight.Shape[1])
            throw new ArgumentException($"linear: input {ShapeUtil.Format(x.Shape)} does not match weight {ShapeUtil.Format(weight.Shape)}");
        if (bias == null) return MatMul(x, weight, transB: true);
        int inFeatures = weight.Shape[1], outFeatures = weight.Shape[0];
        if (bias.Rank != 1 || bias.Shape[0] != outFeatures)
            throw new ArgumentException($"linear: bias {ShapeUtil.Format(bias.Shape)} does not match weight {ShapeUtil.Format(weight.Shape)}");
        int rows = (int)(x.Numel / inFeatures);
        var y = Empty(x.Shape[..^1].Append(outFeatures).ToArray(), x.Device);
        x.Device.CopyStrided(bias.Buf, new[] { 0, 1 }, y.Buf, new[] { outFeatures, 1 }, new[] { rows, outFeatures });
        var precision = Autocast.DType;
        Tensor xKept = Autocast.Lower(x, precision), weightKept = Autocast.Lower(weight, precision);
        x.Device.Gemm(new GemmDesc(rows, outFeatures, inFeatures, TransB: true), xKept.Buf, weightKept.Buf, y.Buf, beta: 1f);
        Tape.Record(y, "linear", new[] { x, weight, bias }, [xKept, weightKept], g =>
        {
            using var _ = Autocast.Enable(precision);
            // The gradient rounded once (torch's 16-bit backward sees it so): the bias gradient sums the same values.
            var g2 = Autocast.Lower(g, precision).To(DType.Float32).Reshape(rows, outFeatures);
            return new[]
            {
                Tape.NeedsGrad(x) ? MatMul(g2, weightKept).Reshape(x.Shape) : null,
                Tape.NeedsGrad(weight) ? MatMul(g2, xKept.Reshape(rows, inFeatures), transA: true) : null,
                Tape.NeedsGrad(bias) ? g2.Sum(0) : null,
            };
        });
        return y;
    }
}
