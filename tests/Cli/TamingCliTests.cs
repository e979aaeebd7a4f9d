using MaskBit.Autograd;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;

namespace MaskBit.Tests.Cli;

/// <summary>The tokenizer commands with a Taming model (the reduced fixture of tests/Fixtures/taming).</summary>
public class TamingCliTests
{
    private static string Dir => Path.Combine(AppContext.BaseDirectory, "Fixtures", "taming");

    [Test]
    public void ReconstructRunsATamingTokenizer()
    {
        string work = Path.Combine(Path.GetTempPath(), $"taming-cli-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            var input = Npy.ReadNpz(Path.Combine(Dir, "io.npz"))["input"];
            var images = Tensor.FromArray(input.ToFloat32(), input.Shape);
            for (int i = 0; i < input.Shape[0]; i++) ImageIO.Write(Path.Combine(work, $"image{i}.png"), ImageIO.FromTensor(images.Select0(i)));

            var o = new StringWriter(); var e = new StringWriter();
            int code = MaskBit.Cli.Program.Run(["reconstruct", "--config", Path.Combine(Dir, "config.yaml"), "--weights", Path.Combine(Dir, "tokenizer.bin"),
                "--images", work, "--out", Path.Combine(work, "out"), "dataset.preprocessing.resolution=16"], o, e);
            Assert.That(code, Is.EqualTo(0), e.ToString());
            var reconstruction = ImageIO.Read(Path.Combine(work, "out", "image0.png"), 3);
            Assert.That((reconstruction.Height, reconstruction.Width), Is.EqualTo((16, 16)));
        }
        finally { Directory.Delete(work, recursive: true); }
    }
}
