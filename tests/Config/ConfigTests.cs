using MaskBit.Models.Config;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Config;

public class ConfigTests
{
    private const string Sample = """
        experiment:
            name: "tiny_tokenizer"
            max_train_examples: 1_281_167   # underscores as in the originals
            resume: True
        model:
            vq_model:
                quantizer_type: "lookup-free"
                token_size: 12
                channel_mult: [1,1,2,2,4]
                commitment_cost: 0.25
        optimizer:
            name: adamw
            params:
                learning_rate: 1e-4
                epsilon: 1e-8
        lr_scheduler:
            scheduler: "cosine_with_minimum"
            params:
                learning_rate: ${optimizer.params.learning_rate}
                warmup_steps: 5_000
        experiment_extra_note_is_not_here: null
        """;

    private static MaskBitConfig Load(string yaml, params string[] overrides) => MaskBitConfig.Parse(yaml, "test.yaml", overrides);

    /// <summary>training.mixed_precision is a string key: the unquoted YAML 1.1 word `no` (and off/yes/on) stays that
    /// word there, from a file and from an override, and round-trips; bool keys still read the words as bools.</summary>
    [Test]
    public void UnquotedBoolWordOfAStringKeyIsTheWord()
    {
        const string yaml = "training:\n    mixed_precision: no\n    overfit_batch: no\nexperiment:\n    resume: yes\n";
        var fromFile = Load(yaml);
        Assert.That(fromFile.GetString("training.mixed_precision"), Is.EqualTo("no"));
        Assert.That(fromFile.GetBool("training.overfit_batch"), Is.False);
        Assert.That(fromFile.GetBool("experiment.resume"), Is.True);
        var fromOverride = Load("training:\n    mixed_precision: bf16\n", "training.mixed_precision=no", "training.overfit_batch=off");
        Assert.That(fromOverride.GetString("training.mixed_precision"), Is.EqualTo("no"));
        Assert.That(fromOverride.GetBool("training.overfit_batch"), Is.False);
        Assert.That(MaskBitConfig.Parse(fromOverride.ToYaml(), "roundtrip.yaml").GetString("training.mixed_precision"), Is.EqualTo("no"));
        // Only the bool words: a number given to a string key is still refused.
        var e = Assert.Throws<ConfigException>(() => Load(yaml, "training.mixed_precision=16"))!;
        Assert.That(e.Message, Does.Contain("training.mixed_precision"));
    }

    [Test]
    public void TypesScalarsLikeTheOriginalLoader()
    {
        var c = Load(Sample.Replace("experiment_extra_note_is_not_here: null", ""));
        Assert.That(c.GetInt("experiment.max_train_examples"), Is.EqualTo(1_281_167));
        Assert.That(c.GetBool("experiment.resume"), Is.True);
        Assert.That(c.GetDouble("optimizer.params.learning_rate"), Is.EqualTo(1e-4));
        Assert.That(c.GetString("optimizer.name"), Is.EqualTo("adamw"));
        Assert.That(c.GetIntList("model.vq_model.channel_mult"), Is.EqualTo(new[] { 1, 1, 2, 2, 4 }));
        Assert.That(c.GetDouble("lr_scheduler.params.learning_rate"), Is.EqualTo(1e-4), "interpolation keeps the type");
        Assert.That(c.GetInt("training.seed", 42), Is.EqualTo(42));
    }

    [Test]
    public void OverridesUseTheOriginalsForm()
    {
        var c = Load(Sample.Replace("experiment_extra_note_is_not_here: null", ""),
            "optimizer.params.learning_rate=3e-4", "training.seed=7", "model.vq_model.channel_mult=[1,2]");
        Assert.That(c.GetDouble("lr_scheduler.params.learning_rate"), Is.EqualTo(3e-4), "interpolation sees the override");
        Assert.That(c.GetInt("training.seed"), Is.EqualTo(7));
        Assert.That(c.GetIntList("model.vq_model.channel_mult"), Is.EqualTo(new[] { 1, 2 }));
    }

    [Test]
    public void UnknownKeyNamesKeyFileLineAndSuggestion()
    {
        var e = Assert.Throws<ConfigException>(() => Load(Sample.Replace("token_size: 12", "tokn_size: 12").Replace("experiment_extra_note_is_not_here: null", "")))!;
        Assert.That(e.Message, Does.Contain("test.yaml:"));
        Assert.That(e.Message, Does.Contain("unknown key 'model.vq_model.tokn_size'"));
        Assert.That(e.Message, Does.Contain("did you mean 'model.vq_model.token_size'"));
        var top = Assert.Throws<ConfigException>(() => Load(Sample))!;
        Assert.That(top.Message, Does.Contain("experiment_extra_note_is_not_here"));
    }

    [Test]
    public void WrongTypesAndBadOverridesAreErrors()
    {
        var yaml = Sample.Replace("experiment_extra_note_is_not_here: null", "");
        var e = Assert.Throws<ConfigException>(() => Load(yaml.Replace("token_size: 12", "token_size: \"twelve\"")))!;
        Assert.That(e.Message, Does.Contain("'model.vq_model.token_size' must be an integer"));
        Assert.Throws<ConfigException>(() => Load(yaml, "training.sed=1"));
        Assert.Throws<ConfigException>(() => Load(yaml, "no_equals_sign"));
        Assert.Throws<ConfigException>(() => Load(yaml, "training.seed=1.5"));
    }

    [Test]
    public void InterpolationErrorsAreClear()
    {
        var yaml = "optimizer:\n    params:\n        learning_rate: ${optimizer.params.missing}\n";
        var e = Assert.Throws<ConfigException>(() => Load(yaml))!;
        Assert.That(e.Message, Does.Contain("does not exist"));
        var cycle = "optimizer:\n    params:\n        learning_rate: ${lr_scheduler.params.learning_rate}\nlr_scheduler:\n    params:\n        learning_rate: ${optimizer.params.learning_rate}\n";
        Assert.That(Assert.Throws<ConfigException>(() => Load(cycle))!.Message, Does.Contain("cycle"));
        Assert.That(Assert.Throws<ConfigException>(() => Load("a: [1,\n"))!.Message, Does.Contain("invalid YAML"));
    }

    [Test]
    public void ResolvedYamlRoundTrips()
    {
        var c = Load(Sample.Replace("experiment_extra_note_is_not_here: null", ""), "training.seed=3");
        var again = MaskBitConfig.Parse(c.ToYaml(), "roundtrip.yaml");
        Assert.That(again.ToYaml(), Is.EqualTo(c.ToYaml()));
        Assert.That(again.GetDouble("lr_scheduler.params.learning_rate"), Is.EqualTo(1e-4));
    }

    public static IEnumerable<TestCaseData> GoldenConfigs()
    {
        var roots = new[] { Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden"), TestPaths.SharedGolden }.Where(r => r != null && Directory.Exists(r));
        foreach (var root in roots)
            foreach (var f in Directory.GetFiles(root!, "config*.yaml", SearchOption.AllDirectories).OrderBy(f => f))
                yield return new TestCaseData(f).SetName($"LoadsGoldenConfig({Path.GetFileName(Path.GetDirectoryName(f))}/{Path.GetFileName(f)})");
    }

    [TestCaseSource(nameof(GoldenConfigs))]
    public void LoadsGoldenConfig(string path) => Assert.DoesNotThrow(() => MaskBitConfig.Load(path));
}
