namespace MaskBit.Kernels.Ilgpu;

// The ops that have no ILGPU kernel yet, in one place: each throws until its kernel lands in the family's
// *Ilgpu.cs file (then the line here is deleted).
public sealed partial class IlgpuBackend
{
    private static NotSupportedException NoKernel(string op) => new($"{op} has no ILGPU kernel yet (GPU backend issue)");

    public void Conv2dForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y) => throw NoKernel(nameof(Conv2dForward));
    public void Conv2dBackwardInput(in Conv2dDesc d, Buf dy, Buf w, Buf dx) => throw NoKernel(nameof(Conv2dBackwardInput));
    public void Conv2dBackwardWeight(in Conv2dDesc d, Buf x, Buf dy, Buf dw, Buf? dbias) => throw NoKernel(nameof(Conv2dBackwardWeight));

    public void AvgPool2x2Forward(int planes, int h, int w, Buf x, Buf y) => throw NoKernel(nameof(AvgPool2x2Forward));
    public void AvgPool2x2Backward(int planes, int h, int w, Buf dy, Buf dx) => throw NoKernel(nameof(AvgPool2x2Backward));
    public void AdaptiveMaxPoolForward(int planes, int h, int w, int oh, int ow, Buf x, Buf y, Buf argmax) => throw NoKernel(nameof(AdaptiveMaxPoolForward));
    public void AdaptiveMaxPoolBackward(int planes, int h, int w, int oh, int ow, Buf dy, Buf argmax, Buf dx) => throw NoKernel(nameof(AdaptiveMaxPoolBackward));
    public void MaxPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf x, Buf y, Buf argmax) => throw NoKernel(nameof(MaxPool2dForward));
    public void MaxPool2dBackward(int planes, int h, int w, int oh, int ow, Buf dy, Buf argmax, Buf dx) => throw NoKernel(nameof(MaxPool2dBackward));
    public void AvgPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, bool countIncludePad, Buf x, Buf y) => throw NoKernel(nameof(AvgPool2dForward));
    public void AvgPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, bool countIncludePad, Buf dy, Buf dx) => throw NoKernel(nameof(AvgPool2dBackward));
    public void UpsampleNearest2xForward(int planes, int h, int w, Buf x, Buf y) => throw NoKernel(nameof(UpsampleNearest2xForward));
    public void UpsampleNearest2xBackward(int planes, int h, int w, Buf dy, Buf dx) => throw NoKernel(nameof(UpsampleNearest2xBackward));

    public void AdamWUpdate(Buf param, Buf grad, Buf expAvg, Buf expAvgSq, long n, in AdamWScalars s) => throw NoKernel(nameof(AdamWUpdate));
    public void EmaUpdate(Buf shadow, Buf param, long n, float oneMinusDecay) => throw NoKernel(nameof(EmaUpdate));

    public void LfqQuantize(int batch, int bits, int hw, Buf z, Buf zq, Buf indices, Buf commitmentSum) => throw NoKernel(nameof(LfqQuantize));
    public void LfqEntropyForward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf result) => throw NoKernel(nameof(LfqEntropyForward));
    public void LfqEntropyBackward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf dResult, Buf dz) => throw NoKernel(nameof(LfqEntropyBackward));
}
