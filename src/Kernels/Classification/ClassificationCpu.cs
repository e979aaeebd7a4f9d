namespace MaskBit.Kernels.Cpu;

// What a classifier's training logs besides its loss: per row whether the argmax hits the target, and which rows
// count for the masked statistics (see IModelOps.PredictionTally). The argmax is ClassificationMath's, shared with
// the ILGPU kernel.
public sealed partial class CpuBackend
{
    public void PredictionTally(int rows, int cols, Buf scores, Buf targets, Buf mask, Buf loss, Buf tally)
    {
        float[] sa = Arr(scores), la = Arr(loss), ya = Arr(tally);
        int[] ta = IntArr(targets), ma = IntArr(mask);
        int so = Off(scores), lo = Off(loss), yo = Off(tally), to = Off(targets), mo = Off(mask);
        var values = new HostFloats(sa);
        CpuParallel.For(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                bool hit = ClassificationMath.ArgMax(values, so + (long)r * cols, cols) == ta[to + r], masked = ma[mo + r] != 0;
                ya[yo + r] = masked ? 1f : 0f;
                ya[yo + rows + r] = masked ? la[lo + r] : 0f;
                ya[yo + 2 * rows + r] = hit ? 1f : 0f;
                ya[yo + 3 * rows + r] = masked && hit ? 1f : 0f;
            }
        }, costPerItem: cols);
    }

    public void ArgExtremeRows(int rows, int cols, bool min, Buf scores, Buf indices)
    {
        float[] sa = Arr(scores); int[] ia = IntArr(indices);
        int so = Off(scores), io = Off(indices);
        var values = new HostFloats(sa);
        CpuParallel.For(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++) ia[io + r] = ClassificationMath.ArgExtreme(values, so + (long)r * cols, cols, min);
        }, costPerItem: cols);
    }
}
