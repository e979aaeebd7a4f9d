namespace MaskBit.Kernels.Cpu;

public sealed partial class CpuBackend
{
    public void AttentionForward(int batchHeads, int seq, int headDim, float scale, Buf q, Buf k, Buf v, Buf output, Buf lse) => throw new NotImplementedException();
    public void AttentionBackward(int batchHeads, int seq, int headDim, float scale, Buf q, Buf k, Buf v, Buf output, Buf lse, Buf dOutput, Buf dq, Buf dk, Buf dv) => throw new NotImplementedException();
}
