using System.Globalization;

namespace MaskBit.Distributed;

/// <summary>Where this process sits in a job, as the launcher says: Open MPI's <c>mpirun</c> sets
/// OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK.</summary>
public sealed record LaunchInfo(int Rank, int WorldSize, int LocalRank)
{
    public const string RankVariable = "OMPI_COMM_WORLD_RANK", SizeVariable = "OMPI_COMM_WORLD_SIZE", LocalRankVariable = "OMPI_COMM_WORLD_LOCAL_RANK";

    /// <summary>The launch of this process, or null when it was not started by a launcher (one process).</summary>
    public static LaunchInfo? FromEnvironment() => From(Environment.GetEnvironmentVariable);

    public static LaunchInfo? From(Func<string, string?> environment)
    {
        if (environment(SizeVariable) is not { } size)
        {
            // MPICH's hydra (PMI_RANK / PMI_SIZE) uses another ABI (integer handles) than the Open MPI library this
            // implementation binds to; say so instead of training alone in every process.
            if (environment("PMI_SIZE") is { } pmiSize && pmiSize != "1")
                throw new NotSupportedException($"PMI_SIZE={pmiSize}: this process was started by an MPICH-style launcher; MaskBit binds to Open MPI (libmpi.so.40) — launch with Open MPI's mpirun");
            return null;
        }
        int Read(string name, string? value) =>
            int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v
                : throw new FormatException($"{name}: '{value}' is not a non-negative integer");
        var info = new LaunchInfo(Read(RankVariable, environment(RankVariable)), Read(SizeVariable, size),
            Read(LocalRankVariable, environment(LocalRankVariable) ?? "0"));
        if (info.WorldSize < 1 || info.Rank >= info.WorldSize)
            throw new FormatException($"{RankVariable}={info.Rank} does not fit {SizeVariable}={info.WorldSize}");
        return info;
    }
}

/// <summary>
/// The process group of this process (torch.distributed's default group; accelerate's state): one process unless the
/// process was started by <c>mpirun</c>, then MPI over all ranks of the job. Made on first use and finalised when the
/// process exits.
/// </summary>
public static class ProcessGroup
{
    /// <summary>Seconds a collective may wait for its peers before the job is aborted (default 1800, as NCCL's
    /// default; rank 0 alone writes grids and runs evaluation while the others wait).</summary>
    public const string TimeoutVariable = "MASKBIT_COLLECTIVE_TIMEOUT";
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(30);

    private static readonly Lazy<ICollectives> _world = new(Create, LazyThreadSafetyMode.ExecutionAndPublication);

    public static ICollectives World => _world.Value;

    /// <summary>True once <see cref="World"/> was made (a job that never trained needs no MPI).</summary>
    public static bool IsCreated => _world.IsValueCreated;

    /// <summary><see cref="TimeoutVariable"/>, or the default.</summary>
    public static TimeSpan TimeoutFromEnvironment()
    {
        if (Environment.GetEnvironmentVariable(TimeoutVariable) is not { Length: > 0 } text) return DefaultTimeout;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) || !(seconds > 0))
            throw new FormatException($"{TimeoutVariable}: '{text}' is not a positive number of seconds");
        return TimeSpan.FromSeconds(seconds);
    }

    private static ICollectives Create()
    {
        if (LaunchInfo.FromEnvironment() is not { } launch) return SingleProcess.Instance;
        var group = MpiCollectives.Initialize(launch, TimeoutFromEnvironment());
        AppDomain.CurrentDomain.ProcessExit += (_, _) => group.Dispose();
        return group;
    }
}
