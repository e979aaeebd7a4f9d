using System.CommandLine;
using System.Runtime.Intrinsics.X86;
using MaskBit.Kernels.Cpu;

namespace MaskBit.Cli;

/// <summary>The `maskbit` command. Sub-commands arrive with the tokenizer, generator and interop work;
/// `info` reports the compute devices this machine offers.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("MaskBit in .NET: bit-token image tokenizer and generator on a from-scratch engine.");
        var info = new Command("info", "Show the compute devices and CPU features MaskBit will use.");
        info.SetAction(_ =>
        {
            Console.WriteLine($"cpu: {Environment.ProcessorCount} cores, AVX2 {Avx2.IsSupported}, FMA {Fma.IsSupported}, " +
                              $"worker threads {CpuParallel.Workers}");
            Console.WriteLine($"default device: {CpuBackend.Instance.Name}");
            return 0;
        });
        root.Subcommands.Add(info);
        return root.Parse(args).Invoke();
    }
}
