using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace MaskBit.Distributed;

/// <summary>
/// NVIDIA's collective library (NCCL) loaded at run time: <c>libnccl.so.2</c> (Debian/Ubuntu <c>libnccl2</c>, the
/// CUDA containers, pip's <c>nvidia-nccl-cu12</c>) or the file <see cref="LibraryVariable"/> names. Only the entry
/// points MaskBit calls are bound (<see cref="NativeLibrary.GetExport"/>, no native shim): the unique id, the
/// communicator, all-reduce and broadcast of float32 device buffers on a CUDA stream.
/// </summary>
public sealed unsafe class NcclLibrary
{
    /// <summary>A path to the NCCL library to load instead of the names the loader searches.</summary>
    public const string LibraryVariable = "MASKBIT_NCCL_LIBRARY";
    public static readonly string[] LibraryNames = ["libnccl.so.2", "libnccl.so"];

    internal const int Success = 0, Float32 = 7, Sum = 0;

    internal readonly delegate* unmanaged<int*, int> GetVersion;
    internal readonly delegate* unmanaged<NcclUniqueId*, int> GetUniqueId;
    internal readonly delegate* unmanaged<nint*, int, NcclUniqueId, int, int> CommInitRank;
    internal readonly delegate* unmanaged<nint, int> CommDestroy;
    internal readonly delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int> AllReduce;
    internal readonly delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int> Broadcast;
    internal readonly delegate* unmanaged<int, byte*> GetErrorString;

    /// <summary>The file that was loaded and its version (2.21.5 is 22105).</summary>
    public string Library { get; }
    public int Version { get; }

    private NcclLibrary(nint handle, string library)
    {
        nint Export(string name) => NativeLibrary.TryGetExport(handle, name, out var address) ? address
            : throw new EntryPointNotFoundException($"{library}: symbol {name} not found (not NCCL 2.x?)");
        GetVersion = (delegate* unmanaged<int*, int>)Export("ncclGetVersion");
        GetUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)Export("ncclGetUniqueId");
        CommInitRank = (delegate* unmanaged<nint*, int, NcclUniqueId, int, int>)Export("ncclCommInitRank");
        CommDestroy = (delegate* unmanaged<nint, int>)Export("ncclCommDestroy");
        AllReduce = (delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int>)Export("ncclAllReduce");
        Broadcast = (delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int>)Export("ncclBroadcast");
        GetErrorString = (delegate* unmanaged<int, byte*>)Export("ncclGetErrorString");
        Library = library;
        int version = 0;
        Check(GetVersion(&version), "ncclGetVersion");
        Version = version;
    }

    /// <summary>NCCL from <see cref="LibraryVariable"/> or the usual names, or null with <paramref name="problem"/>
    /// saying in one line what is missing and how to get it.</summary>
    public static NcclLibrary? TryLoad(out string? problem) =>
        TryLoad(Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } path ? [path] : LibraryNames, out problem);

    internal static NcclLibrary? TryLoad(IReadOnlyList<string> names, out string? problem)
    {
        foreach (var name in names)
        {
            if (!NativeLibrary.TryLoad(name, out var handle)) continue;
            try
            {
                problem = null;
                return new NcclLibrary(handle, name);
            }
            catch (EntryPointNotFoundException e)
            {
                problem = e.Message;
                return null;
            }
        }
        problem = $"{string.Join(" / ", names)} not found: install NCCL (Debian/Ubuntu: apt-get install libnccl2; pip: nvidia-nccl-cu12) " +
                  $"or set {LibraryVariable} to the library's path";
        return null;
    }

    internal string ErrorText(int code)
    {
        byte* text = GetErrorString(code);
        return text == null ? $"NCCL error {code}" : $"{Marshal.PtrToStringUTF8((nint)text)} (NCCL error {code})";
    }

    internal void Check(int code, string function)
    {
        if (code != Success) throw new InvalidOperationException($"{function} failed: {ErrorText(code)}");
    }

    public override string ToString() => $"NCCL {Version / 10000}.{Version / 100 % 100}.{Version % 100} ({Library})";
}

/// <summary>ncclUniqueId: 128 opaque bytes made by rank 0 and sent to every rank (over MPI here).</summary>
[StructLayout(LayoutKind.Sequential, Size = Bytes)]
internal unsafe struct NcclUniqueId
{
    public const int Bytes = 128;
    private fixed byte _internal[Bytes];

    [UnscopedRef]
    public Span<byte> AsSpan() => MemoryMarshal.CreateSpan(ref _internal[0], Bytes);
}

/// <summary>
/// An NCCL communicator over the ranks of <see cref="ICollectives"/>: rank 0 makes the unique id, the group's MPI
/// broadcast hands it to the others, and every rank joins with its rank and the world size (one rank works too:
/// the calls then copy). The collectives take CUDA device addresses of float32 elements and the stream they are
/// queued on; they return at once, ordered with the other work of that stream, so their completion is awaited by a
/// sync of that stream under <see cref="CollectiveWatchdog"/>. Make it with the device's CUDA context current on the
/// calling thread (NCCL takes the device from it).
/// </summary>
public sealed unsafe class NcclCommunicator : IDisposable
{
    private readonly NcclLibrary _nccl;
    private nint _comm;

    public NcclCommunicator(NcclLibrary nccl, ICollectives group)
    {
        _nccl = nccl;
        var id = SharedUniqueId(nccl, group);
        // Blocks until every rank has joined: under the group's watchdog.
        (int Code, nint Comm) joined = default;
        CollectiveWatchdog.Run(group, "ncclCommInitRank", () => joined = Join(nccl, id, group));
        nccl.Check(joined.Code, $"rank {group.Rank}: ncclCommInitRank");
        (_comm, Group) = (joined.Comm, group);
    }

    /// <summary>Rank 0's new unique id, on every rank.</summary>
    private static NcclUniqueId SharedUniqueId(NcclLibrary nccl, ICollectives group)
    {
        NcclUniqueId id = default;
        if (group.IsMain()) nccl.Check(nccl.GetUniqueId(&id), "ncclGetUniqueId");
        group.Broadcast(id.AsSpan());
        return id;
    }

    private static (int Code, nint Comm) Join(NcclLibrary nccl, NcclUniqueId id, ICollectives group)
    {
        nint comm;
        int code = nccl.CommInitRank(&comm, group.WorldSize, id, group.Rank);
        return (code, comm);
    }

    /// <summary>The ranks this communicator spans; its timeout bounds the waits for NCCL's collectives.</summary>
    public ICollectives Group { get; }
    public int Rank => Group.Rank;
    public int WorldSize => Group.WorldSize;

    /// <summary>Element-wise sum over the ranks of <paramref name="count"/> floats at <paramref name="address"/>, in place.</summary>
    public void AllReduceSum(nint address, long count, nint stream)
    {
        ObjectDisposedException.ThrowIf(_comm == 0, this);
        Queue("ncclAllReduce", () => _nccl.AllReduce(address, address, (nuint)count, NcclLibrary.Float32, NcclLibrary.Sum, _comm, stream));
    }

    /// <summary>Rank <paramref name="root"/>'s <paramref name="count"/> floats at <paramref name="address"/> to every rank, in place.</summary>
    public void Broadcast(nint address, long count, int root, nint stream)
    {
        ObjectDisposedException.ThrowIf(_comm == 0, this);
        ArgumentOutOfRangeException.ThrowIfNegative(root);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(root, WorldSize);
        Queue("ncclBroadcast", () => _nccl.Broadcast(address, address, (nuint)count, NcclLibrary.Float32, root, _comm, stream));
    }

    /// <summary>Queues a collective under the watchdog: NCCL connects to the peers on a communicator's first
    /// collectives, and that waits for them.</summary>
    private void Queue(string function, Func<int> call)
    {
        int code = 0;
        CollectiveWatchdog.Run(Group, function, () => code = call());
        _nccl.Check(code, $"rank {Rank}: {function}");
    }

    public void Dispose()
    {
        if (_comm == 0) return;
        _nccl.CommDestroy(_comm);
        _comm = 0;
    }
}
