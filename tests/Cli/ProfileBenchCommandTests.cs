using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Autograd.Profiling;
using MaskBit.Cli;
using MaskBit.Kernels.Cpu;
using MaskBit.Models.Benchmarks;
using MaskBit.Models.Config;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Cli;

/// <summary>`maskbit profile` (table and Chrome trace), the profiling decorator's transparency, and a tiny
/// `maskbit bench --quick`.</summary>
[NonParallelizable]
public class ProfileBenchCommandTests
{
    [Test]
    public void FilterTakesCommaSeparatedGlobs()
    {
        var names = WorkloadRunner.Select("gemm_square_256, conv3x3_128x64_*").Select(w => w.Name).ToList();
        Assert.That(names, Does.Contain("gemm_square_256").And.Contain("conv3x3_128x64_fwd").And.Contain("conv3x3_128x64_fb"));
        Assert.That(names, Has.None.StartsWith("attention"));
    }

    private static string Config(string name) => Path.Combine(TestPaths.RepoRoot, "configs", name);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Test]
    public void ProfileTokenizerPrintsKernelTableAndWritesChromeTrace()
    {
        string dir = Path.Combine(Path.GetTempPath(), "maskbit-profile-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Run("profile", "tokenizer", "--config", Config("fashion_mnist_tokenizer.yaml"),
                "--steps", "1", "--warmup", "0", "--batch", "2", "--out", dir);
            Assert.That(code, Is.EqualTo(Program.ExitOk), err);
            Assert.That(output, Does.Contain("kernel").And.Contain("share %").And.Contain("Conv2dForward").And.Contain("conv2d backward"));

            using var trace = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "trace.json")));
            var complete = trace.RootElement.GetProperty("traceEvents").EnumerateArray()
                .Where(e => e.GetProperty("ph").GetString() == "X").ToList();
            Assert.That(complete, Has.Count.GreaterThan(100));
            foreach (var e in complete)
            {
                Assert.That(e.GetProperty("name").GetString(), Is.Not.Empty);
                Assert.That(e.GetProperty("ts").GetDouble(), Is.GreaterThanOrEqualTo(0));
                Assert.That(e.GetProperty("dur").GetDouble(), Is.GreaterThanOrEqualTo(0));
                Assert.That(e.TryGetProperty("tid", out _) && e.TryGetProperty("args", out _), Is.True);
            }
            var conv = complete.First(e => e.GetProperty("name").GetString() == "Conv2dForward");
            Assert.That(conv.GetProperty("args").GetProperty("shapes").GetString(), Does.StartWith("x[2,"));
            Assert.That(conv.GetProperty("args").GetProperty("gflop").GetDouble(), Is.GreaterThan(0));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }

    [Test]
    public void ProfileGeneratorSamplingRuns()
    {
        string dir = Path.Combine(Path.GetTempPath(), "maskbit-profile-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Run("profile", "generator", "--config", Config("fashion_mnist_generator.yaml"), "--sample",
                "--steps", "1", "--warmup", "0", "--batch", "1", "--out", dir);
            Assert.That(code, Is.EqualTo(Program.ExitOk), err);
            Assert.That(output, Does.Contain("AttentionForward").And.Contain("guided sampling step 1/1"));
            Assert.That(File.Exists(Path.Combine(dir, "trace.json")));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }

    [Test]
    public void ProfileRejectsAnUnknownDevice()
    {
        var (code, _, err) = Run("profile", "tokenizer", "--config", Config("fashion_mnist_tokenizer.yaml"), "--device", "tpu");
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(err, Does.Contain("--device tpu"));
    }

    /// <summary>The decorator only observes: two training steps give bit-identical losses with and without it.</summary>
    [Test]
    public void ProfilingDoesNotChangeTrainingResults()
    {
        var tokenizerConfig = MaskBitConfig.Load(Config("fashion_mnist_tokenizer.yaml"));
        var generatorConfig = MaskBitConfig.Load(Config("fashion_mnist_generator.yaml"));
        double[] Losses(Func<IModelStep> create)
        {
            var step = create();
            return new[] { step.Run(), step.Run() };
        }
        var plainTokenizer = Losses(() => new TokenizerStepWorkload(tokenizerConfig, batchSize: 2));
        var plainGenerator = Losses(() => new MlmStepWorkload(generatorConfig, batchSize: 4));

        var profiler = new Profiler();
        double[] profiledTokenizer, profiledGenerator;
        using (profiler.Install(CpuBackend.Instance))
        {
            Assert.That(Device.Default, Is.InstanceOf<ProfilingBackend>());
            profiledTokenizer = Losses(() => new TokenizerStepWorkload(tokenizerConfig, batchSize: 2));
            profiledGenerator = Losses(() => new MlmStepWorkload(generatorConfig, batchSize: 4));
        }
        Assert.That(Device.Default, Is.SameAs(CpuBackend.Instance));
        Assert.That(profiledTokenizer, Is.EqualTo(plainTokenizer));
        Assert.That(profiledGenerator, Is.EqualTo(plainGenerator));
        Assert.That(profiler.Summary().Select(r => r.Name), Does.Contain("Gemm").And.Contain("Conv2dBackwardWeight"));
    }

    [Test]
    public void BenchQuickTimesASelectedWorkload()
    {
        string json = Path.Combine(Path.GetTempPath(), "maskbit-bench-" + Guid.NewGuid().ToString("N") + ".jsonl");
        try
        {
            var (code, output, err) = Run("bench", "--quick", "--filter", "gemm_square_256", "--json", json);
            Assert.That(code, Is.EqualTo(Program.ExitOk), err);
            Assert.That(output, Does.Contain("gemm_square_256").And.Contain("% peak"));
            var row = JsonDocument.Parse(File.ReadAllLines(json).Single()).RootElement;
            Assert.That(row.GetProperty("name").GetString(), Is.EqualTo("gemm_square_256"));
            Assert.That(row.GetProperty("median_ms").GetDouble(), Is.GreaterThan(0));
            Assert.That(row.GetProperty("pct_peak").GetDouble(), Is.GreaterThan(0));
        }
        finally { File.Delete(json); }
    }

    [Test]
    public void BenchListsModelWorkloadsAndRejectsAnEmptyFilter()
    {
        var (code, output, _) = Run("bench", "--list", "--filter", "model.*");
        Assert.That(code, Is.EqualTo(Program.ExitOk));
        Assert.That(output, Does.Contain("small_tokenizer_train_step").And.Contain("generator12_sample_step_b2_cfg"));
        Assert.That(Run("bench", "--filter", "nothing_like_this").Code, Is.EqualTo(Program.ExitUsage));
    }
}
