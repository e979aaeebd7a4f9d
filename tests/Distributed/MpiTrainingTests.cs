using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MaskBit.Distributed;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;
using MaskBit.Tests.Data;
using MaskBit.Tests.Training;

namespace MaskBit.Tests.Distributed;

/// <summary>
/// Data-parallel training as users launch it: <c>mpirun --oversubscribe --allow-run-as-root -np 2 dotnet maskbit.dll
/// train …</c> against the same command in one process. Tolerances: the ranks' gradients are summed by MPI in another
/// order than one process sums the batch (and the per-rank loss means are averaged instead of one mean over the global
/// batch), so float32 results agree to a few ulps per operation; over a few AdamW steps that stays below 1e-4 relative
/// for losses and norms, and 1e-3 in |Δw|₂ / |w|₂ for each model's weights (observed: tokenizer ≈1e-5, its small
/// discriminator ≈5e-4, generator ≈5e-8). Weights are compared in
/// norm, not element by element: a parameter whose gradient is zero up to rounding (a conv bias in front of a
/// normalisation) is moved by AdamW by up to ±lr per step on that rounding noise alone, in either run. The configs leave out the terms that are
/// not a mean over samples (the LFQ batch-entropy term and the adaptive GAN weight, which the reference's DDP also
/// computes per rank) and dropout (its masks are drawn per rank). Skipped where Open MPI's mpirun is not installed.
/// </summary>
[TestFixture]
[NonParallelizable]
public class MpiTrainingTests
{
    private const double Tolerance = 1e-4, WeightTolerance = 1e-3;
    private TempDirectory _dir = null!;
    private string _tokenizerConfig = null!, _generatorConfig = null!, _tokenizerWeights = null!;

    [OneTimeSetUp]
    public void WriteImagesAndConfigs()
    {
        _dir = new TempDirectory();
        string images = _dir.File("images");
        for (int i = 0; i < 16; i++)
            ImageIO.Write(_dir.File("images", $"class{i % 2}", $"img{i:D2}.png"), TestImages.Gradient(16, 16, 3, phase: 37 * i));
        _tokenizerConfig = _dir.File("tokenizer.yaml");
        File.WriteAllText(_tokenizerConfig, TokenizerTrainerTests.TinyConfig.Replace("IMAGES", images)
            .Replace("entropy_loss_weight: 0.02", "entropy_loss_weight: 0.0").Replace("entropy_annealing_factor: 2.0", "entropy_annealing_factor: 0.0")
            .Replace("discriminator_gradient_penalty: \"adopt_weight\"", "discriminator_gradient_penalty: \"none\"")
            // A constant rate, so that runs which stop at other max_train_steps follow one curve (resume tests).
            .Replace("scheduler: \"cosine_with_minimum\"", "scheduler: \"constant\""));
        _generatorConfig = _dir.File("generator.yaml");
        File.WriteAllText(_generatorConfig, GeneratorTrainerTests.TinyConfig.Replace("dropout: 0.1\n", "dropout: 0.0\n")
            .Replace("dataset:\n", $"dataset:\n    params:\n        train_shards_path_or_url: \"{images}\"\n"));
        _tokenizerWeights = _dir.File("tokenizer.safetensors");
        var tokenizer = new ConvVQModel(TokenizerConfig.From(MaskBitConfig.Load(_generatorConfig)), seed: 11);
        SafeTensors.Save(_tokenizerWeights, tokenizer.StateDict().Select(kv => GeneratorTrainerTests.Record(kv.Name, kv.Tensor)).ToList());
    }

    [OneTimeTearDown]
    public void Cleanup() => _dir.Dispose();

    // ---- equivalence ---------------------------------------------------------------------------------------------

    [Test]
    public void TwoRanksWithHalfTheBatchTrainTheTokenizerAsOneProcessWithTheWholeBatch()
    {
        string one = _dir.File("tok-1"), two = _dir.File("tok-2"), again = _dir.File("tok-2-again");
        string[] common = ["training.max_train_steps=5"];   // the discriminator trains from step 3 on
        Expect(0, Maskbit(1, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", one, "training.per_gpu_batch_size=4", .. common]));
        var run = Maskbit(2, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", two, "training.per_gpu_batch_size=2", .. common]);
        Expect(0, run);
        Assert.That(run.Output, Does.Contain("2 ranks"));
        string[] terms = ["total_loss", "reconstruction_loss", "quantizer_loss", "grad_norm", "gan_loss", "discriminator_loss", "discriminator_grad_norm"];
        AssertSameCurves(Metrics(one), Metrics(two), terms, Tolerance);
        Assert.That(Metrics(two).Last().ContainsKey("discriminator_grad_norm"), "the discriminator trained");
        AssertSameWeights(Checkpoint(one, 5), Checkpoint(two, 5), WeightTolerance);

        // One world size and seed: the same run bit for bit.
        Expect(0, Maskbit(2, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", again, "training.per_gpu_batch_size=2", .. common]));
        AssertSameCurves(Metrics(two), Metrics(again), terms, 0);
        AssertSameWeights(Checkpoint(two, 5), Checkpoint(again, 5), 0);
    }

    [Test]
    public void TwoRanksWithHalfTheBatchTrainTheGeneratorAsOneProcessWithTheWholeBatch()
    {
        string one = _dir.File("gen-1"), two = _dir.File("gen-2"), again = _dir.File("gen-2-again");
        string[] common = ["--tokenizer", _tokenizerWeights, "training.max_train_steps=4", "experiment.max_train_examples=16"];
        Expect(0, Maskbit(1, ["train", "generator", "--config", _generatorConfig, "--out", one, "training.per_gpu_batch_size=8", .. common]));
        Expect(0, Maskbit(2, ["train", "generator", "--config", _generatorConfig, "--out", two, "training.per_gpu_batch_size=4", .. common]));
        // The accuracies are ratios per rank (their mean is not the global ratio), so they are left out.
        AssertSameCurves(Metrics(one), Metrics(two), ["train/mlm_loss", "grad_norm"], Tolerance);
        AssertSameWeights(Checkpoint(one, 4), Checkpoint(two, 4), WeightTolerance);
        Assert.That(File.Exists(Path.Combine(two, GeneratorTrainer.WeightsFileName)));

        // One world size and seed: the same run bit for bit (masks, gradient pieces and their sums in a fixed order).
        Expect(0, Maskbit(2, ["train", "generator", "--config", _generatorConfig, "--out", again, "training.per_gpu_batch_size=4", .. common]));
        AssertSameCurves(Metrics(two), Metrics(again), ["train/mlm_loss", "grad_norm"], 0);
        AssertSameWeights(Checkpoint(two, 4), Checkpoint(again, 4), 0);
    }

    [Test]
    public void ResumingAtAnotherWorldSizeContinuesTheSameLossCurve()
    {
        string whole = _dir.File("resume-whole"), switched = _dir.File("resume-2-1-2");
        Expect(0, Maskbit(1, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", whole, "training.per_gpu_batch_size=4", "training.max_train_steps=6"]));
        Expect(0, Maskbit(2, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", switched, "training.per_gpu_batch_size=2", "training.max_train_steps=2"]));
        var middle = Maskbit(1, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", switched, "training.per_gpu_batch_size=4", "training.max_train_steps=4"]);
        Expect(0, middle);
        Assert.That(middle.Output, Does.Contain("resumed from").And.Contain("checkpoint-2"));
        var last = Maskbit(2, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", switched, "training.per_gpu_batch_size=2", "training.max_train_steps=6"]);
        Expect(0, last);
        Assert.That(last.Output, Does.Contain("checkpoint-4"));
        AssertSameCurves(Metrics(whole), Metrics(switched), ["total_loss", "reconstruction_loss", "grad_norm", "discriminator_loss"], Tolerance);
        AssertSameWeights(Checkpoint(whole, 6), Checkpoint(switched, 6), WeightTolerance);
    }

    // ---- device buffers -------------------------------------------------------------------------------------------

    /// <summary>The host-staged path on device buffers across processes: both ranks on ILGPU's CPU accelerator (each
    /// bucket downloaded, summed by MPI, uploaded) take the step of one process with the whole batch. The model is the
    /// tiny sample-scoring classifier, one step: a tokenizer step on the emulator takes minutes per process. Compared
    /// with one process on the cpu backend (the devices agree to float32 rounding, tested in-process), in the
    /// tolerances of the other equivalence tests.</summary>
    [Test]
    public void TwoRanksOnIlgpuCpuTakeTheTrainingStepOfOneProcess()
    {
        string config = _dir.File("classifier.yaml"), one = _dir.File("classifier-1"), two = _dir.File("classifier-2-ilgpu");
        File.WriteAllText(config, ClassifierTests.TinyConfig.Replace("IMAGES", _dir.File("images")));
        string[] common = ["train", "classifier", "--config", config, "training.max_train_steps=1", "lr_scheduler.params.warmup_steps=0"];
        Expect(0, Maskbit(1, [.. common, "--out", one, "training.per_gpu_batch_size=8"]));
        var run = Maskbit(2, [.. common, "--out", two, "--device", "ilgpu-cpu", "training.per_gpu_batch_size=4"]);
        Expect(0, run);
        Assert.That(run.Output, Does.Contain("2 ranks"));
        AssertSameCurves(Metrics(one), Metrics(two), ["train/loss", "grad_norm"], Tolerance);
        AssertSameWeights(Checkpoint(one, 1), Checkpoint(two, 1), WeightTolerance);
    }

    /// <summary>NCCL asked for on the CPU backend: every rank stops at the first device collective (rank 0's weights to
    /// the others) with the one line naming the setting and the device.</summary>
    [Test]
    public void AskingForNcclOffCudaStopsTheJobWithOneLine()
    {
        var run = Maskbit(2, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", _dir.File("nccl-on-cpu"), "training.max_train_steps=1"],
            environment: new Dictionary<string, string> { [DeviceCollectives.Variable] = "nccl" });
        Assert.That(run.Code, Is.Not.EqualTo(0), run.Output);
        Assert.That(run.Output, Does.Contain($"{DeviceCollectives.Variable}=nccl: NCCL moves CUDA device buffers, this run's device is cpu"));
    }

    // ---- evaluation and sampling split across ranks ------------------------------------------------------------------

    /// <summary>Each rank samples and evaluates whole batches of its share; rank 0 merges the float64 sums, which then
    /// add in another order than one process adds them: 1e-9 relative (observed ≈1e-14).</summary>
    [Test]
    public void EvalGeneratorOnTwoRanksGivesTheNumbersOfOneProcess()
    {
        string config = _dir.File("eval-generator.yaml"), tokenizer = _dir.File("eval-tokenizer.safetensors"), generator = _dir.File("eval-generator.safetensors");
        File.WriteAllText(config, Cli.EvalToolsTests.GeneratorConfig);
        var cfg = MaskBitConfig.Load(config);
        SafeTensors.Save(tokenizer, new ConvVQModel(TokenizerConfig.From(cfg), seed: 5).StateDict().Select(kv => GeneratorTrainerTests.Record(kv.Name, kv.Tensor)).ToList());
        SafeTensors.Save(generator, new Models.Generator.MaskedGenerator(Models.Generator.GeneratorConfig.From(cfg), seed: 6).StateDict()
            .Select(kv => GeneratorTrainerTests.Record(kv.Name, kv.Tensor)).ToList());
        string inception = _dir.File("inception.safetensors"), stats = _dir.File("stats.npz");
        using (Autograd.TensorScope.Begin())
            SafeTensors.Save(inception, Perceptual.FormulaWeights.Build(Path.Combine(Golden.GoldenCases.RepoDir, "formula_nets", "inception_params.json"))
                .Where(kv => !kv.Key.EndsWith(".num_batches_tracked", StringComparison.Ordinal)).Select(kv => GeneratorTrainerTests.Record(kv.Key, kv.Value)).ToList());
        var sigma = new double[2048 * 2048];
        for (int i = 0; i < 2048; i++) sigma[i * 2048 + i] = 1;
        Npy.WriteNpz(stats, new Dictionary<string, NpyArray>
        {
            ["mu"] = new(NpyType.Float64, [2048], new byte[2048 * 8]),
            ["sigma"] = new(NpyType.Float64, [2048, 2048], System.Runtime.InteropServices.MemoryMarshal.AsBytes(sigma.AsSpan()).ToArray()),
        });
        // 4 images in batches of 1: rank 0 samples images 0–1, rank 1 images 2–3; Inception Score parts of 3 images
        // straddle the ranks.
        string[] Args(string outDir) => ["eval", "generator", "--config", config, "--tokenizer", tokenizer, "--generator", generator, "--num-images", "4",
            "--batch-size", "1", "--is-split-size", "3", "--inception-weights", inception, "--fid-stats", stats, "--out", outDir];
        string one = _dir.File("eval-1"), two = _dir.File("eval-2");
        Expect(0, Maskbit(1, Args(one)));
        // A rank that finished its share waits for the others (the Inception network is slow on a loaded machine).
        Expect(0, Maskbit(2, Args(two), watchdogSeconds: 600));
        Assert.That(File.Exists(Path.Combine(two, "eval_state.rank1of2.npz")), "each rank's resumable state");
        var (expected, actual) = (EvalMetrics(one), EvalMetrics(two));
        foreach (var key in new[] { "num_images", "num_classes", "gFID", "InceptionScore", "InceptionScoreStd", "InceptionScoreSplits" })
            Assert.That(actual[key], Is.EqualTo(expected[key]).Within(1e-9 * Math.Abs(expected[key])), key);
        Assert.That(actual["InceptionScoreSplits"], Is.EqualTo(2));
    }

    /// <summary>Each rank reconstructs a share of whole batches (16 images in batches of 3: rank 0 images 0–8, rank 1
    /// 9–15, a short last batch); rank 0 merges the float64 sums: 1e-12 relative, the codebook counts exactly.</summary>
    [Test]
    public void EvalTokenizerOnTwoRanksGivesTheNumbersOfOneProcess()
    {
        string weights = _dir.File("eval-tok.safetensors");
        SafeTensors.Save(weights, new ConvVQModel(TokenizerConfig.From(MaskBitConfig.Load(_tokenizerConfig)), seed: 12).StateDict()
            .Select(kv => GeneratorTrainerTests.Record(kv.Name, kv.Tensor)).ToList());
        string[] Args(string outDir) => ["eval", "tokenizer", "--config", _tokenizerConfig, "--checkpoint", weights, "--data", _dir.File("images"),
            "--batch-size", "3", "--out", outDir];
        string one = _dir.File("eval-tok-1"), two = _dir.File("eval-tok-2");
        Expect(0, Maskbit(1, Args(one)));
        var run = Maskbit(2, Args(two));
        Expect(0, run);
        Assert.That(run.Output, Does.Contain("split over 2 ranks"));
        var (expected, actual) = (EvalMetrics(one), EvalMetrics(two));
        Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
        foreach (var key in new[] { "MAE", "MSE", "PSNR", "SSIM", "CodebookUsage", "CodebookEntropy" })
            Assert.That(actual[key], Is.EqualTo(expected[key]).Within(1e-12 * Math.Abs(expected[key])), key);
    }

    /// <summary>Each rank samples a share of whole batches from their own seeds (5 samples in batches of 2: rank 0
    /// samples 0–3, rank 1 sample 4); rank 0 gathers them and writes the files of one process: the same PNGs and arrays.</summary>
    [Test]
    public void GenerateOnTwoRanksWritesTheFilesOfOneProcess()
    {
        string[] Args(string outDir) => ["generate", "--config", _generatorConfig, "--tokenizer", _tokenizerWeights, "--generator", GeneratorWeights(),
            "--classes", "0,1,2,3,4", "--batch-size", "2", "--steps", "2", "--seed", "3", "--out", outDir];
        string one = _dir.File("generate-1"), two = _dir.File("generate-2");
        Expect(0, Maskbit(1, Args(one)));
        Expect(0, Maskbit(2, Args(two)));
        var files = Directory.GetFiles(one).Select(Path.GetFileName).Order().ToArray();
        Assert.That(files, Has.Length.EqualTo(5 + 2), "a PNG per sample, grid.png and samples.npz");
        Assert.That(Directory.GetFiles(two).Select(Path.GetFileName).Order(), Is.EqualTo(files));
        foreach (var file in files.Where(f => f!.EndsWith(".png", StringComparison.Ordinal)))
            Assert.That(File.ReadAllBytes(Path.Combine(two, file!)), Is.EqualTo(File.ReadAllBytes(Path.Combine(one, file!))), file);
        // The archive's entries carry their write time: compare the arrays.
        var (expected, actual) = (Npy.ReadNpz(Path.Combine(one, "samples.npz")), Npy.ReadNpz(Path.Combine(two, "samples.npz")));
        Assert.That(actual.Keys, Is.EquivalentTo(new[] { "images", "labels", "tokens" }));
        foreach (var (key, array) in expected)
        {
            Assert.That(actual[key].Shape, Is.EqualTo(array.Shape), key);
            Assert.That(actual[key].Data, Is.EqualTo(array.Data), key);
        }
    }

    private string GeneratorWeights()
    {
        string path = _dir.File("sampling-generator.safetensors");
        if (!File.Exists(path))
            SafeTensors.Save(path, new Models.Generator.MaskedGenerator(Models.Generator.GeneratorConfig.From(MaskBitConfig.Load(_generatorConfig)), seed: 7)
                .StateDict().Select(kv => GeneratorTrainerTests.Record(kv.Name, kv.Tensor)).ToList());
        return path;
    }

    private static Dictionary<string, double> EvalMetrics(string dir) =>
        JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(File.ReadAllText(Path.Combine(dir, "metrics.json")))!
            .Where(kv => kv.Value.ValueKind == JsonValueKind.Number).ToDictionary(kv => kv.Key, kv => kv.Value.GetDouble());

    // ---- faults ---------------------------------------------------------------------------------------------------

    [Test]
    public void AKilledRankStopsTheJobNamingItAndTheRunResumes()
    {
        string run = _dir.File("killed");
        var result = Maskbit(2, LongRun(run), whileRunning: job =>
        {
            WaitForCheckpoint(run, job);
            var clock = Stopwatch.StartNew();
            Process.GetProcessById(RankProcess(run, 1)).Kill();   // SIGKILL
            return clock;
        }, out var sinceKill);
        Assert.That(result.Code, Is.Not.EqualTo(0), result.Output);
        Assert.That(sinceKill.Elapsed, Is.LessThan(TimeSpan.FromSeconds(WatchdogSeconds + 15)), "the job ends within the watchdog's time");
        Assert.That(result.Output, Does.Contain("rank 1").And.Contain("signal 9"));
        var resumed = Maskbit(1, ["train", "tokenizer", "--config", _tokenizerConfig, "--out", run, "training.per_gpu_batch_size=4", "training.max_train_steps=3"]);
        Expect(0, resumed);
        Assert.That(resumed.Output, Does.Contain("resumed from"));
    }

    [Test]
    public void ARankThatStopsAnsweringIsCaughtByTheWatchdog()
    {
        string run = _dir.File("stuck");
        int stuck = 0;
        var result = Maskbit(2, LongRun(run), whileRunning: job =>
        {
            WaitForCheckpoint(run, job);
            stuck = RankProcess(run, 1);
            var clock = Stopwatch.StartNew();
            Assert.That(Process.Start("kill", ["-STOP", stuck.ToString(CultureInfo.InvariantCulture)])!.WaitForExit(10_000));
            return clock;
        }, out var sinceStop);
        try
        {
            Assert.That(result.Code, Is.Not.EqualTo(0), result.Output);
            Assert.That(sinceStop.Elapsed, Is.LessThan(TimeSpan.FromSeconds(WatchdogSeconds + 15)));
            Assert.That(result.Output, Does.Contain("rank 0: ").And.Contain("timed out after"));
        }
        finally
        {
            try { Process.GetProcessById(stuck).Kill(); } catch (ArgumentException) { /* mpirun ended it */ }
        }
    }

    /// <summary>SIGTERM to the launcher script of the README (scripts/mpirun-clean-stop.sh, which turns it into the
    /// SIGUSR1 that Open MPI's mpirun forwards): every rank stops after the same step, rank 0 writes that step's
    /// checkpoint, the job exits 130, and the same command on 2 ranks resumes from it.</summary>
    [Test]
    public void SigTermToTheLauncherScriptStopsEveryRankWithACheckpointAndExit130AndTheRunResumes()
    {
        string run = _dir.File("sigterm");
        var result = Maskbit(2, LongRun(run), whileRunning: job =>
        {
            WaitForCheckpoint(run, job);
            Assert.That(Process.Start("kill", ["-TERM", job.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit(10_000));
            return Stopwatch.StartNew();
        }, out _, throughCleanStopScript: true);
        Assert.That(result.Code, Is.EqualTo(130), result.Output);
        var cancelled = System.Text.RegularExpressions.Regex.Match(result.Output, @"cancelled at step (\d+)");
        Assert.That(cancelled.Success, result.Output);
        long step = long.Parse(cancelled.Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.That(new RunFolder(run).LatestCheckpoint(), Is.EqualTo(new RunFolder(run).CheckpointPath(step)), "the stop wrote the step it stopped at");
        Assert.That(result.Output, Does.Not.Contain("signal 15").And.Not.Contain("Abort"), "no rank was killed");
        var resumed = Maskbit(2, [.. LongRun(run)[..^2], $"training.max_train_steps={step + 1}"]);
        Expect(0, resumed);
        Assert.That(resumed.Output, Does.Contain("resumed from").And.Contain($"checkpoint-{step}"));
    }

    // ---- support --------------------------------------------------------------------------------------------------

    private const int WatchdogSeconds = 10;

    private string[] LongRun(string run) =>
        ["train", "tokenizer", "--config", _tokenizerConfig, "--out", run, "training.per_gpu_batch_size=2", "training.max_train_steps=100000", "experiment.save_every=2"];

    private sealed record Result(int Code, string Output);

    private static void Expect(int code, Result result) => Assert.That(result.Code, Is.EqualTo(code), result.Output);

    private static Result Maskbit(int ranks, string[] args, int watchdogSeconds = WatchdogSeconds, IReadOnlyDictionary<string, string>? environment = null) =>
        Maskbit(ranks, args, null, out _, watchdogSeconds, environment);

    /// <summary>maskbit in one process (<paramref name="ranks"/> = 1) or under mpirun, started directly or by
    /// scripts/mpirun-clean-stop.sh (<paramref name="throughCleanStopScript"/>); <paramref name="whileRunning"/>
    /// acts on the running job (the launcher's process) and returns a clock the caller reads once the job ended;
    /// <paramref name="environment"/> reaches every rank.</summary>
    private static Result Maskbit(int ranks, string[] args, Func<Process, Stopwatch>? whileRunning, out Stopwatch clock, int watchdogSeconds = WatchdogSeconds,
        IReadOnlyDictionary<string, string>? environment = null, bool throughCleanStopScript = false)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "maskbit.dll");
        Assume.That(File.Exists(dll), $"{dll} is not built");
        ProcessStartInfo info;
        if (ranks == 1) info = new ProcessStartInfo("dotnet");
        else
        {
            string? mpirun = FindMpirun();
            if (mpirun == null) Assert.Ignore("mpirun not found: install Open MPI (Debian: apt-get install openmpi-bin) to run the multi-process tests");
            info = new ProcessStartInfo(throughCleanStopScript ? Path.Combine(Support.TestPaths.RepoRoot, "scripts", "mpirun-clean-stop.sh") : mpirun!);
            if (throughCleanStopScript) info.Environment["MPIRUN"] = mpirun;
            // Containers often forbid the cross-process memory copy of Open MPI's shared-memory transport.
            foreach (var a in new[] { "--oversubscribe", "--allow-run-as-root", "--mca", "btl_vader_single_copy_mechanism", "none",
                                      "-x", ProcessGroup.TimeoutVariable, "-x", "DOTNET_TieredPGO", "-np", ranks.ToString(CultureInfo.InvariantCulture), "dotnet" })
                info.ArgumentList.Add(a);
            foreach (var name in environment?.Keys ?? [])
            {
                info.ArgumentList.Insert(info.ArgumentList.Count - 3, "-x");
                info.ArgumentList.Insert(info.ArgumentList.Count - 3, name);
            }
        }
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.RedirectStandardOutput = info.RedirectStandardError = true;
        info.UseShellExecute = false;
        info.Environment["DOTNET_TieredPGO"] = "0";
        info.Environment[ProcessGroup.TimeoutVariable] = watchdogSeconds.ToString(CultureInfo.InvariantCulture);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        clock = new Stopwatch();
        try { if (whileRunning != null) clock = whileRunning(process); }
        catch
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        if (!process.WaitForExit(TimeSpan.FromMinutes(4)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"maskbit did not finish: {string.Join(' ', args)}\n{stdout.Result}{stderr.Result}");
        }
        clock.Stop();
        return new Result(process.ExitCode, stdout.Result + stderr.Result);
    }

    private static string? FindMpirun() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "mpirun")).FirstOrDefault(File.Exists);

    private static void WaitForCheckpoint(string run, Process job)
    {
        var deadline = Stopwatch.StartNew();
        while (new RunFolder(run).LatestCheckpoint() == null)
        {
            Assert.That(job.HasExited, Is.False, "the job ended before its first checkpoint");
            Assert.That(deadline.Elapsed, Is.LessThan(TimeSpan.FromMinutes(3)), "no checkpoint after 3 minutes");
            Thread.Sleep(200);
        }
    }

    /// <summary>The process id of rank <paramref name="rank"/> of the job writing to <paramref name="run"/> (its
    /// command line names the run folder, its environment the rank).</summary>
    private static int RankProcess(string run, int rank)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                if (!File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(run, StringComparison.Ordinal)) continue;
                var environment = File.ReadAllText(Path.Combine(dir, "environ")).Split('\0');
                if (environment.Contains($"{LaunchInfo.RankVariable}={rank}")) return pid;
            }
            catch (IOException) { /* the process ended meanwhile */ }
            catch (UnauthorizedAccessException) { /* another user's */ }
        }
        Assert.Fail($"no process of rank {rank} writes to {run}");
        return 0;
    }

    private static List<Dictionary<string, double>> Metrics(string run) =>
        File.ReadAllLines(new RunFolder(run).MetricsPath).Select(line =>
            JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(line)!
                .Where(kv => kv.Value.ValueKind == JsonValueKind.Number).ToDictionary(kv => kv.Key, kv => kv.Value.GetDouble())).ToList();

    private static void AssertSameCurves(List<Dictionary<string, double>> expected, List<Dictionary<string, double>> actual, string[] terms, double relative)
    {
        Assert.That(actual.Select(m => m["step"]), Is.EqualTo(expected.Select(m => m["step"])));
        for (int i = 0; i < expected.Count; i++)
            foreach (var term in terms.Where(expected[i].ContainsKey))
                Assert.That(actual[i][term], Is.EqualTo(expected[i][term]).Within(relative * Math.Max(1e-3, Math.Abs(expected[i][term]))),
                    $"{term} at step {expected[i]["step"]}");
    }

    private static StateDict Checkpoint(string run, long step) => SafeTensors.Load(new RunFolder(run).CheckpointPath(step));

    /// <summary>Each part's weights (module.model, module.loss, ema.model, …) agree within <paramref name="relative"/> in
    /// the L2 norm of the difference over the norm of the weights.</summary>
    private static void AssertSameWeights(StateDict expected, StateDict actual, double relative)
    {
        var parts = expected.Where(t => t.DType == TensorDType.Float32 && (t.Name.StartsWith("module.", StringComparison.Ordinal) || t.Name.StartsWith("ema.", StringComparison.Ordinal)))
            .GroupBy(t => string.Join('.', t.Name.Split('.').Take(2))).ToList();
        Assert.That(parts, Is.Not.Empty);
        foreach (var part in parts)
        {
            double difference = 0, norm = 0;
            foreach (var e in part)
            {
                var a = actual[e.Name].ToFloat32();
                var x = e.ToFloat32();
                for (int i = 0; i < x.Length; i++)
                {
                    difference += (double)(a[i] - x[i]) * (a[i] - x[i]);
                    norm += (double)x[i] * x[i];
                }
            }
            double ratio = Math.Sqrt(difference / Math.Max(norm, 1e-30));
            TestContext.Out.WriteLine($"{part.Key}: |Δw| / |w| = {ratio:G3}");
            Assert.That(ratio, Is.LessThanOrEqualTo(relative), part.Key);
        }
    }
}
