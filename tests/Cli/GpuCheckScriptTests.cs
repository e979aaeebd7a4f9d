using System.Diagnostics;
using System.Text.RegularExpressions;
using MaskBit.Cli;
using MaskBit.Models.Benchmarks;
using MaskBit.Models.Config;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Cli;

/// <summary>
/// bench/gpu-check.sh runs where no test does (a GPU machine, minutes of lent time), so it must not drift from the
/// CLI: it parses as bash, every `cli LIMIT command ... --flag` it runs names flags that command's --help lists,
/// its config overrides are keys of the configs it passes, its benchmark globs select workloads, and the CUDA
/// run's stage limits sum below 8 minutes.
/// </summary>
[NonParallelizable]
public partial class GpuCheckScriptTests
{
    private static readonly string ScriptPath = Path.Combine(TestPaths.RepoRoot, "bench", "gpu-check.sh");

    /// <summary>One maskbit invocation of the script: command words, flags, config and a.b.c=value overrides.</summary>
    private sealed record Invocation(string Command, string[] Flags, string? Config, string[] Overrides, string Line);

    private static List<Invocation> Invocations()
    {
        // Continuation lines joined; comments dropped.
        string text = File.ReadAllText(ScriptPath).Replace("\\\n", " ");
        var found = new List<Invocation>();
        foreach (var line in text.Split('\n').Where(l => !l.TrimStart().StartsWith('#')))
            foreach (Match m in CliCall().Matches(line))
            {
                // The maskbit arguments end at a redirection or the next command of the line.
                string args = RedirectOrNext().Split(m.Groups["args"].Value)[0];
                string command = string.Join(' ', args.Split(' ', StringSplitOptions.RemoveEmptyEntries).TakeWhile(w => CommandWord().IsMatch(w)));
                var config = ConfigValue().Match(args);
                found.Add(new Invocation(command, Flag().Matches(args).Select(f => f.Value).ToArray(),
                    config.Success ? config.Groups[1].Value : null,
                    Override().Matches(args).Select(o => ShellValue().Replace(o.Value, "2")).ToArray(), line.Trim()));
            }
        return found;
    }

    [Test]
    public void ScriptParsesAsBash()
    {
        var (code, _, err) = Bash("-n", ScriptPath);
        Assert.That(code, Is.Zero, err);
    }

    [Test]
    public void EveryFlagIsListedInItsCommandsHelp()
    {
        var invocations = Invocations();
        Assert.That(invocations.Select(i => i.Command).Distinct(),
            Is.SupersetOf(new[] { "train tokenizer", "train generator", "generate", "bench", "info" }), "the script's maskbit calls were not all found");
        foreach (var group in invocations.GroupBy(i => i.Command))
        {
            var stdout = new StringWriter();
            int code = Program.Run([.. group.Key.Split(' '), "--help"], stdout, new StringWriter());
            Assert.That(code, Is.EqualTo(Program.ExitOk), $"maskbit {group.Key} --help");
            string help = stdout.ToString();
            foreach (var invocation in group)
                foreach (var flag in invocation.Flags)
                    Assert.That(Regex.IsMatch(help, $@"(^|[\s,]){Regex.Escape(flag)}([\s,]|$)", RegexOptions.Multiline),
                        $"maskbit {group.Key} has no {flag} (bench/gpu-check.sh: {invocation.Line})");
        }
    }

    [Test]
    public void ConfigOverridesAreKeysOfTheirConfigs()
    {
        var withOverrides = Invocations().Where(i => i.Overrides.Length > 0).ToList();
        Assert.That(withOverrides, Is.Not.Empty);
        foreach (var invocation in withOverrides)
        {
            Assert.That(invocation.Config, Is.Not.Null, invocation.Line);
            try { MaskBitConfig.Load(Path.Combine(TestPaths.RepoRoot, invocation.Config!), invocation.Overrides); }
            catch (ConfigException e) { Assert.Fail($"{e.Message} (bench/gpu-check.sh: {invocation.Line})"); }
        }
    }

    [Test]
    public void BenchmarkGlobsSelectWorkloads()
    {
        var globs = BenchEntry().Matches(File.ReadAllText(ScriptPath)).Select(m => m.Groups[1].Value).ToList();
        Assert.That(globs, Has.Count.GreaterThanOrEqualTo(6), "the BENCH lists (\"glob:limit\" entries) were not found");
        foreach (var glob in globs)
            Assert.That(WorkloadRunner.Select(glob), Is.Not.Empty, $"bench/gpu-check.sh: --filter '{glob}' selects no workload");
    }

    [Test]
    public void CudaRunsStageLimitsSumBelowEightMinutes()
    {
        var (code, output, err) = Bash(ScriptPath, "limits");
        Assert.That(code, Is.Zero, err);
        Assert.That(int.Parse(output.Trim()), Is.LessThan(8 * 60), "DEVICE=cuda bench/gpu-check.sh limits");
    }

    private static (int Code, string Out, string Err) Bash(params string[] args)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["DEVICE"] = "cuda";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.That(process.WaitForExit(TimeSpan.FromSeconds(10)), "bash " + string.Join(' ', args));
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [GeneratedRegex(@"(?<![\w-])cli\s+\S+\s+(?<args>[a-z].*)")]
    private static partial Regex CliCall();

    [GeneratedRegex(@"\s(>|2>|\|\||&&|;|\|)\s")]
    private static partial Regex RedirectOrNext();

    [GeneratedRegex(@"^[a-z]+$")]
    private static partial Regex CommandWord();

    [GeneratedRegex(@"(?<!\S)--[a-z][a-z-]*")]
    private static partial Regex Flag();

    [GeneratedRegex(@"--config\s+(\S+)")]
    private static partial Regex ConfigValue();

    [GeneratedRegex(@"(?<!\S)[a-z_]+(\.[a-z_]+)+=\S+")]
    private static partial Regex Override();

    [GeneratedRegex(@"""?\$\{?\w+\}?""?")]
    private static partial Regex ShellValue();

    [GeneratedRegex(@"""([^"":\s]+):\d+""")]
    private static partial Regex BenchEntry();
}
