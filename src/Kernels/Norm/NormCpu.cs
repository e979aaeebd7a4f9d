namespace MaskBit.Kernels.Cpu;

public sealed partial class CpuBackend
{
    public void GroupNormForward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd) => throw new NotImplementedException();
    public void GroupNormBackward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf mean, Buf rstd, Buf dy, Buf dx, Buf dgamma, Buf dbeta) => throw new NotImplementedException();
    public void LayerNormForward(int rows, int cols, float eps, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd) => throw new NotImplementedException();
    public void LayerNormBackward(int rows, int cols, Buf x, Buf gamma, Buf mean, Buf rstd, Buf dy, Buf dx, Buf dgamma, Buf dbeta) => throw new NotImplementedException();
}
