using System.Runtime.Intrinsics.X86;

namespace MaskBit.Kernels.Cpu;

/// <summary>Per-core data cache sizes in bytes (L3: the whole shared cache), which the GEMM blocking is derived
/// from. Read from Linux sysfs, else from CPUID's cache-topology leaf (Intel leaf 4, AMD 0x8000001D; virtual
/// machines often hide sysfs but pass CPUID through), else a Zen 3 core's (32 KiB, 512 KiB, 32 MiB).</summary>
public sealed record CpuCaches(long L1, long L2, long L3, string Source)
{
    public static readonly CpuCaches Zen3 = new(32 << 10, 512 << 10, 32 << 20, "default (Zen 3)");

    public static CpuCaches Current { get; } = FromSysfs() ?? FromCpuid() ?? Zen3;

    public override string ToString() => $"L1d {L1 >> 10} KiB, L2 {L2 >> 10} KiB, L3 {L3 >> 20} MiB ({Source})";

    private static CpuCaches? FromSysfs()
    {
        const string dir = "/sys/devices/system/cpu/cpu0/cache";
        var sizes = new Dictionary<int, long>();
        try
        {
            if (!Directory.Exists(dir)) return null;
            foreach (var index in Directory.GetDirectories(dir, "index*"))
            {
                string type = File.ReadAllText(Path.Combine(index, "type")).Trim();
                if (type == "Instruction") continue;
                int level = int.Parse(File.ReadAllText(Path.Combine(index, "level")).Trim());
                sizes[level] = ParseSize(File.ReadAllText(Path.Combine(index, "size")).Trim());
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { return null; }
        return Complete(sizes, "sysfs");
    }

    /// <summary>"32K", "1024K", "32M" → bytes.</summary>
    private static long ParseSize(string text) => text[^1] switch
    {
        'K' => long.Parse(text[..^1]) << 10,
        'M' => long.Parse(text[..^1]) << 20,
        _ => long.Parse(text),
    };

    private static CpuCaches? FromCpuid()
    {
        if (!X86Base.IsSupported) return null;
        var (_, vendorB, vendorC, vendorD) = X86Base.CpuId(0, 0);
        bool amd = vendorB == 0x68747541 && vendorD == 0x69746E65 && vendorC == 0x444D4163;   // "AuthenticAMD"
        var sizes = new Dictionary<int, long>();
        if (amd && (uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax >= 0x80000006)
        {
            ReadTopology(unchecked((int)0x8000001D), sizes);
            if (sizes.Count == 0)
            {
                // Hypervisors may zero the topology leaf; AMD's older leaves give L1d in KiB (0x80000005 ECX[31:24]),
                // L2 in KiB (0x80000006 ECX[31:16]) and L3 in 512 KiB units (0x80000006 EDX[31:18]).
                sizes[1] = (long)((uint)X86Base.CpuId(unchecked((int)0x80000005), 0).Ecx >> 24) << 10;
                var (_, _, ecx, edx) = X86Base.CpuId(unchecked((int)0x80000006), 0);
                sizes[2] = (long)((uint)ecx >> 16) << 10;
                sizes[3] = (long)((uint)edx >> 18) << 19;
            }
        }
        else if (!amd && X86Base.CpuId(0, 0).Eax >= 4) ReadTopology(4, sizes);
        return Complete(sizes, "cpuid");
    }

    /// <summary>The deterministic cache parameters leaf (Intel 4, AMD 0x8000001D): one sub-leaf per cache.</summary>
    private static void ReadTopology(int leaf, Dictionary<int, long> sizes)
    {
        for (int sub = 0; sub < 16; sub++)
        {
            var (eax, ebx, ecx, _) = X86Base.CpuId(leaf, sub);
            int type = eax & 0x1F;                      // 0 none (end of list), 1 data, 2 instruction, 3 unified
            if (type == 0) break;
            if (type == 2) continue;
            int level = (eax >> 5) & 7;
            long ways = ((ebx >> 22) & 0x3FF) + 1, partitions = ((ebx >> 12) & 0x3FF) + 1, line = (ebx & 0xFFF) + 1;
            sizes[level] = ways * partitions * line * ((long)(uint)ecx + 1);
        }
    }

    private static CpuCaches? Complete(Dictionary<int, long> sizes, string source) =>
        sizes.TryGetValue(1, out long l1) && sizes.TryGetValue(2, out long l2) && l1 > 0 && l2 > 0
            ? new CpuCaches(l1, l2, sizes.GetValueOrDefault(3, l2), source)
            : null;
}
