using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using MaskBit.Cli;
using MaskBit.Cli.Commands;
using MaskBit.Models.Config;
using MaskBit.Tests.Data;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Hostile;

/// <summary>The config reproducers of issue 19 (hostile configs that crashed, hung or exhausted memory, and invalid
/// values that passed validation): each is refused quickly with exit 2 and a message naming the key, the file and
/// line, the value and what is allowed.</summary>
[TestFixture]
public class HostileConfigTests
{
    private TempDirectory _dir = null!;
    private string _base = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = new TempDirectory();
        _base = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "configs", "fashion_mnist_tokenizer.yaml"));
    }

    [TearDown] public void TearDown() => _dir.Dispose();

    /// <summary>The base config with the key at <paramref name="path"/> (a.b.c, present in the file) set to the
    /// YAML text <paramref name="value"/>; returns the file and the line of the key.</summary>
    private (string File, int Line) WithValue(string path, string value)
    {
        var lines = _base.Split('\n');
        var parts = path.Split('.');
        int depth = 0, line = -1;
        for (int i = 0; i < lines.Length && line < 0; i++)
        {
            var m = Regex.Match(lines[i], @"^(\s*)([A-Za-z_0-9]+):");
            if (!m.Success || m.Groups[1].Length != depth * 4 || m.Groups[2].Value != parts[depth]) continue;
            if (++depth == parts.Length) line = i;
        }
        Assert.That(line, Is.GreaterThanOrEqualTo(0), $"{path} is not in the base config");
        lines[line] = Regex.Replace(lines[line], @":.*$", ": " + value);
        string file = _dir.File("config.yaml");
        File.WriteAllText(file, string.Join('\n', lines));
        return (file, line + 1);
    }

    private static (int Code, string Err) Inspect(string config)
    {
        var stdout = new StringWriter(); var stderr = new StringWriter();
        var clock = Stopwatch.StartNew();
        int code = Program.Run(["inspect", "--config", config], stdout, stderr);
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "a hostile config is refused quickly");
        return (code, stderr.ToString());
    }

    private static ConfigException Refused(string yaml)
    {
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<ConfigException>(() => MaskBitConfig.Parse(yaml, "hostile.yaml"))!;
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)));
        Assert.That(e.Message, Does.StartWith("hostile.yaml"));
        return e;
    }

    [TestCase("model.vq_model.token_size", "0")]
    [TestCase("model.vq_model.token_size", "64")]
    [TestCase("model.vq_model.token_size", "31")]
    [TestCase("model.vq_model.token_size", "-1")]
    [TestCase("model.vq_model.hidden_channels", "0")]
    [TestCase("model.vq_model.hidden_channels", "-32")]
    [TestCase("model.vq_model.hidden_channels", "1e6")]
    [TestCase("model.vq_model.channel_mult", "[0, 0, 0]")]
    [TestCase("model.vq_model.num_resolutions", "0")]
    [TestCase("model.vq_model.num_res_blocks", "-1")]
    [TestCase("dataset.preprocessing.resolution", "7")]
    [TestCase("dataset.preprocessing.resolution", "65536")]
    [TestCase("dataset.preprocessing.resolution", "1")]
    [TestCase("optimizer.params.learning_rate", "-1")]
    [TestCase("optimizer.params.learning_rate", ".nan")]
    [TestCase("optimizer.params.learning_rate", ".inf")]
    [TestCase("optimizer.params.beta2", "2.0")]
    [TestCase("model.vq_model.codebook_size", "0")]
    [TestCase("model.vq_model.codebook_size", "1000")]
    [TestCase("model.vq_model.codebook_size", "9223372036854775807")]
    [TestCase("lr_scheduler.params.warmup_steps", "-5")]
    [TestCase("training.max_grad_norm", "-1.0")]
    public void InvalidValueExitsTwoNamingKeyFileLineValueAndRange(string key, string value)
    {
        var (file, line) = WithValue(key, value);
        var (code, error) = Inspect(file);
        Assert.That(code, Is.EqualTo(Program.ExitUsage), error);
        string first = error.Split('\n')[0];
        Assert.That(first, Does.StartWith($"error: {file}:{line}: '{key}'"));
        Assert.That(first, Does.Contain("allowed").Or.Contain("must be"));
        Assert.That(first, Does.Not.Contain("System."));
    }

    [Test]
    public void ValidBaseConfigStillLoads() => Assert.That(Inspect(WithValue("training.seed", "7").File).Code, Is.EqualTo(Program.ExitOk));

    [Test]
    public void LookupFreeCodebookOfTheOfficialConfigsIsAccepted()
    {
        // The official 14–18-bit configs keep codebook_size 4096 beside token_size 14–18 (ignored, as in the reference).
        var (file, _) = WithValue("model.vq_model.codebook_size", "512");
        Assert.That(Inspect(file).Code, Is.EqualTo(Program.ExitOk));
    }

    [Test]
    public void MissingInitCheckpointIsAnError()
    {
        // As a training or evaluation command loads a config (inspect --config only reads the model sections).
        var (file, line) = WithValue("experiment.init_checkpoint", "\"no/such/init.safetensors\"");
        var stderr = new StringWriter();
        int code = CommandSupport.Guard(stderr, () => { CommandSupport.LoadConfig(file, null); return Program.ExitOk; });
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(stderr.ToString(), Does.Contain($"{file}:{line}: 'experiment.init_checkpoint' names no/such/init.safetensors, which does not exist"));
    }

    [Test]
    public void SecondYamlDocumentIsRefused()
    {
        string file = _dir.File("two.yaml");
        File.WriteAllText(file, _base + "\n---\ntraining:\n    seed: 1\n");
        var (code, error) = Inspect(file);
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(error, Does.Contain("a second YAML document"));
    }

    [Test]
    public void ValueInterpolatingItsOwnSectionIsRefused() =>
        Assert.That(Refused("experiment:\n    log_every: ${experiment}\n").Message, Does.Contain("names a section"));

    [Test]
    public void DeeplyNestedFlowSequenceIsRefusedWithoutOverflowingTheStack() =>
        Assert.That(Refused("a: " + new string('[', 100_000)).Message, Does.Contain("nested deeper than"));

    [Test]
    public void BillionLaughsAliasesAreRefusedBeforeExpansion()
    {
        var yaml = new StringBuilder("a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
        for (int i = 1; i < 10; i++) yaml.Append($"a{i}: &a{i} [{string.Join(", ", Enumerable.Repeat($"*a{i - 1}", 9))}]\n");
        Assert.That(Refused(yaml.ToString()).Message, Does.Contain("anchors").Or.Contain("aliases"));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void DoublingInterpolationsInAnInventedSectionAreRefusedAsUnknown(bool reverse)
    {
        var keys = Enumerable.Range(0, 40).Select(i => i == 0 ? "    k0: \"xxxxxxxxxx\"" : $"    k{i}: \"${{bomb.k{i - 1}}}${{bomb.k{i - 1}}}\"");
        if (reverse) keys = keys.Reverse();
        Assert.That(Refused("bomb:\n" + string.Join('\n', keys) + "\n").Message, Does.Contain("unknown key 'bomb'"));
    }

    [Test]
    public void TwentyThousandChainedInterpolationsAreRefusedAsUnknown()
    {
        var yaml = new StringBuilder("chain:\n    k0: 1\n");
        for (int i = 1; i < 20_000; i++) yaml.Append($"    k{i}: ${{chain.k{i - 1}}}\n");
        Assert.That(Refused(yaml.ToString()).Message, Does.Contain("unknown key 'chain'"));
    }

    [Test]
    public void InterpolationWithinTheSchemaIsBoundedInDepthCyclesAndSize()
    {
        // A chain of known string keys deeper than the limit.
        string[] chain = ["experiment.project", "experiment.name", "experiment.output_dir", "experiment.logging_dir", "experiment.logger",
            "experiment.init_checkpoint", "experiment.vqgan_checkpoint", "model.vq_model.model_class", "model.vq_model.quantizer_type",
            "losses.perceptual_loss"];
        var sections = new Dictionary<string, List<string>>();
        for (int i = 0; i < chain.Length; i++)
        {
            int dot = chain[i].LastIndexOf('.');
            string value = i == 0 ? "\"x\"" : $"${{{chain[i - 1]}}}";
            sections.TryAdd(chain[i][..dot], new List<string>());
            sections[chain[i][..dot]].Add($"{chain[i][(dot + 1)..]}: {value}");
        }
        // Written last key first, so that resolving the first key follows the whole chain (each key is resolved once).
        string Yaml(Dictionary<string, List<string>> s) => string.Join('\n', s.Reverse().Select(kv =>
            string.Join('\n', kv.Key.Split('.').Select((part, depth) => new string(' ', 4 * depth) + part + ":")) + "\n" +
            string.Join('\n', kv.Value.AsEnumerable().Reverse().Select(v => new string(' ', 4 * kv.Key.Split('.').Length) + v)))) + "\n";
        Assert.That(Refused(Yaml(sections)).Message, Does.Contain("nested more than"));

        Assert.That(Refused("experiment:\n    name: ${experiment.project}\n    project: ${experiment.name}\n").Message, Does.Contain("cycle"));

        string big = new('x', 3000);
        Assert.That(Refused($"experiment:\n    project: \"{big}\"\n    name: \"${{experiment.project}}${{experiment.project}}\"\n").Message,
            Does.Contain("more than"));
    }

    [Test]
    public void UnknownSectionIsRefusedBeforeItsInterpolationsRun() =>
        Assert.That(Refused("invented:\n    x: ${invented.x}\n").Message, Does.Contain("unknown key 'invented'"));

    [Test]
    public void OversizedConfigFileIsRefusedUnread()
    {
        string file = _dir.File("huge.yaml");
        File.WriteAllText(file, "# " + new string('x', MaskBitConfig.MaxFileBytes));
        var (code, error) = Inspect(file);
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(error, Does.Contain("limit"));
    }

    [Test]
    public void EveryShippedConfigLoadsAndValidates()
    {
        foreach (var file in Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "configs"), "*.yaml", SearchOption.AllDirectories))
            Assert.DoesNotThrow(() => MaskBit.Models.Training.ConfigSections.Validate(MaskBitConfig.Load(file)), file);
    }
}
