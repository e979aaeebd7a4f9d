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
        nccl.WaitForCompletion("the test's collectives");
        Assert.That(t.ToArray(), Is.EqualTo(values));
    }
}

/// <summary>The watchdog over calls that block in NCCL or on its CUDA stream (which cannot be polled as MPI requests
/// are), with a stand-in group whose abort records the line and releases the stuck call instead of ending the process.
/// Across processes the abort is MPI_Abort, as for a timed-out MPI collective (<see cref="MpiTrainingTests"/>).</summary>
[TestFixture]
public class CollectiveWatchdogTests
{
    private sealed class RecordingGroup(int rank, TimeSpan timeout) : ICollectives
    {
        public readonly List<(string Message, int ExitCode)> Aborts = [];
        public readonly ManualResetEventSlim Aborted = new();

        public int Rank => rank;
        public int WorldSize => 2;
        public int LocalRank => rank;
        public TimeSpan Timeout => timeout;

        public void Abort(string message, int exitCode)
        {
            lock (Aborts) Aborts.Add((message, exitCode));
            Aborted.Set();
        }

        public void AllReduceSum(Span<float> buffer) => throw new NotSupportedException();
        public void AllReduceSum(Span<double> buffer) => throw new NotSupportedException();
        public IPendingCollective StartAllReduceSum(float[] buffer, int offset, int count) => throw new NotSupportedException();
        public void Broadcast(Span<float> buffer, int root = 0) => throw new NotSupportedException();
        public void Broadcast(Span<byte> buffer, int root = 0) => throw new NotSupportedException();
        public void Barrier() => throw new NotSupportedException();
        public double[] AllGather(double value) => throw new NotSupportedException();
        public void Dispose() => Aborted.Dispose();
    }

    [Test]
    public void ACollectiveThatNeverReturnsStopsTheJobNamingTheRankAfterTheTimeout()
    {
        using var group = new RecordingGroup(rank: 1, TimeSpan.FromSeconds(0.2));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // Stands for ncclCommInitRank or a stream sync whose peer is gone: it returns only because the stand-in's
        // abort lets it (MPI_Abort would end the process here).
        CollectiveWatchdog.Run(group, "ncclAllReduce", () => group.Aborted.Wait());
        Assert.That(clock.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(0.19)));
        Assert.That(group.Aborts, Is.EqualTo(new[]
        {
            ("rank 1: ncclAllReduce timed out after 0.2 s waiting for the other ranks (one is stuck or gone); stopping the job (MASKBIT_COLLECTIVE_TIMEOUT sets the limit)", 1),
        }));
    }

    [Test]
    public void ACollectiveThatReturnsInTimeIsLeftAloneAndItsErrorsPassThrough()
    {
        using var group = new RecordingGroup(rank: 0, TimeSpan.FromSeconds(0.2));
        int calls = 0;
        CollectiveWatchdog.Run(group, "ncclBroadcast", () => calls++);
        Assert.That(() => CollectiveWatchdog.Run(group, "ncclCommInitRank", () => throw new InvalidOperationException("unhandled cuda error")),
            Throws.InvalidOperationException.With.Message.EqualTo("unhandled cuda error"));
        Assert.That(group.Aborted.Wait(TimeSpan.FromSeconds(0.6)), Is.False, "no abort after the calls returned");
        Assert.That(calls, Is.EqualTo(1));
    }
}
