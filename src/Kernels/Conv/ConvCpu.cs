namespace MaskBit.Kernels.Cpu;

public sealed partial class CpuBackend
{
    public void Conv2dForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y) => throw new NotImplementedException();
    public void Conv2dBackwardInput(in Conv2dDesc d, Buf dy, Buf w, Buf dx) => throw new NotImplementedException();
    public void Conv2dBackwardWeight(in Conv2dDesc d, Buf x, Buf dy, Buf dw, Buf? dbias) => throw new NotImplementedException();
}
