namespace MaskBit.Kernels.Cpu;

public sealed partial class CpuBackend
{
    public void SoftmaxForward(int rows, int cols, Buf x, Buf y, bool log) => throw new NotImplementedException();
    public void SoftmaxBackward(int rows, int cols, Buf y, Buf dy, Buf dx, bool log) => throw new NotImplementedException();
    public void CrossEntropyForward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf loss, Buf lse) => throw new NotImplementedException();
    public void CrossEntropyBackward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf lse, Buf dloss, Buf dlogits) => throw new NotImplementedException();
}
