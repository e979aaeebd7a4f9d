using MaskBit.Kernels;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Convolution forward and both backwards on every test device against the CPU backend, for every
/// shape the models use (odd map sizes throughout): implicit-GEMM and direct paths, groups, split-K weight
/// gradients, with and without bias.</summary>
public sealed class ConvDeviceTests : DeviceTestBase
{
    private const double Tolerance = 2e-5;

    /// <summary>A case: (N, Cin, H, W, Cout, KH, KW, stride, pad top, left, bottom, right, groups, bias).</summary>
    private static readonly (string Name, Conv2dDesc Desc, bool Bias)[] Cases =
    [
        ("3×3 stride 1 SAME", Desc(2, 5, 7, 6, 6, 3, 3, 1, 1, 1, 1, 1), true),
        ("1×1", Desc(2, 6, 5, 5, 7, 1, 1, 1, 0, 0, 0, 0), false),
        ("4×4 stride 2 (discriminator)", Desc(2, 4, 9, 8, 5, 4, 4, 2, 1, 1, 1, 1), true),
        ("3×3 stride 2, padding (0, 0, 1, 1)", Desc(1, 4, 8, 7, 4, 3, 3, 2, 0, 0, 1, 1), true),
        ("depthwise 5×5 blur", Desc(2, 4, 9, 9, 4, 5, 5, 1, 2, 2, 2, 2, groups: 4), false),
        ("depthwise 4×4 stride 2", Desc(1, 3, 8, 8, 3, 4, 4, 2, 1, 1, 1, 1, groups: 3), true),
        ("depthwise 4×4 stride 2, rows of a vector and more", Desc(2, 3, 21, 22, 3, 4, 4, 2, 1, 1, 1, 1, groups: 3), true),
        ("depthwise 2×2, sliced weight gradient", Desc(2, 2, 16, 15, 2, 2, 2, 1, 0, 0, 1, 1, groups: 2), false),
        ("grouped 3×3", Desc(1, 8, 6, 5, 8, 3, 3, 1, 1, 1, 1, 1, groups: 2), true),
        ("RGB input (direct)", Desc(2, 3, 6, 5, 8, 3, 3, 1, 1, 1, 1, 1), true),
        ("one output channel 4×4 (direct)", Desc(1, 6, 6, 6, 1, 4, 4, 1, 1, 1, 2, 2), true),
        ("split-K weight gradient", Desc(2, 4, 16, 16, 5, 3, 3, 1, 1, 1, 1, 1), true),
        ("1×7 (Inception)", Desc(2, 4, 5, 9, 3, 1, 7, 1, 0, 3, 0, 3), true),
        ("7×7 stride 2 (ResNet stem)", Desc(1, 3, 11, 10, 5, 7, 7, 2, 3, 3, 3, 3), false),
    ];

    private static Conv2dDesc Desc(int n, int cin, int h, int w, int cout, int kh, int kw, int stride,
        int top, int left, int bottom, int right, int groups = 1) =>
        new(n, cin, h, w, cout, kh, kw, stride, stride, top, left,
            Conv2dDesc.OutSize(h, kh, stride, top, bottom), Conv2dDesc.OutSize(w, kw, stride, left, right), groups);

    private static IEnumerable<TestCaseData> ConvCases() =>
        from device in TestDevices.Names
        from c in Cases
        select new TestCaseData(device, c.Desc, c.Bias).SetArgDisplayNames(device, c.Name);

    [TestCaseSource(nameof(ConvCases))]
    public void ForwardAndBackward(string device, Conv2dDesc desc, bool bias) =>
        AssertMatchesReference(TestDevices.Get(device), desc, bias, device);

    [Test]
    public void GpuTileOnTheCpuAccelerator()
    {
        // The 64×64 tile CUDA launches, on a CPU accelerator of its own (its 256-thread groups would slow every
        // later launch on the shared one).
        using var device = IlgpuBackend.CreateCpu(TestDevices.SharedIlgpuCpu.Sizes with { LargeGemmTile = true });
        foreach (var (name, desc, bias) in Cases.Where(c => c.Name.StartsWith("split")))
            AssertMatchesReference(device, desc, bias, $"{name} with 64×64 tiles");
    }

    [Test]
    public void LabGemmVersionOnTheCpuAccelerator()
    {
        // The implicit-GEMM convolutions run through the GEMM version CUDA uses (the lab's 128×128 tiles with
        // split-K), on a CPU accelerator of their own.
        int version = MaskBit.Kernels.Lab.GemmLab.BackendVersion;
        using var device = IlgpuBackend.CreateCpu(TestDevices.SharedIlgpuCpu.Sizes with { LargeGemmTile = true, GemmVersion = version });
        foreach (var (name, desc, bias) in Cases)
            AssertMatchesReference(device, desc, bias, $"{name} with GEMM v{version}");
    }

    private void AssertMatchesReference(IBackend device, Conv2dDesc d, bool bias, string what)
    {
        int xLen = d.N * d.Cin * d.H * d.W, yLen = d.N * d.Cout * d.OH * d.OW, wLen = d.Cout * d.CinPerGroup * d.KH * d.KW;
        float[] x = RandomValues(xLen, 1), w = RandomValues(wLen, 2), b = RandomValues(d.Cout, 3), dy = RandomValues(yLen, 4);
        var expected = Run(Reference);
        var actual = Run(device);
        string[] names = ["y", "dx", "dw", "dbias"];
        for (int i = 0; i < names.Length; i++)
            if (expected[i] != null) AssertScaled(actual[i]!, expected[i]!, Tolerance, $"{names[i]} of {d} on {what}");

        float[]?[] Run(IBackend dev)
        {
            Buf xb = Put(dev, x), wb = Put(dev, w), bb = Put(dev, b), dyb = Put(dev, dy);
            Buf y = Put(dev, Nans(yLen)), dx = Put(dev, Nans(xLen)), dw = Put(dev, Nans(wLen)), db = Put(dev, Nans(d.Cout));
            dev.Conv2dForward(d, xb, wb, bias ? bb : null, y);
            dev.Conv2dBackwardInput(d, dyb, wb, dx);
            dev.Conv2dBackwardWeight(d, xb, dyb, dw, bias ? db : null);
            return [Read(dev, y, yLen), Read(dev, dx, xLen), Read(dev, dw, wLen), bias ? Read(dev, db, d.Cout) : null];
        }
    }

    private static float[] Nans(int n) => Enumerable.Repeat(float.NaN, n).ToArray();
}
