using MaskBit.Models.Config;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Tests.Config;

/// <summary>Every key of every shipped config is read by its section records; an unimplemented value is refused.</summary>
public class ConfigSectionsTests
{
    private static string Root()
    {
        string? root = TestContext.CurrentContext.TestDirectory;
        while (root != null && !File.Exists(Path.Combine(root, "MaskBit.sln"))) root = Path.GetDirectoryName(root);
        return root ?? throw new InvalidOperationException("repository root not found");
    }

    public static IEnumerable<string> ShippedConfigs()
    {
        string root = Root();
        return Directory.GetFiles(Path.Combine(root, "configs"), "*.yaml", SearchOption.AllDirectories)
            .Concat(Directory.GetFiles(Path.Combine(root, "models"), "*.yaml", SearchOption.AllDirectories))
            .Select(f => Path.GetRelativePath(root, f)).Order();
    }

    [TestCaseSource(nameof(ShippedConfigs))]
    public void EveryKeyIsConsumed(string relativePath)
    {
        var config = MaskBitConfig.Load(Path.Combine(Root(), relativePath));
        ConfigSections.Read(config);
        var unread = config.UnreadKeys().ToList();
        Assert.That(unread, Is.Empty, $"keys of {relativePath} that nothing reads: {string.Join(", ", unread)}");
    }

    [Test]
    public void UnimplementedValueIsRefusedNamingKeyAndFile()
    {
        string path = Path.Combine(Root(), "configs", "fashion_mnist_tokenizer.yaml");
        var e = Assert.Throws<ConfigException>(() => ConfigSections.Read(MaskBitConfig.Load(path, ["experiment.logger=wandb"])))!;
        Assert.That(e.Message, Does.Contain("experiment.logger 'wandb'").And.Contain(path));
        Assert.That(e.Message.Split('\n'), Has.Length.EqualTo(1));
    }

    [TestCase("hinge", GanLossType.Hinge)]
    [TestCase("vanilla", GanLossType.Vanilla)]
    [TestCase("non-saturating", GanLossType.NonSaturating)]
    public void DiscriminatorLossNameIsReadIntoItsKind(string name, GanLossType kind)
    {
        string path = Path.Combine(Root(), "configs", "fashion_mnist_tokenizer.yaml");
        var config = MaskBitConfig.Load(path, [$"losses.discriminator_loss={name}"]);
        Assert.That(VqganLossConfig.From(config).DiscriminatorLoss, Is.EqualTo(kind));
    }

    [Test]
    public void UnsupportedDiscriminatorLossIsRefusedNamingKeyAndFile()
    {
        string path = Path.Combine(Root(), "configs", "fashion_mnist_tokenizer.yaml");
        var config = MaskBitConfig.Load(path, ["losses.discriminator_loss=wasserstein"]);
        var e = Assert.Throws<ConfigException>(() => VqganLossConfig.From(config))!;
        Assert.That(e.Message, Does.Contain("discriminator_loss 'wasserstein'").And.Contain(path));
    }

    /// <summary>A key of the reference's schema that no section reads (the MLM loss in a tokenizer config) is refused, never silently ignored.</summary>
    [Test]
    public void UnreadKeyIsRefusedNamingKeyAndFile()
    {
        string path = Path.Combine(Root(), "configs", "fashion_mnist_tokenizer.yaml");
        var config = MaskBitConfig.Load(path, ["losses.mlm.label_smoothing=0.2"]);
        var e = Assert.Throws<ConfigException>(() => ConfigSections.Validate(config))!;
        Assert.That(e.Message, Does.Contain("losses.mlm.label_smoothing").And.Contain(path).And.Contain("not implemented"));
    }
}
