using System.Diagnostics;
using System.Globalization;
using MaskBit.Cli;
using MaskBit.Models.Data;
using MaskBit.Models.Training;
using MaskBit.Tests.Data;
using MaskBit.Tests.Training;

namespace MaskBit.Tests.Cli;

/// <summary>
/// Drives the built <c>maskbit</c> as a user does: <c>dotnet maskbit.dll ...</c> in a child process (the Cli
/// output is copied next to the tests), checking exit codes, messages, files and --help text, and a Ctrl-C
/// (SIGINT, sent with kill -INT) during training that must leave a checkpoint the next run resumes from.
/// </summary>
[TestFixture]
[NonParallelizable]
public class CliProcessTests
{
    private TempDirectory _dir = null!;
    private string _config = null!;

    [OneTimeSetUp]
    public void WriteImagesAndConfig()
    {
        _dir = new TempDirectory();
        string images = _dir.File("images");
        for (int i = 0; i < 8; i++)
            ImageIO.Write(_dir.File("images", $"class{i % 2}", $"img{i:D2}.png"), TestImages.Gradient(16, 16, 3, phase: 37 * i));
        _config = _dir.File("tiny.yaml");
        File.WriteAllText(_config, TokenizerTrainerTests.TinyConfig.Replace("IMAGES", images));
    }

    [OneTimeTearDown]
    public void Cleanup() => _dir.Dispose();

    private sealed record Result(int Code, string Out, string Err);

    private static ProcessStartInfo StartInfo(string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "maskbit.dll");
        Assume.That(File.Exists(dll), $"{dll} is not built");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["DOTNET_TieredPGO"] = "0";   // quicker start-up of a short-lived child
        return info;
    }

    private static Result Maskbit(params string[] args)
    {
        using var process = Process.Start(StartInfo(args))!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.That(process.WaitForExit(TimeSpan.FromSeconds(60)), "maskbit did not finish: " + string.Join(' ', args));
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    [Test]
    public void HelpOfEveryCommandHasExamplesAndTheSharedFlags()
    {
        var root = Maskbit("--help");
        Assert.That(root.Code, Is.EqualTo(Program.ExitOk), root.Err);
        Assert.That(root.Out, Does.Contain("Exit codes").And.Contain("130").And.Contain("Examples:"));

        string[][] modelCommands =
        {
            new[] { "train", "tokenizer" }, new[] { "train", "generator" }, new[] { "eval", "tokenizer" },
            new[] { "eval", "generator" }, new[] { "generate" }, new[] { "reconstruct" },
        };
        foreach (var command in modelCommands)
        {
            var help = Maskbit(command.Append("--help").ToArray());
            string name = string.Join(' ', command);
            Assert.That(help.Code, Is.EqualTo(Program.ExitOk), $"{name}: {help.Err}");
            Assert.That(help.Out, Does.Contain("Examples:").And.Contain("maskbit " + name), name);
            Assert.That(help.Out, Does.Contain("--device").And.Contain("--config"), name);
        }
        Assert.That(Maskbit("train", "tokenizer", "--help").Out, Does.Contain("--seed").And.Contain("--out").And.Contain("Ctrl-C").And.Contain("130"));
        Assert.That(Maskbit("generate", "--help").Out, Does.Contain("--seed").And.Contain("--out"));
    }

    [Test]
    public void UsageErrorsExitWithTwoAndSayWhatIsWrong()
    {
        var unknown = Maskbit("frobnicate");
        Assert.That(unknown.Code, Is.EqualTo(Program.ExitUsage));
        Assert.That(unknown.Err, Does.Contain("frobnicate").And.Contain("maskbit --help"));

        var badFlag = Maskbit("train", "tokenizer", "--config", _config, "--learning-rate", "3");
        Assert.That(badFlag.Code, Is.EqualTo(Program.ExitUsage), badFlag.Err);
        Assert.That(badFlag.Err, Does.Contain("--learning-rate").And.Contain("maskbit train tokenizer --help"));

        var badDevice = Maskbit("generate", "--classes", "1", "--out", _dir.File("never"), "--device", "tpu");
        Assert.That(badDevice.Code, Is.EqualTo(Program.ExitUsage));
        Assert.That(badDevice.Err, Does.Contain("tpu").And.Contain("ilgpu-cpu"));

        string typo = _dir.File("typo.yaml");
        File.WriteAllText(typo, File.ReadAllText(_config).Replace("codebook_size:", "codebok_size:"));
        var badKey = Maskbit("train", "tokenizer", "--config", typo, "--out", _dir.File("typo-run"));
        Assert.That(badKey.Code, Is.EqualTo(Program.ExitUsage), badKey.Err);
        Assert.That(badKey.Err, Does.Contain("model.vq_model.codebok_size").And.Contain("typo.yaml").And.Contain("codebook_size"));
        Assert.That(badKey.Err.Trim().Split('\n'), Has.Length.LessThanOrEqualTo(2), "one clear message, no stack trace");
    }

    [Test]
    public void MissingFilesAndDevicesExitWithOneAndSayWhatToDo()
    {
        string absent = _dir.File("absent.safetensors");
        var weights = Maskbit("reconstruct", "--config", _config, "--weights", absent, "--images", _dir.File("images", "class0"), "--out", _dir.File("recon"));
        Assert.That(weights.Code, Is.EqualTo(Program.ExitFailed), weights.Err);
        Assert.That(weights.Err, Does.Contain("--checkpoint").And.Contain(absent).And.Contain("maskbit train tokenizer"));

        var config = Maskbit("train", "tokenizer", "--config", _dir.File("none.yaml"));
        Assert.That(config.Code, Is.EqualTo(Program.ExitFailed), config.Err);
        Assert.That(config.Err, Does.Contain("none.yaml").And.Contain("configs/"));

        var tokenizer = Maskbit("train", "generator", "--config", _config, "--tokenizer", absent);
        Assert.That(tokenizer.Code, Is.EqualTo(Program.ExitFailed), tokenizer.Err);
        Assert.That(tokenizer.Err, Does.Contain(absent).And.Contain("maskbit train tokenizer"));

        // No GPU on test machines: a clear line, no stack trace (on a CUDA machine the command would just run).
        var cuda = Maskbit("reconstruct", "--config", _config, "--weights", absent, "--images", _dir.File("images", "class0"), "--out", _dir.File("recon"), "--device", "cuda");
        if (cuda.Code == Program.ExitFailed && cuda.Err.Contains("--device cuda", StringComparison.Ordinal))
            Assert.That(cuda.Err, Does.Contain("use --device cpu").And.Not.Contain("   at "));
    }

    [Test]
    public void CtrlCDuringTrainingLeavesACheckpointTheNextRunResumesFrom()
    {
        Assume.That(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "sends SIGINT");
        string run = _dir.File("interrupted");
        string[] args = { "train", "tokenizer", "--config", _config, "--out", run, "training.max_train_steps=100000", "experiment.save_every=100000" };
        // A child inherits an ignored SIGINT (test runners started in the background have one), and .NET keeps it
        // ignored, as a shell's background job should; perl (part of every Debian/Ubuntu/macOS base system)
        // restores the default before starting maskbit. Without perl the same clean stop is asked with SIGTERM.
        var info = StartInfo(args);
        string signal = "-INT";
        if (File.Exists("/usr/bin/perl"))
        {
            info.ArgumentList.Insert(0, info.FileName);
            foreach (var a in new[] { "exec @ARGV or die", "-e", "$SIG{INT} = 'DEFAULT';", "-e" }) info.ArgumentList.Insert(0, a);
            info.FileName = "/usr/bin/perl";
        }
        else signal = "-TERM";
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var output = new List<string>();
        try
        {
            string? line;
            while ((line = process.StandardOutput.ReadLine()) != null)
            {
                output.Add(line);
                if (line.StartsWith("step 2/", StringComparison.Ordinal)) break;   // training is under way
            }
            if (line == null) Assert.Fail("training ended before its second step:\n" + string.Join('\n', output) + stderr.Result);
            using (var kill = Process.Start("kill", [signal, process.Id.ToString(CultureInfo.InvariantCulture)]))
                kill.WaitForExit();
            var rest = process.StandardOutput.ReadToEndAsync();
            if (!rest.Wait(TimeSpan.FromSeconds(60))) Assert.Fail($"no clean stop after kill {signal}:\n{string.Join('\n', output.TakeLast(5))}");
            output.AddRange(rest.Result.Split('\n'));
            Assert.That(process.WaitForExit(TimeSpan.FromSeconds(60)), $"no clean stop after kill {signal}");
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);   // never leave a trainer behind
        }
        string log = string.Join('\n', output);
        Assert.That(process.ExitCode, Is.EqualTo(Program.ExitInterrupted), log + stderr.Result);

        var checkpoint = Directory.GetFiles(new RunFolder(run).CheckpointsDir, "checkpoint-*.safetensors").Single();
        long step = long.Parse(Path.GetFileNameWithoutExtension(checkpoint)["checkpoint-".Length..]);
        Assert.That(step, Is.GreaterThanOrEqualTo(2));
        Assert.That(log, Does.Contain("stopping after this step").And.Contain($"cancelled at step {step}"));

        var resumed = Maskbit("train", "tokenizer", "--config", _config, "--out", run, $"training.max_train_steps={step + 2}");
        Assert.That(resumed.Code, Is.EqualTo(Program.ExitOk), resumed.Err);
        Assert.That(resumed.Out, Does.Contain($"resumed from {checkpoint} at step {step}"));
        Assert.That(resumed.Out, Does.Contain($"step {step + 1}/{step + 2}").And.Not.Contain($"step 1/"));
        Assert.That(File.Exists(new RunFolder(run).CheckpointPath(step + 2)));
    }
}
