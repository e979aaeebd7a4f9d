using System.Runtime.InteropServices;
using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Tests.Ilgpu;

/// <summary>Start-up on a driver-only machine, tested without a GPU: the resolver for ILGPU's <c>cuda</c> import
/// loads <c>libcuda.so.1</c> from a folder that has only the soname (a real shared library under that name stands
/// in for the driver), the probe reports a missing or foreign library in one line, and CUDA failures say what to try.</summary>
public sealed class CudaDriverTests
{
    private string _dir = "";

    [SetUp]
    public void MakeLibraryFolder() => _dir = Directory.CreateTempSubdirectory("maskbit-fake-driver-").FullName;

    [TearDown]
    public void RemoveLibraryFolder() => Directory.Delete(_dir, recursive: true);

    /// <summary>A loadable shared library that is not a CUDA driver: the runtime's own System.Native.</summary>
    private static string AnySharedLibrary() =>
        Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), OperatingSystem.IsMacOS() ? "libSystem.Native.dylib" : "libSystem.Native.so");

    /// <summary>Loads names from the fake folder only (as the loader would from LD_LIBRARY_PATH), noting each try.</summary>
    private Func<string, nint> LoaderOfFolder(List<string> tried) => name =>
    {
        tried.Add(name);
        string path = Path.Combine(_dir, name);
        return File.Exists(path) && NativeLibrary.TryLoad(path, out var handle) ? handle : 0;
    };

    [Test]
    public void ResolverLoadsTheSonameWhenOnlyItExists()
    {
        Assume.That(OperatingSystem.IsLinux(), "libcuda.so.1 is the Linux driver's name");
        File.Copy(AnySharedLibrary(), Path.Combine(_dir, "libcuda.so.1"));
        var tried = new List<string>();
        nint handle = CudaDriver.Resolve("cuda", LoaderOfFolder(tried));
        Assert.That(handle, Is.Not.EqualTo(nint.Zero), "libcuda.so.1 was not loaded");
        Assert.That(tried, Is.EqualTo(new[] { "libcuda.so.1" }), "the soname is tried first and ends the search");
    }

    [Test]
    public void ResolverFallsBackToTheUnversionedLinkAndLeavesOtherLibrariesAlone()
    {
        Assume.That(OperatingSystem.IsLinux(), "libcuda.so.1 is the Linux driver's name");
        File.Copy(AnySharedLibrary(), Path.Combine(_dir, "libcuda.so"));
        var tried = new List<string>();
        Assert.That(CudaDriver.Resolve("cuda", LoaderOfFolder(tried)), Is.Not.EqualTo(nint.Zero));
        Assert.That(tried, Is.EqualTo(new[] { "libcuda.so.1", "libcuda.so" }));

        tried.Clear();
        Assert.That(CudaDriver.Resolve("nvml", LoaderOfFolder(tried)), Is.EqualTo(nint.Zero));
        Assert.That(tried, Is.Empty, "only ILGPU's cuda import is redirected");
    }

    [Test]
    public void ProbeWithoutADriverSaysWhereToLookInOneLine()
    {
        var status = CudaDriver.Probe(CudaDriver.LinuxLibraryNames, LoaderOfFolder([]));
        Assert.That(status.Devices, Is.Empty);
        Assert.That(status.Problem, Does.Contain("libcuda.so.1").And.Contain("LD_LIBRARY_PATH").And.Not.Contain("\n"));
    }

    [Test]
    public void ProbeOfALibraryThatIsNotTheDriverSaysSo()
    {
        Assume.That(OperatingSystem.IsLinux(), "libcuda.so.1 is the Linux driver's name");
        File.Copy(AnySharedLibrary(), Path.Combine(_dir, "libcuda.so.1"));
        var status = CudaDriver.Probe(CudaDriver.LinuxLibraryNames, LoaderOfFolder([]));
        Assert.That(status.Library, Is.EqualTo("libcuda.so.1"));
        Assert.That(status.Problem, Does.Contain("libcuda.so.1 lacks the CUDA driver API"));
    }

    [TestCase("CUDA_ERROR_STUB_LIBRARY", "stubs")]
    [TestCase("CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "kernel module")]
    [TestCase("CUDA_ERROR_DEVICE_UNAVAILABLE", "exclusive compute mode")]
    [TestCase("CUDA_ERROR_OUT_OF_MEMORY", "nvidia-smi")]
    [TestCase("CUDA_ERROR_NO_DEVICE", "CUDA_VISIBLE_DEVICES")]
    [TestCase("CUDA_ERROR_LAUNCH_FAILED", "--device cpu")]
    public void EveryDriverErrorComesWithSomethingToTry(string error, string advice) =>
        Assert.That(CudaDriver.Hint(error), Does.Contain(advice));

    [Test]
    public void DriverVersionReadsAsCudaDoes() =>
        Assert.That(new CudaDriverStatus("libcuda.so.1", 12040, [], null).VersionText, Is.EqualTo("12.4"));

    [Test]
    public void WithoutADriverCreatingCudaFailsInOneLineAndInfoSaysWhy()
    {
        var driver = CudaDriver.Probe();
        Assume.That(driver.Problem, Is.Not.Null, "this machine has a working CUDA driver");
        var e = Assert.Throws<InvalidOperationException>(() => IlgpuBackend.CreateCuda())!;
        Assert.That(e.Message, Does.StartWith("CUDA is not available: ").And.Contain(driver.Problem!).And.Not.Contain("\n"));
        Assert.That(IlgpuBackend.DescribeCuda(), Is.EqualTo(new[] { $"cuda: none — {driver.Problem}" }));
    }
}
