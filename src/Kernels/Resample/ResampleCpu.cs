namespace MaskBit.Kernels.Cpu;

public sealed partial class CpuBackend
{
    public void AvgPool2x2Forward(int planes, int h, int w, Buf x, Buf y) => throw new NotImplementedException();
    public void AvgPool2x2Backward(int planes, int h, int w, Buf dy, Buf dx) => throw new NotImplementedException();
    public void AdaptiveMaxPoolForward(int planes, int h, int w, int oh, int ow, Buf x, Buf y, Buf argmax) => throw new NotImplementedException();
    public void AdaptiveMaxPoolBackward(int planes, int h, int w, int oh, int ow, Buf dy, Buf argmax, Buf dx) => throw new NotImplementedException();
    public void UpsampleNearest2xForward(int planes, int h, int w, Buf x, Buf y) => throw new NotImplementedException();
    public void UpsampleNearest2xBackward(int planes, int h, int w, Buf dy, Buf dx) => throw new NotImplementedException();
}
