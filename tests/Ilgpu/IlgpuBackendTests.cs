using ILGPU;
using ILGPU.Runtime;
using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Ilgpu;

/// <summary>The ILGPU backend's plumbing: memory, pooling, errors, and the test harness's assertion counter.</summary>
[NonParallelizable]
public sealed class IlgpuBackendTests
{
    private static IlgpuBackend Backend => TestDevices.SharedIlgpuCpu;

    [Test]
    public void CpuAcceleratorIsConfiguredAsTheNotesSay()
    {
        var acc = Backend.Accelerator;
        Assert.That(acc.WarpSize, Is.EqualTo(32));
        Assert.That(acc.MaxNumThreadsPerGroup, Is.EqualTo(256));
        Assert.That(acc.NumMultiprocessors, Is.EqualTo(1));
        Assert.That(Backend.Name, Is.EqualTo("ilgpu-cpu"));
    }

    [Test]
    public void UploadDownloadRoundTripsAtOffsets()
    {
        using var s = Backend.Allocate(10);
        Backend.Upload([1f, 2f, 3f], new Buf(s, 4));
        var all = new float[10];
        Backend.Download(new Buf(s, 0), all);
        Assert.That(all, Is.EqualTo(new[] { 0f, 0, 0, 0, 1, 2, 3, 0, 0, 0 }), "a zeroed allocation with the upload at offset 4");

        using var ints = Backend.Allocate(4, DType.Int32);
        Backend.Upload([7, -8], new Buf(ints, 2));
        var back = new int[2];
        Backend.Download(new Buf(ints, 2), back);
        Assert.That(back, Is.EqualTo(new[] { 7, -8 }));
    }

    [Test]
    public void DisposedStorageIsReusedFromThePool()
    {
        const int length = 12345;   // a size no other test uses
        var first = Backend.Allocate(length);
        int buffers = Backend.FloatPool.BufferCount;
        first.Dispose();
        Assert.Throws<InvalidOperationException>(() => Backend.Download(new Buf(first, 0), new float[1]), "a disposed storage has no memory");
        using var second = Backend.Allocate(length, zero: false);
        Assert.That(Backend.FloatPool.BufferCount, Is.EqualTo(buffers), "the second storage got the first one's buffer, not a new one");
    }

    [Test]
    public void EmptyAndScalarTensors()
    {
        using var empty = Backend.Allocate(0);
        Backend.Fill(new Buf(empty, 0), 0, 1f);
        Backend.Unary(UnaryOp.Exp, new Buf(empty, 0), new Buf(empty, 0), 0);
        Backend.Binary(BinaryOp.Add, new Buf(empty, 0), [1], new Buf(empty, 0), [1], new Buf(empty, 0), [0]);
        Backend.ReduceSum(new Buf(empty, 0), new Buf(empty, 0), 0, 3, 1);
        Backend.Gemm(new GemmDesc(0, 4, 2), new Buf(empty, 0), new Buf(empty, 0), new Buf(empty, 0));

        var s = Autograd.Tensor.Scalar(2f, Backend);
        Assert.That(s.Mul(s).Item(), Is.EqualTo(4f));
    }

    [Test]
    public void BuffersOfAnotherDeviceAreRejected()
    {
        using var cpu = CpuBackend.Instance.Allocate(4);
        var e = Assert.Throws<ArgumentException>(() => Backend.Fill(new Buf(cpu, 0), 4, 1f));
        Assert.That(e!.Message, Does.Contain("cpu"));
    }

    [Test]
    public void MissingCudaDeviceGivesAClearError()
    {
        var e = Assert.Throws<InvalidOperationException>(() => IlgpuBackend.CreateCuda(device: 999));
        Assert.That(e!.Message, Does.Contain("CUDA"));
    }

    [Test]
    public void UploadsAreQueuedFromPinnedStagingWithoutWaiting()
    {
        using var s = Backend.Allocate(300);
        Backend.Synchronize();
        var before = Backend.Traffic;
        var host = Enumerable.Range(0, 100).Select(i => (float)i).ToArray();
        for (int part = 0; part < 3; part++)
        {
            Backend.Upload(host, new Buf(s, 100 * part));
            Array.Fill(host, -1f);   // the caller may reuse its array at once: the upload copied it
            host = Enumerable.Range(0, 100).Select(i => (float)(100 * (part + 1) + i)).ToArray();
        }
        var traffic = Backend.Traffic - before;
        Assert.That((traffic.Uploads, traffic.Synchronizations, traffic.Downloads), Is.EqualTo((3L, 0L, 0L)), "uploads wait for nothing");
        Assert.That(Backend.StagedUploadBytes, Is.GreaterThan(0), "staging buffers held until the stream is drained");
        var back = new float[300];
        Backend.Download(new Buf(s, 0), back);
        Assert.That(back, Is.EqualTo(Enumerable.Range(0, 300).Select(i => (float)i).ToArray()));
        Assert.That(Backend.StagedUploadBytes, Is.Zero, "a download drains the stream and frees the staging");
    }

    [Test]
    public void GridStrideLoopsEndInsteadOfWrappingNearInt32Max()
    {
        const int step = 270_336;   // 132 SMs × 8 groups × 256 threads
        Assert.That(IlgpuBackend.GridStrideNext(0, 1000, step), Is.EqualTo(1000), "past the end: the bound, so the loop ends");
        Assert.That(IlgpuBackend.GridStrideNext(5, 1_000_000, step), Is.EqualTo(5 + step));
        int last = int.MaxValue - 100;   // i + step would wrap to a negative index, which is < n: an endless, out-of-bounds loop
        Assert.That(IlgpuBackend.GridStrideNext(last, int.MaxValue, step), Is.EqualTo(int.MaxValue));
    }

    private static void WriteOnePastTheEnd(ArrayView<float> view) => view[view.Length] = 1f;

    [Test]
    public void OutOfBoundsAccessIsCountedInsteadOfCrashingTheHost()
    {
        using var s = Backend.Allocate(64);
        var view = ((IlgpuStorage)s).Floats(0, 32);   // the stray write lands in the other half of the allocation
        int before = DeviceAssertions.Failures;
        var kernel = Backend.Accelerator.LoadStreamKernel<ArrayView<float>>(WriteOnePastTheEnd);
        kernel(new KernelConfig(1, 1), view);
        Backend.Synchronize();
        Assert.That(DeviceAssertions.Failures, Is.GreaterThan(before), "the bounds check went unnoticed");
    }
}
