namespace MaskBit.Models.Benchmarks;

/// <summary>This process's resident memory, for the peak-memory column of the benchmarks. On Linux the peak
/// (VmHWM) can be reset to the current resident set, so each workload's peak is its own (as the PyTorch peer
/// measures it); elsewhere the peak is the process's since it started.</summary>
public static class ProcessMemory
{
    private const string Status = "/proc/self/status", ClearRefs = "/proc/self/clear_refs";

    /// <summary>Resets the peak resident set to the current one; false where the OS does not allow it.</summary>
    public static bool TryResetPeak()
    {
        try
        {
            File.WriteAllText(ClearRefs, "5");   // 5: reset the peak RSS (Linux ≥ 4.0)
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException) { return false; }
    }

    public static double ResidentMb() => StatusMb("VmRSS:") ?? Environment.WorkingSet / 1e6;

    public static double PeakResidentMb()
    {
        if (StatusMb("VmHWM:") is double peak) return peak;
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        return self.PeakWorkingSet64 / 1e6;
    }

    /// <summary>A "Name:   N kB" line of /proc/self/status in MB, null where there is none.</summary>
    private static double? StatusMb(string field)
    {
        if (!File.Exists(Status)) return null;
        foreach (var line in File.ReadLines(Status))
            if (line.StartsWith(field, StringComparison.Ordinal)
                && long.TryParse(line[field.Length..].Trim().Split(' ')[0], out long kb))
                return kb * 1024 / 1e6;
        return null;
    }
}
