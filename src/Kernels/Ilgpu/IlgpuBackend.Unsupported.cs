namespace MaskBit.Kernels.Ilgpu;

// The ops that have no ILGPU kernel yet, in one place: each throws until its kernel lands in the family's
// *Ilgpu.cs file (then the line here is deleted).
public sealed partial class IlgpuBackend
{
    private static NotSupportedException NoKernel(string op) => new($"{op} has no ILGPU kernel yet (GPU backend issue)");

    public void GroupNormForward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd) => throw NoKernel(nameof(GroupNormForward));
    public void GroupNormBackward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf mean, Buf rstd, Buf dy, Buf dx, Buf dgamma, Buf dbeta) => throw NoKernel(nameof(GroupNormBackward));
    public void LayerNormForward(int rows, int cols, float eps, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd) => throw NoKernel(nameof(LayerNormForward));
    public void LayerNormBackward(int rows, int cols, Buf x, Buf gamma, Buf mean, Buf rstd, Buf dy, Buf dx, Buf dgamma, Buf dbeta) => throw NoKernel(nameof(LayerNormBackward));

    public void SoftmaxForward(int rows, int cols, Buf x, Buf y, bool log) => throw NoKernel(nameof(SoftmaxForward));
    public void SoftmaxBackward(int rows, int cols, Buf y, Buf dy, Buf dx, bool log) => throw NoKernel(nameof(SoftmaxBackward));
    public void CrossEntropyForward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf loss, Buf lse) => throw NoKernel(nameof(CrossEntropyForward));
    public void CrossEntropyBackward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf lse, Buf dloss, Buf dlogits) => throw NoKernel(nameof(CrossEntropyBackward));

    public void EmbeddingForward(int count, int dim, Buf weight, Buf indices, Buf y) => throw NoKernel(nameof(EmbeddingForward));
    public void EmbeddingBackward(int count, int dim, Buf dy, Buf indices, Buf dweight) => throw NoKernel(nameof(EmbeddingBackward));

    public void AttentionForward(int batchHeads, int seq, int headDim, float scale, Buf q, Buf k, Buf v, Buf output, Buf lse) => throw NoKernel(nameof(AttentionForward));
    public void AttentionBackward(int batchHeads, int seq, int headDim, float scale, Buf q, Buf k, Buf v, Buf output, Buf lse, Buf dOutput, Buf dq, Buf dk, Buf dv) => throw NoKernel(nameof(AttentionBackward));
}
