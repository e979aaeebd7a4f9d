using MaskBit.Autograd;
using MaskBit.Distributed;
using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Models.Config;
using MaskBit.Models.Training;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Distributed;

/// <summary>
/// The NCCL binding and the choice between NCCL and the host-staged MPI path. Without a GPU only the loading and the
/// choice run here; <see cref="NcclOnOneRankSumsAndBroadcastsCudaBuffers"/> runs the calls on a CUDA machine with
/// NCCL (bench/gpu-check.sh). The host-staged path on device buffers is tested on ilgpu-cpu in
/// <see cref="DataParallelTests"/>, across processes on the CPU backend in <see cref="MpiTrainingTests"/>.
/// </summary>
[TestFixture]
public class NcclTests
{
    [Test]
    public void AMissingLibraryIsOneLineThatNamesIt()
    {
        Assert.That(NcclLibrary.TryLoad(["libnccl-not-installed.so.2"], out var problem), Is.Null);
        Assert.That(problem, Does.StartWith("libnccl-not-installed.so.2 not found: install NCCL").And.Contain(NcclLibrary.LibraryVariable));
        Assert.That(problem, Does.Not.Contain('\n'));
    }

    [Test]
    public void ALibraryWithoutNcclsEntryPointsIsNamedWithTheFirstMissingSymbol()
    {
        // The C math library loads everywhere and exports none of NCCL's symbols.
        Assert.That(NcclLibrary.TryLoad(["libm.so.6"], out var problem), Is.Null);
        Assert.That(problem, Is.EqualTo("libm.so.6: symbol ncclGetVersion not found (not NCCL 2.x?)"));
    }

    [Test]
    public void TheDefaultUsesNcclOnlyOnCudaWhenItLoads()
    {
        var device = CpuBackend.Instance;
        int asked = 0;
        string? Loads() { asked++; return null; }
        string? Missing() { asked++; return "libnccl.so.2 not found: install NCCL"; }
        Assert.That(DeviceCollectives.Choose(null, device, isCuda: true, Loads), Is.EqualTo(DevicePath.Nccl));
        Assert.That(DeviceCollectives.Choose("auto", device, isCuda: true, Missing), Is.EqualTo(DevicePath.HostStaged));
        Assert.That(asked, Is.EqualTo(2));
        Assert.That(DeviceCollectives.Choose("", device, isCuda: false, Loads), Is.EqualTo(DevicePath.HostStaged));
        Assert.That(DeviceCollectives.Choose("host", device, isCuda: true, Loads), Is.EqualTo(DevicePath.HostStaged));
        Assert.That(asked, Is.EqualTo(2), "NCCL is loaded only where it could be used");
        Assert.That(DeviceCollectives.Choose("nccl", device, isCuda: true, Loads), Is.EqualTo(DevicePath.Nccl));
    }

    [Test]
    public void AskingForNcclWhereItCannotRunIsAOneLineConfigError()
    {
        var device = CpuBackend.Instance;
        NcclLibrary.TryLoad(["libnccl-not-installed.so.2"], out var problem);
        var missing = Assert.Throws<ConfigException>(() => DeviceCollectives.Choose("nccl", device, isCuda: true, () => problem))!;
        Assert.That(missing.Message, Does.StartWith($"{DeviceCollectives.Variable}=nccl: libnccl-not-installed.so.2 not found"));
        var offCuda = Assert.Throws<ConfigException>(() => DeviceCollectives.Choose("nccl", device, isCuda: false, () => null))!;
        Assert.That(offCuda.Message, Does.Contain("NCCL moves CUDA device buffers, this run's device is cpu"));
        var unknown = Assert.Throws<ConfigException>(() => DeviceCollectives.Choose("gloo", device, isCuda: true, () => null))!;
        Assert.That(unknown.Message, Is.EqualTo($"{DeviceCollectives.Variable}=gloo: expected auto, nccl or host"));
    }

    [Test]
    public void OneProcessNeedsNoDeviceCollectives() =>
        Assert.That(DeviceCollectives.For(SingleProcess.Instance, CpuBackend.Instance), Is.Null);

    [Test]
    public void OffCudaTheBackendGivesNoDeviceAddresses() =>
        Assert.That(TestDevices.SharedIlgpuCpu.CudaFloats(Tensor.Zeros([4], TestDevices.SharedIlgpuCpu).Buf, 4), Is.Null);

    /// <summary>NCCL with one rank still runs every call (id, communicator, all-reduce and broadcast on the device's
    /// stream): the sum over one rank and the broadcast from it leave the buffer as it was, and an offset address
    /// reaches the right elements.</summary>
    [Test]
    [NonParallelizable]
    public void NcclOnOneRankSumsAndBroadcastsCudaBuffers()
    {
        if (!TestDevices.Names.Contains(TestDevices.Cuda)) Assert.Ignore("cuda is not among the test devices (MASKBIT_TEST_CUDA=1 or MASKBIT_TEST_DEVICES)");
        var cuda = (IlgpuBackend)TestDevices.Get(TestDevices.Cuda);
        var library = NcclLibrary.TryLoad(out var problem) ?? throw new IgnoreException($"no NCCL: {problem}");
        TestContext.Out.WriteLine(library);
        cuda.BindToThread();
        using var communicator = new NcclCommunicator(library, SingleProcess.Instance);
        var nccl = new NcclOnDevice(communicator, cuda);
        var values = Enumerable.Range(0, 1000).Select(i => i * 0.5f - 7f).ToArray();
        using var scope = TensorScope.Begin();
        var t = Tensor.FromArray(values, [1000], cuda);
        nccl.AllReduceSum(t.Buf.At(10), 990);
        nccl.Broadcast(t.Buf, 1000);
        Assert.That(t.ToArray(), Is.EqualTo(values));
    }
}
