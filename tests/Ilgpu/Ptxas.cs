using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace MaskBit.Tests.Ilgpu;

/// <summary>What ptxas (the CUDA toolkit's PTX assembler) says of a kernel: registers per thread, spill traffic,
/// stack frame (local memory) and static shared memory, summed over the module's functions.</summary>
internal sealed record PtxasReport(string Arch, int Registers, int SpillStoreBytes, int SpillLoadBytes, int StackFrameBytes,
    long SharedBytes, string? LoweredVersion);

/// <summary>The CUDA toolkit's <c>ptxas</c>, found through MASKBIT_PTXAS (a path) or PATH; tests that need it are
/// skipped in one line where neither has it (CI installs no CUDA toolkit).</summary>
internal static partial class Ptxas
{
    public static string? Path { get; } = Find();

    public const string Missing = "ptxas not found: set MASKBIT_PTXAS to the CUDA toolkit's ptxas or put it on PATH " +
                                  "(Debian: apt-get install nvidia-cuda-toolkit, non-free); bench/ptxas-check.sh runs these checks";

    private static string? Find()
    {
        if (Environment.GetEnvironmentVariable("MASKBIT_PTXAS") is { Length: > 0 } given)
            return File.Exists(given) ? given : throw new FileNotFoundException($"MASKBIT_PTXAS={given}: no such file");
        return (Environment.GetEnvironmentVariable("PATH") ?? "").Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => System.IO.Path.Combine(dir, "ptxas")).FirstOrDefault(File.Exists);
    }

    /// <summary>Assembles <paramref name="ptx"/> for <paramref name="arch"/> (e.g. sm_90) with <c>ptxas -v</c>; throws
    /// with ptxas's messages, and keeps the PTX file named there, where ptxas rejects it.
    /// ILGPU 1.5.3 writes <c>.version 8.0</c> (its ISA_80); an older ptxas (CUDA 11.8 reads PTX ISA 7.8) refuses the
    /// header, and the module is then assembled again with the header lowered to the version ptxas names. That is
    /// sound: a PTX ISA version only adds instructions and never changes the meaning of older ones, and ptxas
    /// rejects any instruction the lowered header does not cover, so an accepted module uses nothing newer.</summary>
    public static PtxasReport Assemble(string ptx, string arch, string name)
    {
        string? lowered = null;
        var (ok, log) = Run(ptx, arch, name);
        if (!ok && UnsupportedVersion().Match(log) is { Success: true } refusal)
        {
            lowered = refusal.Groups[2].Value;
            ptx = VersionLine().Replace(ptx, $".version {lowered}", 1);
            (ok, log) = Run(ptx, arch, name);
        }
        if (!ok) throw new InvalidOperationException($"ptxas rejects {name} for {arch}{(lowered is null ? "" : $" (.version lowered to {lowered})")}:\n{log}");
        int Sum(Regex pattern) => pattern.Matches(log).Sum(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        var frames = FunctionProperties().Matches(log);
        return new PtxasReport(arch,
            Registers: UsedRegisters().Matches(log).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Max(),
            SpillStoreBytes: frames.Sum(m => int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)),
            SpillLoadBytes: frames.Sum(m => int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture)),
            StackFrameBytes: frames.Sum(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)),
            SharedBytes: Sum(SharedMemory()), lowered);
    }

    /// <summary>Where the PTX and ptxas's log of every kernel are kept (MASKBIT_PTXAS_KEEP, for reading them or
    /// disassembling with nvdisasm), or null: then only a rejected kernel's PTX is kept, in the temp folder.</summary>
    private static readonly string? KeepFolder = Environment.GetEnvironmentVariable("MASKBIT_PTXAS_KEEP") is { Length: > 0 } keep ? keep : null;

    private static (bool Ok, string Log) Run(string ptx, string arch, string name)
    {
        string dir = KeepFolder ?? System.IO.Path.Combine(System.IO.Path.GetTempPath(), "maskbit-ptxas");
        Directory.CreateDirectory(dir);
        string file = System.IO.Path.Combine(dir, $"{FileSafe().Replace(name, "_")}.{arch}.ptx");
        string cubin = System.IO.Path.ChangeExtension(file, ".cubin");
        File.WriteAllText(file, ptx);
        var start = new ProcessStartInfo(Path!, ["-v", $"-arch={arch}", file, "-o", cubin])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        string log = stdout.Result + stderr;
        bool ok = process.ExitCode == 0;
        if (KeepFolder is not null) File.WriteAllText(System.IO.Path.ChangeExtension(file, ".log"), log);
        else
        {
            File.Delete(cubin);
            if (ok) File.Delete(file);
        }
        if (!ok) log += $"\n(PTX kept at {file})";
        return (ok, log);
    }

    [GeneratedRegex(@"Unsupported \.version (\d+\.\d+); current version is '(\d+\.\d+)'")]
    private static partial Regex UnsupportedVersion();

    [GeneratedRegex(@"^\s*\.version\s+\d+\.\d+", RegexOptions.Multiline)]
    private static partial Regex VersionLine();

    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex FunctionProperties();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex UsedRegisters();

    [GeneratedRegex(@"(\d+) bytes smem")]
    private static partial Regex SharedMemory();

    [GeneratedRegex(@"[^A-Za-z0-9_.-]")]
    private static partial Regex FileSafe();
}
