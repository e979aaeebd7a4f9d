using MaskBit.Tests.Support;

namespace MaskBit.Tests.Cli;

/// <summary>The reference repository's configs shipped in configs/ load and describe models of the official sizes.</summary>
public class ReferenceConfigTests
{
    private static readonly string[] ReferenceFolders = ["tokenizer", "generator", "external", "demo"];

    public static IEnumerable<string> ReferenceConfigs() =>
        ReferenceFolders.SelectMany(f => Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "configs", f), "*.yaml"))
            .Select(p => Path.GetRelativePath(Path.Combine(TestPaths.RepoRoot, "configs"), p)).Order();

    private static (int Code, string Out, string Err) Inspect(string relativeConfig)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = MaskBit.Cli.Program.Run(["inspect", "--config", Path.Combine(TestPaths.RepoRoot, "configs", relativeConfig)], o, e);
        return (code, o.ToString().Replace("\r\n", "\n"), e.ToString());
    }

    [TestCaseSource(nameof(ReferenceConfigs))]
    public void EveryReferenceConfigBuildsItsModels(string config)
    {
        var (code, output, err) = Inspect(config);
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Does.StartWith("tokenizer: "), "every reference config describes a tokenizer");
    }

    [TestCase("tokenizer/maskbit_tokenizer_12bit.yaml", "tokenizer: 54479247\n", "discriminator: 7431297\n")]
    [TestCase("tokenizer/vqgan_plus_10bit.yaml", "tokenizer: 55990915\n", "discriminator: 7431297\n")]
    [TestCase("generator/maskbit_generator_12bit.yaml", "tokenizer: 54479247\n", "generator: 304795776\n")]
    [TestCase("generator/maskbit_generator_18bit.yaml", "tokenizer: 54509973\n", "generator: 305720320\n")]
    [TestCase("external/taming_vqgan_tokenizer.yaml", "tokenizer: 72141699\n")]
    public void ParameterCountsEqualTheOfficialModels(string config, params string[] counts)
    {
        var (code, output, err) = Inspect(config);
        Assert.That(code, Is.EqualTo(0), err);
        foreach (var count in counts) Assert.That(output, Does.Contain(count));
    }
}
