using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Element-wise kernels, strided copies and Where on every test device against the CPU backend.</summary>
public sealed class ElementwiseDeviceTests : DeviceTestBase
{
    private const double Tolerance = 1e-5;
    private const double GeluAbsTolerance = 1.5e-6;   // float rational erf vs the CPU's double erf
    private const int N = 1013;

    /// <summary>Every UnaryOp with its alpha and whether it needs positive inputs (PowScalar twice: an odd
    /// integral power of negative inputs and a fractional power).</summary>
    private static IEnumerable<object[]> UnaryOps()
    {
        foreach (var op in Enum.GetValues<UnaryOp>())
        {
            switch (op)
            {
                case UnaryOp.Log or UnaryOp.Sqrt or UnaryOp.Rsqrt: yield return [op, 0f, true]; break;
                case UnaryOp.LeakyRelu: yield return [op, 0.1f, false]; break;
                case UnaryOp.Scale: yield return [op, 1.7f, false]; break;
                case UnaryOp.AddScalar: yield return [op, -0.3f, false]; break;
                case UnaryOp.PowScalar: yield return [op, 3f, false]; yield return [op, 2.5f, true]; break;
                case UnaryOp.ClampMin: yield return [op, 0.25f, false]; break;
                case UnaryOp.ClampMax: yield return [op, -0.5f, false]; break;
                default: yield return [op, 0f, false]; break;
            }
        }
    }

    private static IEnumerable<TestCaseData> UnaryCases() => OnDevices(UnaryOps());
    private static IEnumerable<TestCaseData> UnaryBackwardCases() =>
        OnDevices(UnaryOps().SelectMany(c => new[] { (object[])[.. c, false], [.. c, true] }));

    /// <summary>Inputs with the kinks included: 0, ±alpha.</summary>
    private static float[] UnaryInputs(float alpha, bool positive, int seed)
    {
        var x = positive ? RandomValues(N, seed, 0.05f, 4f) : RandomValues(N, seed);
        if (!positive) { x[0] = 0f; x[1] = alpha; x[2] = -alpha; }
        return x;
    }

    [TestCaseSource(nameof(UnaryCases))]
    public void Unary(string device, UnaryOp op, float alpha, bool positive)
    {
        var x = UnaryInputs(alpha, positive, seed: (int)op);
        var (expected, actual) = RunBoth(device, [x], N, (d, i, y) => d.Unary(op, i[0], y, N, alpha));
        if (op == UnaryOp.Gelu) AssertAbsolute(actual, expected, GeluAbsTolerance, $"{op} on {device}");
        else AssertScaled(actual, expected, Tolerance, $"{op}({alpha}) on {device}");
    }

    [TestCaseSource(nameof(UnaryBackwardCases))]
    public void UnaryBackward(string device, UnaryOp op, float alpha, bool positive, bool accumulate)
    {
        var x = UnaryInputs(alpha, positive, seed: 100 + (int)op);
        var y = Read(Reference, ForwardOnReference(op, Put(Reference, x), alpha), N);
        var dy = RandomValues(N, seed: 200 + (int)op);
        var dxInitial = RandomValues(N, seed: 300 + (int)op);
        var (expected, actual) = RunBoth(device, [x, y, dy], N,
            (d, i, dx) => d.UnaryBackward(op, i[0], i[1], i[2], dx, N, alpha, accumulate),
            accumulate ? dxInitial : null);
        if (op == UnaryOp.Gelu) AssertAbsolute(actual, expected, 4 * GeluAbsTolerance, $"{op}' on {device}");
        else AssertScaled(actual, expected, Tolerance, $"{op}'({alpha}) accumulate={accumulate} on {device}");
    }

    private Buf ForwardOnReference(UnaryOp op, Buf x, float alpha)
    {
        var y = Put(Reference, new float[N]);
        Reference.Unary(op, x, y, N, alpha);
        return y;
    }

    [Test]
    public void GeluMatchesExactErfGelu()
    {
        // The device GELU against erf evaluated in double (not only against the CPU backend's own approximation).
        var x = Enumerable.Range(0, 1201).Select(i => -6f + i * 0.01f).ToArray();
        var device = TestDevices.Get(TestDevices.IlgpuCpu);
        var y = Put(device, new float[x.Length]);
        device.Unary(UnaryOp.Gelu, Put(device, x), y, x.Length);
        var expected = x.Select(v => (float)(0.5 * v * (1 + ErfDouble(v / Math.Sqrt(2))))).ToArray();
        AssertAbsolute(Read(device, y, x.Length), expected, 1e-6, "exact GELU");
    }

    /// <summary>erf to ~1e-15 by its Taylor series (|x| ≤ 4.3 here) — an independent reference.</summary>
    private static double ErfDouble(double x)
    {
        double sum = 0, term = x;
        for (int n = 0; n < 200; n++)
        {
            sum += term / (2 * n + 1);
            term *= -x * x / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    private static readonly (int[] A, int[] B)[] BroadcastShapes =
    [
        ([3, 4, 5], [3, 4, 5]),
        ([3, 4, 5], [5]),
        ([3, 1, 5], [1, 4, 1]),
        ([2, 3, 1, 4], [3, 5, 1]),
        ([], [7]),
        ([2, 3, 1, 1, 4, 5, 2], [2, 3, 1, 1, 1, 5, 2]),   // rank 7: more axes than a kernel takes until merged to 3
    ];

    private static IEnumerable<TestCaseData> BinaryCases() => OnDevices(Enum.GetValues<BinaryOp>().Select(op => new object[] { op }));

    [TestCaseSource(nameof(BinaryCases))]
    public void BinaryWithBroadcast(string device, BinaryOp op)
    {
        foreach (var (aShape, bShape) in BroadcastShapes)
        {
            var shape = ShapeUtil.Broadcast(aShape, bShape, "test");
            int n = (int)ShapeUtil.Numel(shape);
            // Half-steps make ties for the comparisons; the divisor stays away from 0.
            var a = RandomValues((int)ShapeUtil.Numel(aShape), 1).Select(v => MathF.Round(v * 2) / 2).ToArray();
            var b = RandomValues((int)ShapeUtil.Numel(bShape), 2).Select(v => MathF.Round(v * 2) / 2).ToArray();
            if (op == BinaryOp.Div) b = b.Select(v => v >= 0 ? v + 0.5f : v - 0.5f).ToArray();
            var (expected, actual) = RunBoth(device, [a, b], n, (d, i, y) =>
                d.Binary(op, i[0], ShapeUtil.BroadcastStrides(aShape, shape), i[1], ShapeUtil.BroadcastStrides(bShape, shape), y, shape));
            AssertScaled(actual, expected, Tolerance, $"{op} {ShapeUtil.Format(aShape)}∘{ShapeUtil.Format(bShape)} on {device}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void BinaryWithTransposedOperand(string device)
    {
        // a is stored (4, 3) and read as its (3, 4) transpose.
        var a = RandomValues(12, 3); var b = RandomValues(12, 4);
        var (expected, actual) = RunBoth(device, [a, b], 12, (d, i, y) => d.Binary(BinaryOp.Sub, i[0], [1, 3], i[1], [4, 1], y, [3, 4]));
        AssertScaled(actual, expected, 0, $"transposed a on {device}");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void FillCopyWhere(string device)
    {
        var (expected, actual) = RunBoth(device, [], 77, (d, _, y) => d.Fill(y, 77, -2.5f));
        AssertScaled(actual, expected, 0, "fill");

        var x = RandomValues(N, 5);
        (expected, actual) = RunBoth(device, [x], N, (d, i, y) => d.Copy(i[0], y, N));
        AssertScaled(actual, expected, 0, "copy");

        var cond = RandomValues(N, 6).Select(v => v > 0 ? 1f : 0f).ToArray();
        (expected, actual) = RunBoth(device, [cond, RandomValues(N, 7), RandomValues(N, 8)], N, (d, i, y) => d.Where(i[0], i[1], i[2], y, N));
        AssertScaled(actual, expected, 0, "where");

        var dev = TestDevices.Get(device);
        var ints = Enumerable.Range(-50, 101).ToArray();
        var intCopy = PutInts(dev, new int[ints.Length]);
        dev.Copy(PutInts(dev, ints), intCopy, ints.Length);
        var back = new int[ints.Length];
        dev.Download(intCopy, back);
        Assert.That(back, Is.EqualTo(ints), "int copy");
    }

    /// <summary>(name, source length, source offset, x strides, destination length, y strides, shape, accumulate).</summary>
    private static readonly (string Name, int XLength, int XOffset, int[] XStrides, int YLength, int[] YStrides, int[] Shape, bool Accumulate)[] StridedCopies =
    [
        ("permute (2,3,4)->(4,2,3)", 24, 0, [1, 12, 4], 24, [6, 3, 1], [4, 2, 3], false),
        ("slice rows 1..3, cols 2..4 of (5,6)", 30, 8, [6, 1], 9, [3, 1], [3, 3], false),
        ("expand (3,1)->(3,4)", 3, 0, [1, 0], 12, [4, 1], [3, 4], false),
        ("accumulate into every other column of (4,6)", 12, 0, [3, 1], 24, [6, 2], [4, 3], true),
        ("accumulate into an expanded destination (sum over the last axis)", 15, 0, [5, 1], 3, [1, 0], [3, 5], true),
        ("rank 7, contiguous", 48, 0, [24, 12, 12, 4, 4, 2, 1], 48, [24, 12, 12, 4, 4, 2, 1], [2, 2, 1, 3, 1, 2, 2], false),
        ("0-d", 1, 0, [], 1, [], [], false),
        ("permute (2,3,4,5)->(4,2,5,3): short rows, every outer index carries", 120, 0, [5, 60, 1, 20], 120, [30, 15, 3, 1], [4, 2, 5, 3], false),
        ("narrow axis 1 of (2,5,3,4) to 1..4: merges into 2 rows of 36", 120, 12, [60, 12, 4, 1], 72, [36, 12, 4, 1], [2, 3, 3, 4], false),
    ];

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void CopyStrided(string device)
    {
        foreach (var c in StridedCopies)
        {
            var x = RandomValues(c.XLength, 9);
            var y0 = c.Accumulate ? RandomValues(c.YLength, 10) : Enumerable.Repeat(float.NaN, c.YLength).ToArray();
            var (expected, actual) = RunBoth(device, [x], c.YLength,
                (d, i, y) => d.CopyStrided(i[0].At(c.XOffset), c.XStrides, y, c.YStrides, c.Shape, c.Accumulate), y0);
            AssertScaled(actual, expected, Tolerance, $"{c.Name} on {device}");
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.Names))]
    public void CopyStridedInts(string device)
    {
        var dev = TestDevices.Get(device);
        var x = Enumerable.Range(0, 24).ToArray();
        var y = PutInts(dev, new int[24]);
        dev.CopyStrided(PutInts(dev, x), [1, 12, 4], y, [6, 3, 1], [4, 2, 3]);
        var actual = new int[24];
        dev.Download(y, actual);
        var expected = new int[24];
        for (int i = 0; i < 4; i++) for (int j = 0; j < 2; j++) for (int k = 0; k < 3; k++) expected[i * 6 + j * 3 + k] = x[i + j * 12 + k * 4];
        Assert.That(actual, Is.EqualTo(expected));
    }
}
