using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>PredictionTally on every test device against a plain host oracle (all values exact): argmax ties go to
/// the first maximum, a NaN first score keeps index 0, and an unmasked NaN loss stays out of the masked sum.</summary>
public sealed class ClassificationDeviceTests : DeviceTestBase
{
    private static IEnumerable<TestCaseData> Cases() => OnDevices([[1, 1], [37, 5], [70, 33]]);

    [TestCaseSource(nameof(Cases))]
    public void PredictionTally(string device, int rows, int cols)
    {
        var rng = new Random(rows * 100 + cols);
        // Coarse scores make ties.
        var scores = Enumerable.Range(0, rows * cols).Select(_ => (float)rng.Next(4)).ToArray();
        if (rows > 2) scores[2 * cols] = float.NaN;
        var targets = Enumerable.Range(0, rows).Select(_ => rng.Next(cols)).ToArray();
        var mask = Enumerable.Range(0, rows).Select(r => r % 3 == 1 ? 0 : 1).ToArray();
        var loss = RandomValues(rows, rows, 0f, 5f);
        if (rows > 1) loss[1] = float.NaN;   // unmasked

        var expected = new float[4 * rows];
        for (int r = 0; r < rows; r++)
        {
            int best = 0;
            for (int c = 1; c < cols; c++) if (scores[r * cols + c] > scores[r * cols + best]) best = c;
            bool hit = best == targets[r], masked = mask[r] != 0;
            expected[r] = masked ? 1 : 0;
            expected[rows + r] = masked ? loss[r] : 0;
            expected[2 * rows + r] = hit ? 1 : 0;
            expected[3 * rows + r] = masked && hit ? 1 : 0;
        }

        var dev = TestDevices.Get(device);
        var tally = Put(dev, Enumerable.Repeat(float.NaN, 4 * rows).ToArray());
        dev.ModelOps.PredictionTally(rows, cols, Put(dev, scores), PutInts(dev, targets), PutInts(dev, mask), Put(dev, loss), tally);
        Assert.That(Read(dev, tally, 4 * rows), Is.EqualTo(expected));
    }
}
