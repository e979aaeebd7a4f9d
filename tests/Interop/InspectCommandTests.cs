using MaskBit.Cli;
using MaskBit.Models.Interop;

namespace MaskBit.Tests.Interop;

/// <summary>`maskbit inspect` run in-process through the CLI's entry point.</summary>
[TestFixture]
public class InspectCommandTests
{
    [OneTimeSetUp]
    public void MakeTempDir() => TorchFiles.EnsureTempDir();

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Test]
    public void ListsTensorsTotalsAndMetadata()
    {
        string path = Path.Combine(TorchFiles.FixtureDir, "nested_model_step.bin");
        var (code, output, error) = Run("inspect", path);
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(error, Is.Empty);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.That(lines[0], Does.StartWith(path).And.Contain("torch zip"));
        Assert.That(lines, Has.Some.Match(@"^bn\.num_batches_tracked\s+int64\s+\[\]\s+8$"));
        Assert.That(lines, Has.Some.Match(@"^linear\.weight\s+float32\s+\[4, 3\]\s+48$"));
        Assert.That(lines, Has.Some.EqualTo("12 tensors, 53 parameters, 216 bytes"));
        Assert.That(lines, Has.Some.EqualTo("step: 123"));
    }

    [TestCase("legacy_format.bin", "torch legacy")]
    [TestCase("expected.npz", "npz")]
    public void DetectsTheFormat(string file, string format)
    {
        var (code, output, _) = Run("inspect", Path.Combine(TorchFiles.FixtureDir, file));
        Assert.That(code, Is.EqualTo(0));
        Assert.That(output.Split('\n')[0], Does.EndWith(format));
    }

    [Test]
    public void InspectsSafeTensors()
    {
        string path = TorchFiles.TempFile("inspect.safetensors");
        SafeTensors.Save(path, TorchCheckpoint.Load(Path.Combine(TorchFiles.FixtureDir, "model.bin")));
        var (code, output, _) = Run("inspect", path);
        Assert.That(code, Is.EqualTo(0));
        Assert.That(output, Does.Contain("safetensors").And.Contain("12 tensors, 53 parameters, 216 bytes"));
    }

    [Test]
    public void BadFilePrintsOneErrorLineAndExitsOne()
    {
        string path = TorchFiles.TempFile("inspect_truncated.bin");
        File.WriteAllBytes(path, File.ReadAllBytes(Path.Combine(TorchFiles.FixtureDir, "model.bin"))[..700]);
        var (code, output, error) = Run("inspect", path);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Is.Empty);
        Assert.That(error.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(error, Does.StartWith($"error: {path}: "));
    }

    [Test]
    public void HostileFileIsRefusedWithTheGlobalsName()
    {
        string path = TorchFiles.TempFile("inspect_hostile.bin");
        TorchFiles.WriteZip(path, new PickleBytes().Global("os", "system").Str("rm -rf /").Op(0x85).Op('R').Stop());
        var (code, _, error) = Run("inspect", path);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error.Trim(), Is.EqualTo($"error: {path}: refusing global 'os.system' (not a tensor, storage or OrderedDict)"));
    }

    [Test]
    public void UsageErrorsExitTwo()
    {
        Assert.That(Run("inspect").Code, Is.EqualTo(2));
        Assert.That(Run("inspect", "a", "b").Code, Is.EqualTo(2));
        Assert.That(Run("inspect", TorchFiles.TempFile("nope.bin")).Code, Is.EqualTo(1));
    }
}
