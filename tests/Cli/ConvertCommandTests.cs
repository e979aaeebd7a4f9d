using MaskBit.Models.Interop;

namespace MaskBit.Tests.Cli;

public class ConvertCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = MaskBit.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Test]
    public void ConvertsATorchCheckpointToSafeTensorsWithIdenticalTensors()
    {
        var src = Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", "lfq_bert", "model.bin");
        var dst = Path.Combine(Directory.CreateTempSubdirectory("maskbit-convert").FullName, "model.safetensors");
        var (code, output, err) = Run("convert", src, dst);
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain("wrote"));
        var a = CheckpointFile.Load(src); var b = CheckpointFile.Load(dst);
        Assert.That(b.Names, Is.EqualTo(a.Names));
        foreach (var t in a)
        {
            Assert.That(b[t.Name].DType, Is.EqualTo(t.DType), t.Name);
            Assert.That(b[t.Name].Shape, Is.EqualTo(t.Shape), t.Name);
            Assert.That(b[t.Name].Data, Is.EqualTo(t.Data), t.Name);
        }
    }

    [Test]
    public void BadInputIsOneErrorLineAndExitOne()
    {
        var dir = Directory.CreateTempSubdirectory("maskbit-convert").FullName;
        var bad = Path.Combine(dir, "bad.bin");
        File.WriteAllBytes(bad, new byte[] { 1, 2, 3, 4, 5 });
        var (code, _, err) = Run("convert", bad, Path.Combine(dir, "out.safetensors"));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(err, Does.Contain("bad.bin"));
        Assert.That(File.Exists(Path.Combine(dir, "out.safetensors")), Is.False);
        Assert.That(Run("convert").Code, Is.EqualTo(2));
    }
}
