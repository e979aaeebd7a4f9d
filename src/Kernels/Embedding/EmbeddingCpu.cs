namespace MaskBit.Kernels.Cpu;

public sealed partial class CpuBackend
{
    public void EmbeddingForward(int count, int dim, Buf weight, Buf indices, Buf y) => throw new NotImplementedException();
    public void EmbeddingBackward(int count, int dim, Buf dy, Buf indices, Buf dweight) => throw new NotImplementedException();
}
