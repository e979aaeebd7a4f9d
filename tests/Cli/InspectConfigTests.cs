using MaskBit.Models.Interop;

namespace MaskBit.Tests.Cli;

public class InspectConfigTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = MaskBit.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [TestCase("lfq_bert", "generator")]
    [TestCase("bert_vq", "generator")]
    [TestCase("tokenizer_lfq", "tokenizer")]
    [TestCase("tokenizer_vq_legacy", "tokenizer")]
    [TestCase("discriminator", "discriminator")]
    public void ParameterCountsMatchTheReferenceCheckpoint(string caseName, string model)
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", caseName);
        var (code, output, err) = Run("inspect", "--config", Path.Combine(dir, "config.yaml"));
        Assert.That(code, Is.EqualTo(0), err);
        // Parameters are the floating-point entries of model.bin minus the float buffers (LFQ codebook, blur kernels).
        var sd = CheckpointFile.Load(Path.Combine(dir, "model.bin"));
        long expected = sd.Where(t => t.DType.IsFloatingPoint() && !t.Name.EndsWith("codebook") && !t.Name.EndsWith(".kernel")).Sum(t => t.Count);
        Assert.That(output, Does.Contain($"{model}: {expected}\n").Or.Contain($"{model}: {expected}\r\n"));
    }

    [Test]
    public void TamingsPatchGanIsCountedWhenTheConfigNamesIt()
    {
        string path = Path.Combine(Path.GetTempPath(), $"patchgan-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, "model:\n    discriminator:\n        name: Original\n        num_channels: 3\n        hidden_channels: 64\n        num_stages: 3\n");
        try
        {
            var (code, output, err) = Run("inspect", "--config", path);
            Assert.That(code, Is.EqualTo(0), err);
            Assert.That(output, Does.StartWith("discriminator: 2765633"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void MissingFileAndConfigIsAUsageError()
    {
        Assert.That(Run("inspect").Code, Is.EqualTo(2));
        var (code, _, err) = Run("inspect", "--config", "/nonexistent/config.yaml");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("/nonexistent/config.yaml"));
    }
}
