using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace MaskBit.Distributed;

/// <summary>
/// Collectives over MPI_COMM_WORLD through a thin binding to Open MPI's C library, loaded at run time
/// (<c>libmpi.so.40</c>; Debian's <c>openmpi-bin</c>). Open MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT,
/// MPI_SUM, …) are the addresses of exported globals (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_float</c>,
/// <c>ompi_mpi_op_sum</c>), so they are resolved with <see cref="NativeLibrary.GetExport"/> like the functions; no
/// native code is compiled. Every collective runs on one communication thread, in the order the caller issues them
/// (so every rank issues the same sequence), started non-blocking (MPI_I*) and completed by polling MPI_Test: a peer
/// that is stuck or gone is noticed after <see cref="Timeout"/> and the job is aborted naming this rank, instead of
/// hanging in a blocking call. Open MPI moves a message only inside MPI calls; the thread polling them is what lets a
/// gradient bucket travel while the caller's thread goes on with the backward. The reductions are MPI's own (for a
/// given world size and message size Open MPI picks one algorithm, so the summation order and the result repeat run
/// to run).
/// </summary>
public sealed unsafe class MpiCollectives : ICollectives
{
    public static readonly string[] LibraryNames = ["libmpi.so.40", "libmpi.so"];
    private const int ThreadMultiple = 3;
    /// <summary>Open MPI's MPI_IN_PLACE.</summary>
    private static readonly void* InPlace = (void*)1;

    private readonly nint _comm, _float, _double, _byte, _sum;
    private readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int> _iallreduce;
    private readonly delegate* unmanaged<void*, int, nint, int, nint, nint*, int> _ibcast;
    private readonly delegate* unmanaged<nint, nint*, int> _ibarrier;
    private readonly delegate* unmanaged<void*, int, nint, void*, int, nint, nint, nint*, int> _iallgather;
    private readonly delegate* unmanaged<nint*, int*, void*, int> _test;
    private readonly delegate* unmanaged<nint, int, int> _abort;
    private readonly delegate* unmanaged<int> _finalize;
    private readonly delegate* unmanaged<int*, int> _finalized;
    private readonly BlockingCollection<Operation> _queue = new();
    private readonly Thread _communication;
    private bool _disposed;

    public int Rank { get; }
    public int WorldSize { get; }
    public int LocalRank { get; }
    public TimeSpan Timeout { get; }

    private MpiCollectives(nint library, LaunchInfo launch, TimeSpan timeout)
    {
        nint Export(string name) => NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new EntryPointNotFoundException($"{LibraryNames[0]}: symbol {name} not found (is this Open MPI?)");
        _comm = Export("ompi_mpi_comm_world");
        _float = Export("ompi_mpi_float");
        _double = Export("ompi_mpi_double");
        _byte = Export("ompi_mpi_byte");
        _sum = Export("ompi_mpi_op_sum");
        _iallreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int>)Export("MPI_Iallreduce");
        _ibcast = (delegate* unmanaged<void*, int, nint, int, nint, nint*, int>)Export("MPI_Ibcast");
        _ibarrier = (delegate* unmanaged<nint, nint*, int>)Export("MPI_Ibarrier");
        _iallgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, nint*, int>)Export("MPI_Iallgather");
        _test = (delegate* unmanaged<nint*, int*, void*, int>)Export("MPI_Test");
        _abort = (delegate* unmanaged<nint, int, int>)Export("MPI_Abort");
        _finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        _finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");

        var initialized = (delegate* unmanaged<int*, int>)Export("MPI_Initialized");
        var initThread = (delegate* unmanaged<int*, byte***, int, int*, int>)Export("MPI_Init_thread");
        var commRank = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_rank");
        var commSize = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_size");
        int flag = 0, provided = 0, rank = 0, size = 0;
        Check(initialized(&flag), "MPI_Initialized");
        // Multiple: MPI is initialised here and called from the communication thread, and an abort may come from any
        // thread while that thread polls a collective.
        if (flag == 0)
        {
            Check(initThread(null, null, ThreadMultiple, &provided), "MPI_Init_thread");
            if (provided < ThreadMultiple)
                throw new NotSupportedException($"rank {launch.Rank}: this MPI library gives thread level {provided}, MaskBit needs MPI_THREAD_MULTIPLE ({ThreadMultiple}); use an Open MPI built with thread support (Debian's is)");
        }
        Check(commRank(_comm, &rank), "MPI_Comm_rank");
        Check(commSize(_comm, &size), "MPI_Comm_size");
        if (rank != launch.Rank || size != launch.WorldSize)
            throw new InvalidOperationException($"MPI says rank {rank} of {size}, the launcher's environment rank {launch.Rank} of {launch.WorldSize}");
        (Rank, WorldSize, LocalRank, Timeout) = (rank, size, launch.LocalRank, timeout);
        _communication = new Thread(Communicate) { IsBackground = true, Name = $"MPI rank {rank}" };
        _communication.Start();
    }

    /// <summary>A collective queued for the communication thread; <see cref="Done"/> is set once it completed.</summary>
    private sealed class Operation(Action run)
    {
        public Action Run { get; } = run;
        public ManualResetEventSlim Done { get; } = new();
        public Exception? Error { get; set; }

        public void Wait()
        {
            Done.Wait();
            if (Error != null) throw new InvalidOperationException(Error.Message, Error);
        }
    }

    private void Communicate()
    {
        foreach (var operation in _queue.GetConsumingEnumerable())
        {
            try { operation.Run(); }
            catch (Exception e) { operation.Error = e; }
            operation.Done.Set();
        }
    }

    private Operation Enqueue(Action run)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var operation = new Operation(run);
        _queue.Add(operation);
        return operation;
    }

    /// <summary>Runs <paramref name="run"/> on the communication thread after every collective queued before it.</summary>
    private void Run(Action run) => Enqueue(run).Wait();

    /// <summary>Loads Open MPI and initialises MPI for the job <paramref name="launch"/> describes.</summary>
    /// <exception cref="DllNotFoundException">Open MPI's library is not installed (the message says which package).</exception>
    public static MpiCollectives Initialize(LaunchInfo launch, TimeSpan timeout)
    {
        nint library = 0;
        var errors = new List<string>();
        foreach (var name in LibraryNames)
        {
            if (NativeLibrary.TryLoad(name, out library)) break;
            errors.Add(name);
        }
        if (library == 0)
            throw new DllNotFoundException($"rank {launch.Rank}: launched by mpirun but none of {string.Join(", ", errors)} loads; install Open MPI (Debian: apt-get install openmpi-bin)");
        return new MpiCollectives(library, launch, timeout);
    }

    // The blocking collectives pin the caller's span while the communication thread works on it (the caller waits).

    /// <summary>The largest message of one MPI all-reduce: a longer buffer is summed in consecutive pieces of this
    /// size. Open MPI's reductions allocate a temporary buffer of the message's size on every call, and glibc maps an
    /// allocation above its mmap threshold (at most 32 MB) afresh each time, so every page of it faults: one minor
    /// fault per 4 KB page per call (16,385 at 64 MB) and 0.2–0.3 GB/s instead of 3–5 GB/s (bench/RESULTS.md). 1 MB
    /// pieces stay far below the threshold and in cache; the small tokenizer's gradient bucket already spans two.</summary>
    public const int MaxMessageBytes = 1 << 20;

    public void AllReduceSum(Span<float> buffer)
    {
        fixed (float* p = buffer)
        {
            nint data = (nint)p;
            int count = buffer.Length;
            Run(() => AllReduce((byte*)data, count, sizeof(float), _float, "all-reduce"));
        }
    }

    public void AllReduceSum(Span<double> buffer)
    {
        fixed (double* p = buffer)
        {
            nint data = (nint)p;
            int count = buffer.Length;
            Run(() => AllReduce((byte*)data, count, sizeof(double), _double, "all-reduce"));
        }
    }

    /// <summary>Sums <paramref name="count"/> elements at <paramref name="data"/> in place, in messages of at most
    /// <see cref="MaxMessageBytes"/> (the same pieces on every rank and run, so the result still repeats bit for bit).</summary>
    private void AllReduce(byte* data, int count, int elementBytes, nint type, string what)
    {
        int piece = MaxMessageBytes / elementBytes;
        for (int at = 0; at < count; at += piece)
        {
            nint request;
            Check(_iallreduce(InPlace, data + (long)at * elementBytes, Math.Min(piece, count - at), type, _sum, _comm, &request), "MPI_Iallreduce");
            WaitFor(&request, what);
        }
    }

    public IPendingCollective StartAllReduceSum(float[] buffer, int offset, int count)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)offset + count, buffer.Length);
        var pin = GCHandle.Alloc(buffer, GCHandleType.Pinned);
        nint data = pin.AddrOfPinnedObject() + offset * sizeof(float);
        return new Pending(Enqueue(() => AllReduce((byte*)data, count, sizeof(float), _float, "bucketed all-reduce")), pin);
    }

    private sealed class Pending(Operation operation, GCHandle pin) : IPendingCollective
    {
        public void Wait()
        {
            if (!pin.IsAllocated) return;
            try { operation.Wait(); }
            finally { pin.Free(); }
        }
    }

    public void Broadcast(Span<float> buffer, int root = 0)
    {
        fixed (float* p = buffer) Bcast(p, buffer.Length, _float, root);
    }

    public void Broadcast(Span<byte> buffer, int root = 0)
    {
        fixed (byte* p = buffer) Bcast(p, buffer.Length, _byte, root);
    }

    private void Bcast(void* data, int count, nint type, int root)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(root);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(root, WorldSize);
        nint address = (nint)data;
        Run(() =>
        {
            nint request;
            Check(_ibcast((void*)address, count, type, root, _comm, &request), "MPI_Ibcast");
            WaitFor(&request, "broadcast");
        });
    }

    public void Barrier() => Run(() =>
    {
        nint request;
        Check(_ibarrier(_comm, &request), "MPI_Ibarrier");
        WaitFor(&request, "barrier");
    });

    public double[] AllGather(double value)
    {
        var all = new double[WorldSize];
        fixed (double* result = all)
        {
            nint address = (nint)result;
            Run(() =>
            {
                double send = value;
                nint request;
                Check(_iallgather(&send, 1, _double, (void*)address, 1, _double, _comm, &request), "MPI_Iallgather");
                WaitFor(&request, "all-gather");
            });
        }
        return all;
    }

    /// <summary>Polls the request until done; after <see cref="Timeout"/> aborts the job naming this rank. Open MPI
    /// progresses messages inside MPI calls, so the first second polls back to back (yielding the core); after that
    /// the poll sleeps a millisecond between tests (a peer is busy with evaluation or a grid, or gone).</summary>
    private void WaitFor(nint* request, string what)
    {
        var clock = Stopwatch.StartNew();
        int done = 0;
        while (true)
        {
            Check(_test(request, &done, null), "MPI_Test");
            if (done != 0) return;
            var waited = clock.Elapsed;
            if (waited > Timeout)
                Abort(CollectiveWatchdog.TimedOut(this, what), 1);
            if (waited < TimeSpan.FromSeconds(1)) Thread.Yield();
            else Thread.Sleep(1);
        }
    }

    public void Abort(string message, int exitCode)
    {
        Console.Error.WriteLine(message);
        Console.Error.Flush();
        _abort(_comm, exitCode);
        Environment.Exit(exitCode);   // MPI_Abort does not return; this is in case it did
    }

    private void Check(int code, string function)
    {
        // The default error handler (MPI_ERRORS_ARE_FATAL) aborts the job before a failing call returns; a non-zero
        // code here means another handler was installed.
        if (code != 0) throw new InvalidOperationException($"rank {Rank}: {function} failed with MPI error {code}");
    }

    /// <summary>MPI_Finalize (once, at process exit), after the queued collectives.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _queue.CompleteAdding();
        _communication.Join();
        int finalized = 0;
        _finalized(&finalized);
        if (finalized == 0) _finalize();
    }
}
