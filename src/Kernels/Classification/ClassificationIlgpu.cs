using ILGPU;
using ILGPU.Runtime;

namespace MaskBit.Kernels.Ilgpu;

// A classifier's logged statistics on an ILGPU accelerator (see IModelOps.PredictionTally): a thread per row scans
// its scores for the argmax (rows are a few thousand classes wide at most), so the scores never leave the device.
public sealed partial class IlgpuBackend
{
    private static readonly Action<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int>
        PredictionTallyEntry = PredictionTallyKernel;
    private static readonly Action<ArrayView<float>, ArrayView<int>, int, int, int> ArgExtremeRowsEntry = ArgExtremeRowsKernel;

    public void ArgExtremeRows(int rows, int cols, bool min, Buf scores, Buf indices)
    {
        if (rows == 0) return;
        Kernel(ArgExtremeRowsEntry)(GridStride(rows, Sizes.ElementGroup), F(scores, (long)rows * cols), I(indices, rows), rows, cols, min ? 1 : 0);
    }

    public void PredictionTally(int rows, int cols, Buf scores, Buf targets, Buf mask, Buf loss, Buf tally)
    {
        if (rows == 0) return;
        Kernel(PredictionTallyEntry)(GridStride(rows, Sizes.ElementGroup),
            F(scores, (long)rows * cols), I(targets, rows), I(mask, rows), F(loss, rows), F(tally, 4L * rows), rows, cols);
    }

    /// <summary>A thread per row: its hit and mask flags and masked loss into the four planes of the tally.</summary>
    internal static void PredictionTallyKernel(ArrayView<float> scores, ArrayView<int> targets, ArrayView<int> mask, ArrayView<float> loss,
        ArrayView<float> tally, int rows, int cols)
    {
        var values = new DeviceFloats(scores);
        for (int r = Grid.GlobalIndex.X; r < rows; r = GridStrideNext(r, rows, GridStrideStep))
        {
            bool hit = ClassificationMath.ArgMax(values, (long)r * cols, cols) == targets[r], masked = mask[r] != 0;
            tally[r] = masked ? 1f : 0f;
            tally[rows + r] = masked ? loss[r] : 0f;
            tally[2L * rows + r] = hit ? 1f : 0f;
            tally[3L * rows + r] = masked && hit ? 1f : 0f;
        }
    }

    /// <summary>A thread per row scans it (rows are a classifier's classes or a codebook's scores: thousands at most).</summary>
    internal static void ArgExtremeRowsKernel(ArrayView<float> scores, ArrayView<int> indices, int rows, int cols, int min)
    {
        var values = new DeviceFloats(scores);
        for (int r = Grid.GlobalIndex.X; r < rows; r = GridStrideNext(r, rows, GridStrideStep))
            indices[r] = ClassificationMath.ArgExtreme(values, (long)r * cols, cols, min != 0);
    }
}
