using System.Globalization;

namespace MaskBit.Models.Interop;

/// <summary>
/// The most memory one weights-file load may allocate for the file's contents (pickles, storages, tensors,
/// arrays). Every reader adds each size a file declares to its load's total and checks the total against the
/// budget before allocating, so a small file claiming gigabytes is refused instead of exhausting memory. The
/// default is half the memory this process may use; <see cref="Variable"/> sets it in MiB.
/// </summary>
public sealed class LoadBudget
{
    public const string Variable = "MASKBIT_LOAD_BUDGET_MB";

    private static readonly AsyncLocal<long?> Scoped = new();

    /// <summary>The budget of a load started now: a <see cref="Limit"/> in scope, else <see cref="Variable"/>, else
    /// half of the memory available to the process.</summary>
    public static long MaxBytes
    {
        get
        {
            if (Scoped.Value is { } scoped) return scoped;
            if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } text
                && long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long mib) && mib > 0)
                return mib > long.MaxValue >> 20 ? long.MaxValue : mib << 20;
            return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2;
        }
    }

    /// <summary>Sets the budget of the loads started in this scope (tests; tools that load many files).</summary>
    public static IDisposable Limit(long maxBytes)
    {
        var previous = Scoped.Value;
        Scoped.Value = maxBytes;
        return new Restore(() => Scoped.Value = previous);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    private readonly long _max = MaxBytes;
    private long _used;

    /// <summary>Starts counting one load's allocations.</summary>
    public static LoadBudget Start() => new();

    /// <summary>Counts <paramref name="bytes"/> about to be allocated for <paramref name="what"/>; throws
    /// <see cref="FormatProblem"/> naming it when the load would exceed the budget.</summary>
    internal void Take(long bytes, string what)
    {
        if (bytes < 0 || bytes > _max - _used)
            throw new FormatProblem($"{what} needs {bytes:N0} bytes, which with the {_used:N0} already read exceeds the memory budget of " +
                                    $"{_max:N0} bytes for one file (set {Variable} to change it)");
        _used += bytes;
    }
}
