using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace MaskBit.Kernels.Ilgpu;

/// <summary>Launch geometry of an <see cref="IlgpuBackend"/>. The CPU accelerator emulates every GPU thread with
/// an OS thread (each barrier costs microseconds per thread, and once a group of G threads has run every later
/// launch wakes G threads), so it gets warp-sized groups; CUDA gets groups that fill a multiprocessor.</summary>
/// <param name="ElementGroup">Threads per group of the grid-stride element-wise kernels.</param>
/// <param name="MaxElementGroups">Upper bound on groups of a grid-stride launch (enough to fill the device).</param>
/// <param name="ReduceGroup">Threads per group of the reductions and row kernels (norms, softmax, cross-entropy; a
/// multiple of the warp size). Attention groups have up to ReduceGroup / warp size warps, one row each.</param>
/// <param name="LargeGemmTile">64×64 GEMM tiles with 256 threads (GPU) instead of 32×32 with 64 threads (GEMM v1).</param>
/// <param name="GemmVersion">The GEMM kernel version of the lab (src/Kernels/Lab/GemmLab.cs) that GEMMs use: the
/// GPU runs the best validated one; the CPU accelerator keeps version 1 with small tiles, whose 64-thread groups it
/// emulates fastest (the lab tests check every version there).</param>
/// <param name="AttentionVersion">The attention forward version of the lab (src/Kernels/Lab/AttentionLab.cs), run where
/// the head dim and warp size allow it (else version 1). Every accelerator runs version 2, FlashAttention-2 tiling: the
/// CPU accelerator too, which emulates it ~4× faster than version 1 on the lab's cases.</param>
/// <param name="AttentionBackwardVersion">The attention backward version of the lab (family attention_backward), run
/// where the head dim allows it (else version 1). The GPU runs the lab's used version; the CPU accelerator runs version
/// 2, which it emulates 7–8× faster than version 1 at 33–67 rows.</param>
public readonly record struct IlgpuLaunchSizes(int ElementGroup, int MaxElementGroups, int ReduceGroup, bool LargeGemmTile, int GemmVersion = 1,
    int AttentionVersion = Lab.AttentionLab.BackendVersion, int AttentionBackwardVersion = Lab.AttentionBackwardLab.BackendVersion)
{
    public static IlgpuLaunchSizes For(Accelerator accelerator) => accelerator.AcceleratorType == AcceleratorType.CPU
        ? new(ElementGroup: accelerator.WarpSize, MaxElementGroups: 4, ReduceGroup: accelerator.WarpSize, LargeGemmTile: false,
              AttentionBackwardVersion: 2)
        : new(ElementGroup: 256, MaxElementGroups: accelerator.NumMultiprocessors * Math.Max(1, accelerator.MaxNumThreadsPerMultiprocessor / 256),
              ReduceGroup: 256, LargeGemmTile: true, GemmVersion: Lab.GemmLab.BackendVersion);
}

/// <summary>
/// The GPU device: ILGPU kernels over device buffers (<see cref="IlgpuStorage"/>), all launched on the
/// accelerator's default stream. Ops only enqueue work: nothing synchronises or copies to the host except
/// <see cref="Download"/> and <see cref="Synchronize"/>. Kernels are compiled on first use and cached for the
/// lifetime of the backend (ILGPU caches IR per context, so one context per backend). Op families live in
/// partial files next to their CPU counterparts (Elementwise/ElementwiseIlgpu.cs, Gemm/GemmIlgpu.cs, ...).
/// </summary>
public sealed partial class IlgpuBackend : IBackend, IModelOps
{
    private readonly Accelerator _accelerator;
    private readonly bool _ownsAccelerator;
    private readonly Lock _kernelLock = new();
    private readonly TrafficCounters _traffic = new();
    /// <summary>The first bad index a kernel met since the last read: [op, value, position, table size]
    /// (<see cref="IndexFault"/>); reported by <see cref="ReportIndexFault"/>.</summary>
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _indexFault;
    private readonly UploadStaging _staging;
    private bool _disposed;

    internal DeviceBufferPool<float> FloatPool { get; }
    internal DeviceBufferPool<int> IntPool { get; }
    internal DeviceBufferPool<ushort> HalfPool { get; }

    /// <summary>A backend on an accelerator the caller owns (its context needs <c>EnableAlgorithms()</c>).</summary>
    public IlgpuBackend(Accelerator accelerator, IlgpuLaunchSizes? sizes = null)
        : this(accelerator, sizes, ownsAccelerator: false) { }

    private IlgpuBackend(Accelerator accelerator, IlgpuLaunchSizes? sizes, bool ownsAccelerator)
    {
        _accelerator = accelerator;
        _ownsAccelerator = ownsAccelerator;
        Sizes = sizes ?? IlgpuLaunchSizes.For(accelerator);
        int gemmGroup = Sizes.GemmVersion > 1 ? Tile128.Threads : Sizes.LargeGemmTile ? GemmThreads<GemmTile64>() : GemmThreads<GemmTile32>();
        int largestGroup = Math.Max(Math.Max(Sizes.ElementGroup, Sizes.ReduceGroup), gemmGroup);
        if (largestGroup > accelerator.MaxNumThreadsPerGroup)
            throw new ArgumentException($"launch sizes {Sizes} exceed {accelerator.MaxNumThreadsPerGroup} threads per group of {accelerator.Name}");
        if (Sizes.ReduceGroup % accelerator.WarpSize != 0)
            throw new ArgumentException($"reduce group {Sizes.ReduceGroup} is not a multiple of the warp size {accelerator.WarpSize}");
        // Device memory is cached up to 1/4 of the device (CPU accelerator: 1 GiB).
        long budget = accelerator.AcceleratorType == AcceleratorType.CPU ? 1L << 30 : accelerator.MemorySize / 4;
        _indexFault = accelerator.Allocate1D<int>(IndexFaultWords);
        _indexFault.View.MemSetToZero(Stream);
        // Pinned staging for uploads: enough for a step's inputs without waiting (CPU accelerator: a little).
        _staging = new UploadStaging(accelerator, accelerator.DefaultStream, _traffic,
            accelerator.AcceleratorType == AcceleratorType.CPU ? 16L << 20 : 256L << 20);
        FloatPool = new DeviceBufferPool<float>(accelerator, budget, _traffic);
        IntPool = new DeviceBufferPool<int>(accelerator, budget / 8, _traffic);
        HalfPool = new DeviceBufferPool<ushort>(accelerator, budget / 2, _traffic);
    }

    /// <summary>The CPU accelerator (an emulator, for tests): warps of 32 as on CUDA unless
    /// <paramref name="threadsPerWarp"/> says otherwise, at most 256 threads per group so a test cannot launch a
    /// 1024-thread group by accident, one multiprocessor, and the Parallel mode (Auto falls back to the 5–25×
    /// slower Sequential mode under a debugger). The emulator runs an OS thread per GPU thread and pays for every
    /// shuffle and barrier in each of them, so narrow warps (4 lanes) make model-sized runs several times faster.</summary>
    public static IlgpuBackend CreateCpu(IlgpuLaunchSizes? sizes = null, int threadsPerWarp = 32)
    {
        var context = Context.Create(b => b.CPU().EnableAlgorithms());
        var device = new CPUDevice(numThreadsPerWarp: threadsPerWarp, numWarpsPerMultiprocessor: 256 / threadsPerWarp, numMultiprocessors: 1);
        return new IlgpuBackend(device.CreateCPUAccelerator(context, CPUAcceleratorMode.Parallel), sizes, ownsAccelerator: true);
    }

    /// <summary>The CUDA device with the given index (of those the driver sees). Every failure — no driver
    /// library, a driver that does not start, a device ILGPU cannot target, a busy or exclusive device — is an
    /// <see cref="InvalidOperationException"/> with one line naming the device, the driver version and what to try;
    /// nothing created on the way is left open.</summary>
    public static IlgpuBackend CreateCuda(int device = 0)
    {
        CudaDriver.InstallResolver();
        var driver = CudaDriver.Probe();
        if (driver.Problem is not null) throw new InvalidOperationException($"CUDA is not available: {driver.Problem}");
        if (device < 0 || device >= driver.Devices.Count)
            throw new InvalidOperationException($"CUDA device {device} does not exist; the driver (CUDA {driver.VersionText}) sees {driver.Devices.Count}: " +
                                                $"{string.Join(", ", driver.Devices.Select(d => $"{d.Ordinal} {d.Name}"))}");
        var described = driver.Devices[device];
        string what = $"CUDA device {device} ({described.Name}, {described.Sm}, driver CUDA {driver.VersionText})";
        // All devices, also those ILGPU has no PTX instruction set for (its default hides them), to say why.
        var context = Context.Create(b => b.Cuda(_ => true).EnableAlgorithms());
        try
        {
            var cudaDevice = CudaDeviceOf(context, device)
                ?? throw new InvalidOperationException($"{what}: ILGPU lists no such device (it hides devices whose description fails); check nvidia-smi");
            if (cudaDevice.InstructionSet is null)
                throw new InvalidOperationException($"{what}: ILGPU 1.5.3 knows no PTX instruction set for {described.Sm} with this driver; " +
                                                    "update the NVIDIA driver, or run with --device cpu");
            Accelerator accelerator;
            try { accelerator = cudaDevice.CreateCudaAccelerator(context); }
            catch (CudaException e)
            {
                throw new InvalidOperationException($"{what} could not be opened: {e.Error} ({e.Message}); {CudaDriver.Hint(e.Error)}", e);
            }
            try { return new IlgpuBackend(accelerator, null, ownsAccelerator: true); }
            catch { accelerator.Dispose(); throw; }
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>What <c>maskbit info</c> says about CUDA: one line per device the driver sees (name, sm, memory,
    /// driver, the PTX ISA ILGPU would generate) or one line saying why there is none. Creates no CUDA context.</summary>
    public static IReadOnlyList<string> DescribeCuda()
    {
        CudaDriver.InstallResolver();
        var driver = CudaDriver.Probe();
        if (driver.Problem is not null) return [$"cuda: none — {driver.Problem}"];
        using var context = Context.Create(b => b.Cuda(_ => true));
        return
        [
            $"cuda driver: {driver.Library}, CUDA {driver.VersionText}, {driver.Devices.Count} device(s)",
            .. driver.Devices.Select(d =>
            {
                var target = CudaDeviceOf(context, d.Ordinal);
                string ptx = target?.InstructionSet is CudaInstructionSet isa ? $"PTX ISA {isa.Major}.{isa.Minor}"
                    : target is null ? "not listed by ILGPU" : "no PTX ISA known to ILGPU 1.5.3 for this driver (unusable)";
                return $"cuda:{d.Ordinal}: {d.Name}, {d.Sm}, {d.MemoryBytes / (1024.0 * 1024 * 1024):F1} GiB, driver CUDA {driver.VersionText}, {ptx}";
            }),
        ];
    }

    /// <summary>ILGPU's description of the driver's device <paramref name="ordinal"/>, or null when it lists none.</summary>
    private static CudaDevice? CudaDeviceOf(Context context, int ordinal)
    {
        foreach (var device in context.GetCudaDevices())
            if (device.DeviceId == ordinal) return device;
        return null;
    }

    public string Name => $"ilgpu-{_accelerator.AcceleratorType.ToString().ToLowerInvariant()}";
    public IModelOps ModelOps => this;
    public IlgpuLaunchSizes Sizes { get; }
    public Accelerator Accelerator => _accelerator;
    internal AcceleratorStream Stream => _accelerator.DefaultStream;
    public override string ToString() => $"{Name} ({_accelerator.Name})";

    // ---- memory -------------------------------------------------------------------------------------------
    public Storage Allocate(long length, DType dtype = DType.Float32, bool zero = true) => new IlgpuStorage(this, length, dtype, zero);

    /// <summary>Queues the copy from a pinned staging copy of <paramref name="src"/> (<see cref="UploadStaging"/>):
    /// no wait, and src may be reused at once.</summary>
    public void Upload(ReadOnlySpan<float> src, Buf dst) { if (!src.IsEmpty) Staged(src, F(dst, src.Length)); }
    public void Upload(ReadOnlySpan<int> src, Buf dst) { if (!src.IsEmpty) Staged(src, I(dst, src.Length)); }
    public void Upload(ReadOnlySpan<ushort> src, Buf dst) { if (!src.IsEmpty) Staged(src, H(dst, src.Length)); }
    /// <summary>Copies to the host after all queued work (CopyToCPU synchronises the stream).</summary>
    public void Download(Buf src, Span<float> dst) { if (!dst.IsEmpty) CopyBack(F(src, dst.Length), dst); }
    public void Download(Buf src, Span<int> dst) { if (!dst.IsEmpty) CopyBack(I(src, dst.Length), dst); }
    public void Download(Buf src, Span<ushort> dst) { if (!dst.IsEmpty) CopyBack(H(src, dst.Length), dst); }

    private void Staged<T>(ReadOnlySpan<T> src, ArrayView<T> dst) where T : unmanaged
    {
        _traffic.Upload(src.Length * Unsafe.SizeOf<T>());
        _staging.Upload(src, dst);
    }

    private void CopyBack<T>(ArrayView<T> src, Span<T> dst) where T : unmanaged
    {
        _traffic.Download(dst.Length * Unsafe.SizeOf<T>());
        src.CopyToCPU(Stream, dst);
        _staging.StreamDrained();
        ReportIndexFault();
    }
    public void Synchronize() { _traffic.Synchronization(); _accelerator.Synchronize(); _staging.StreamDrained(); ReportIndexFault(); }

    /// <summary>Bytes of pinned staging held by uploads the stream has not been seen to finish.</summary>
    internal long StagedUploadBytes => _staging.BusyBytes;

    private const int IndexFaultWords = 4;

    /// <summary>Throws the index error a kernel recorded (the stream has just been drained by a read), once: the
    /// word is cleared so the backend stays usable. Not counted as traffic: it rides on a read that waited anyway.</summary>
    private void ReportIndexFault()
    {
        Span<int> fault = stackalloc int[IndexFaultWords];
        _indexFault.View.CopyToCPU(Stream, fault);
        if (fault[0] == 0) return;
        _indexFault.View.MemSetToZero(Stream);
        throw IndexFault.Exception((IndexedOp)fault[0], fault[1], fault[2], fault[3], deferred: true);
    }

    /// <summary>Inside a kernel: whether index lies in [0, size); if not, records it as the launch's index fault
    /// (the first recorder wins) and the caller must use a harmless value instead.</summary>
    internal static bool InTable(ArrayView<int> fault, IndexedOp op, int index, int position, int size)
    {
        if ((uint)index < (uint)size) return true;
        if (Atomic.CompareExchange(ref fault[0], 0, (int)op) == 0)
        {
            fault[1] = index;
            fault[2] = position;
            fault[3] = size;
        }
        return false;
    }

    internal ArrayView<int> IndexFaultView => _indexFault.View;
    /// <summary>Host ↔ device copies, waits and pool misses since this backend was created.</summary>
    public DeviceTraffic Traffic => _traffic.Snapshot();

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Stream.Synchronize();   // queued uploads still read their staging buffers
        _staging.Dispose();
        _indexFault.Dispose();
        FloatPool.Dispose();
        IntPool.Dispose();
        HalfPool.Dispose();
        if (!_ownsAccelerator) return;
        var context = _accelerator.Context;
        _accelerator.Dispose();
        context.Dispose();
    }

    /// <summary>The float elements [offset, offset + n) of a buffer of this backend, as a kernel argument.</summary>
    /// <summary>For libraries that take raw CUDA pointers (NCCL): the device address of the <paramref name="n"/>
    /// floats at <paramref name="buf"/> and the stream this backend queues its kernels on (work queued there is
    /// ordered with them); null when the accelerator is not CUDA.</summary>
    public (nint Address, nint Stream)? CudaFloats(Buf buf, long n)
    {
        if (Stream is not CudaStream stream) return null;
        IContiguousArrayView view = F(buf, n);
        return (view.Buffer.NativePtr + (nint)view.IndexInBytes, stream.StreamPtr);
    }

    /// <summary>Makes this backend's device context current on the calling thread (libraries such as NCCL take the
    /// device from it).</summary>
    public void BindToThread() => _accelerator.Bind();

    /// <summary>True on an NVIDIA GPU (the CUDA accelerator), false on ILGPU's CPU accelerator.</summary>
    public bool IsCuda => _accelerator.AcceleratorType == AcceleratorType.Cuda;

    internal ArrayView<float> F(Buf b, long n) => Own(b).Floats(b.Offset, n);
    internal ArrayView<int> I(Buf b, long n) => Own(b).Ints(b.Offset, n);
    internal ArrayView<ushort> H(Buf b, long n) => Own(b).Halves(b.Offset, n);

    /// <summary>For kernels that read float32 operands: a 16-bit operand's n elements widened into a temporary, which
    /// <paramref name="operand"/> then points at (the caller disposes it after queueing its kernels); null for a
    /// float32 operand.</summary>
    internal Storage? Float32Copy(ref Buf operand, long n)
    {
        if (operand.Storage.DType == DType.Float32) return null;
        var wide = Allocate(n, DType.Float32, zero: false);
        Convert(operand, new Buf(wide, 0), n);
        operand = new Buf(wide, 0);
        return wide;
    }

    private IlgpuStorage Own(Buf b) => b.Storage is IlgpuStorage s && ReferenceEquals(s.Backend, this)
        ? s : throw new ArgumentException($"a buffer on {b.Storage.Backend.Name} was passed to {Name}");

    // ---- kernels ------------------------------------------------------------------------------------------
    /// <summary>Every kernel this backend has loaded, by entry method: a kernel is one static entry delegate
    /// (<c>…Entry</c>, which also puts it on <see cref="KernelEntryPoints"/>), launched as <c>Kernel(entry)(…)</c>.</summary>
    private readonly ConcurrentDictionary<MethodInfo, Delegate> _kernels = new();

    /// <summary>The launcher of <paramref name="entry"/> on the default stream, compiled on first use.</summary>
    private TLauncher Cached<TEntry, TLauncher>(TEntry entry, Func<Accelerator, TEntry, TLauncher> load)
        where TEntry : Delegate where TLauncher : Delegate
    {
        if (_kernels.TryGetValue(entry.Method, out var kernel)) return (TLauncher)kernel;
        // Compiling takes milliseconds to seconds: under the lock, so two threads never compile the same kernel.
        lock (_kernelLock)
            return (TLauncher)_kernels.GetOrAdd(entry.Method, _ =>
            {
                if (_accelerator.AcceleratorType == AcceleratorType.Cuda) ForgetCompiledMethods(_accelerator.Context);
                return load(_accelerator, entry);
            });
    }

    /// <summary>Drops the IR that <paramref name="context"/> keeps of the methods it compiled, so that the next kernel
    /// compiles to the PTX it gets in a fresh context. ILGPU 1.5.3 reuses that IR across kernels, and the PTX then
    /// depends on what was compiled before: the split-K GEMM over <see cref="ConvWeightGradProduct"/>, compiled after
    /// an element-wise kernel, copied its 80-byte product 19 times through local memory (1.5 KB of stack per thread,
    /// 400 local loads and stores; ptxas -v), and not at all on its own (PtxCompileTests). Run before each compile on
    /// CUDA (under the kernel lock: ClearCache is not thread-safe); the CPU accelerator runs the .NET code, not PTX.</summary>
    internal static void ForgetCompiledMethods(Context context) => context.ClearCache(ClearCacheMode.Default);

    // One overload per arity (as ILGPU's loaders): the launcher's type follows from the entry's.
    private Action<KernelConfig, T1, T2> Kernel<T1, T2>(Action<T1, T2> entry)
        where T1 : struct where T2 : struct =>
        Cached(entry, static (a, e) => a.LoadStreamKernel(e));
    private Action<KernelConfig, T1, T2, T3> Kernel<T1, T2, T3>(Action<T1, T2, T3> entry)
        where T1 : struct where T2 : struct where T3 : struct =>
        Cached(entry, static (a, e) => a.LoadStreamKernel(e));
    private Action<KernelConfig, T1, T2, T3, T4> Kernel<T1, T2, T3, T4>(Action<T1, T2, T3, T4> entry)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct =>
        Cached(entry, static (a, e) => a.LoadStreamKernel(e));
    private Action<KernelConfig, T1, T2, T3, T4, T5> Kernel<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> entry)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct =>
        Cached(entry, static (a, e) => a.LoadStreamKernel(e));
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6> Kernel<T1, T2, T3, T4, T5, T6>(
        Action<T1, T2, T3, T4, T5, T6> entry)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct =>
        Cached(entry, static (a, e) => a.LoadStreamKernel(e));
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> Kernel<T1, T2, T3, T4, T5, T6, T7>(
        Action<T1, T2, T3, T4, T5, T6, T7> entry)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
        where T7 : struct =>
        Cached(entry, static (a, e) => a.LoadStreamKernel(e));
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8> Kernel<T1, T2, T3, T4, T5, T6, T7, T8>(
        Action<T1, T2, T3, T4, T5, T6, T7, T8> entry)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
        where T7 : struct where T8 : struct =>
        Cached(entry, static (a, e) => a.LoadStreamKernel(e));
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> Kernel<T1, T2, T3, T4, T5, T6, T7, T8, T9>(
        Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> entry)
        where T1 : struct where T2 : struct where T3 : struct where T4 : struct where T5 : struct where T6 : struct
        where T7 : struct where T8 : struct where T9 : struct =>
        Cached(entry, static (a, e) => a.LoadStreamKernel(e));

    /// <summary>A 1-D grid-stride launch over n items: as many groups as needed, at most enough to fill the device.</summary>
    private KernelConfig GridStride(long n, int group)
    {
        long groups = Math.Clamp((n + group - 1) / group, 1, Sizes.MaxElementGroups);
        return new KernelConfig((int)groups, group);
    }

    /// <summary>Stride of a 1-D grid-stride loop inside a kernel: all threads of the grid.</summary>
    private static int GridStrideStep => Grid.DimX * Group.DimX;

    /// <summary>The next index of a 32-bit grid-stride loop over [0, n): i + step, or n (ending the loop) where
    /// that would reach n or wrap past int.MaxValue — the host checks allow n up to int.MaxValue, and a plain
    /// i += step wraps to a negative index within one grid of it.</summary>
    internal static int GridStrideNext(int i, int n, int step) => n - i > step ? i + step : n;

    /// <summary>Every kernel entry point with the type arguments it is launched with (for the offline PTX check): the
    /// static entry delegates of this class, and of <see cref="TiledKernels{TProduct}"/> for each tiled product.</summary>
    internal static IReadOnlyList<MethodInfo> KernelEntryPoints =>
    [
        .. EntryDelegates(typeof(IlgpuBackend)),
        .. TiledProducts.SelectMany(t => EntryDelegates(typeof(TiledKernels<>).MakeGenericType(t))),
        .. TiledProducts.SelectMany(t => EntryDelegates(typeof(SplitKKernels<>).MakeGenericType(t))),
        .. EntryDelegates(typeof(TensorCoreKernels<GemmArgs>)),
    ];

    /// <summary>The product types of the tiled kernels (not the generic split-K wrapper, which wraps each of them).</summary>
    private static IEnumerable<Type> TiledProducts =>
        typeof(IlgpuBackend).GetNestedTypes(BindingFlags.Public | BindingFlags.NonPublic)
            .Where(t => t.IsValueType && !t.IsGenericTypeDefinition && typeof(ITiledProduct).IsAssignableFrom(t));

    private static IEnumerable<MethodInfo> EntryDelegates(Type holder) =>
        holder.GetFields(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
            .Where(f => f.IsInitOnly && typeof(Delegate).IsAssignableFrom(f.FieldType))
            .Select(f => ((Delegate)f.GetValue(null)!).Method);
}
