using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using MaskBit.Autograd.Profiling;
using MaskBit.Kernels;
using MaskBit.Kernels.Cpu;
using MaskBit.Kernels.Ilgpu;
using MaskBit.Models.Benchmarks;
using MaskBit.Models.Config;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit profile tokenizer|generator --config C`: runs training (or sampling) steps of a config with
/// random weights and synthetic inputs on a profiled device, prints time per kernel and per autograd op, and
/// writes a Chrome trace (trace.json) for Perfetto / chrome://tracing.</summary>
internal static class ProfileCommand
{
    public const string TraceFileName = "trace.json";

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var profile = new Command("profile", "Time every kernel of a few training or sampling steps: a table by kernel and by op, " +
                                             "and a Chrome trace (open trace.json in ui.perfetto.dev or chrome://tracing).");
        profile.Subcommands.Add(Kind("tokenizer", "the tokenizer's training step (generator and discriminator, at the config's batch size)", stdout, stderr));
        profile.Subcommands.Add(Kind("generator", "the generator's training step, or with --sample one guided sampling step", stdout, stderr));
        return profile;
    }

    private static Command Kind(string kind, string what, TextWriter stdout, TextWriter stderr)
    {
        var config = CommandSupport.ConfigOption();
        var overrides = CommandSupport.OverridesArgument();
        var device = new Option<string>("--device") { Description = "cpu (default), ilgpu-cpu or cuda.", DefaultValueFactory = _ => "cpu" };
        var steps = new Option<int>("--steps") { Description = "Profiled steps.", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "Unprofiled steps first (JIT, buffer pool).", DefaultValueFactory = _ => 1 };
        var batch = new Option<int?>("--batch") { Description = "Batch size instead of training.per_gpu_batch_size (images to sample with --sample, default 2)." };
        var output = new Option<string>("--out") { Description = "Folder for trace.json.", DefaultValueFactory = _ => "runs/profile" };
        var command = new Command(kind, $"Profile {what}.") { config, overrides, device, steps, warmup, batch, output };
        Option<bool>? sample = null;
        if (kind == "generator")
        {
            sample = new Option<bool>("--sample") { Description = "Profile sampling steps (classifier-free guidance) instead of training steps." };
            command.Options.Add(sample);
        }
        command.SetAction(parse => CommandSupport.Guard(stderr, () =>
        {
            int n = parse.GetValue(steps), w = parse.GetValue(warmup);
            if (n < 1 || w < 0)
            {
                stderr.WriteLine($"error: --steps must be at least 1 and --warmup at least 0 (got {n}, {w})");
                return Program.ExitUsage;
            }
            var cfg = CommandSupport.LoadConfig(parse.GetValue(config)!, parse.GetValue(overrides));
            bool sampling = sample != null && parse.GetValue(sample);
            int? batchSize = parse.GetValue(batch);
            using var backend = Backend(parse.GetValue(device)!);
            if (backend == null)
            {
                stderr.WriteLine($"error: --device {parse.GetValue(device)}: not a device (cpu, ilgpu-cpu, cuda)");
                return Program.ExitUsage;
            }
            return Run(cfg, kind, sampling, batchSize, backend.Device, n, w, parse.GetValue(output)!, stdout);
        }));
        return command;
    }

    private static int Run(MaskBitConfig config, string kind, bool sampling, int? batchSize, IBackend device, int steps, int warmup,
        string outDir, TextWriter stdout)
    {
        var profiler = new Profiler();
        using (profiler.Install(device))
        {
            IModelStep step = kind == "tokenizer" ? new TokenizerStepWorkload(config, batchSize)
                : sampling ? new SamplingStep(config, batchSize ?? 2)
                : new MlmStepWorkload(config, batchSize);
            string what = kind == "tokenizer" ? "tokenizer training" : sampling ? "guided sampling" : "generator training";
            for (int i = 0; i < warmup; i++) step.Run();
            profiler.Clear();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++)
            {
                double value = step.Run();
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what} step {i + 1}/{steps}: {value:G6}"));
            }
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{steps} {what} steps of {config.File} on {device.Name}: {clock.Elapsed.TotalMilliseconds / steps:F1} ms per step (profiled)"));
        }
        stdout.WriteLine();
        profiler.WriteTable(stdout);
        Directory.CreateDirectory(outDir);
        string trace = Path.Combine(outDir, TraceFileName);
        profiler.WriteChromeTrace(trace);
        stdout.WriteLine($"wrote {trace} ({profiler.Events.Count} events; open in ui.perfetto.dev or chrome://tracing)");
        return Program.ExitOk;
    }

    /// <summary>The named device, owned by the caller when it was created here (the CPU backend is shared).</summary>
    private static DeviceLease? Backend(string name) => name switch
    {
        "cpu" => new DeviceLease(CpuBackend.Instance, owned: false),
        "ilgpu-cpu" => new DeviceLease(IlgpuBackend.CreateCpu(), owned: true),
        "cuda" => new DeviceLease(IlgpuBackend.CreateCuda(), owned: true),
        _ => null,
    };

    private sealed class DeviceLease(IBackend device, bool owned) : IDisposable
    {
        public IBackend Device { get; } = device;
        public void Dispose() { if (owned) Device.Dispose(); }
    }
}
