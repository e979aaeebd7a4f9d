using MaskBit.Autograd;
using MaskBit.Models.Data;

namespace MaskBit.Tests.Data;

public class ImageIOTests
{
    private TempDirectory _dir = null!;

    [SetUp] public void SetUp() => _dir = new TempDirectory();
    [TearDown] public void TearDown() => _dir.Dispose();

    [TestCase(1)]
    [TestCase(3)]
    [TestCase(4)]
    public void PngRoundTripIsExact(int channels)
    {
        var image = TestImages.Noise(13, 17, channels, seed: channels);
        var path = _dir.File("noise.png");
        ImageIO.Write(path, image);
        var back = ImageIO.Read(path, channels);
        Assert.That((back.Height, back.Width, back.Channels), Is.EqualTo((13, 17, channels)));
        Assert.That(back.Pixels, Is.EqualTo(image.Pixels));
    }

    [Test]
    public void JpegRoundTripIsCloseOnSmoothImages()
    {
        var image = TestImages.Gradient(48, 64);
        var path = _dir.File("sub", "ramp.jpg");
        ImageIO.Write(path, image);
        var back = ImageIO.Read(path);
        Assert.That((back.Height, back.Width, back.Channels), Is.EqualTo((48, 64, 3)));
        var errors = image.Pixels.Zip(back.Pixels, (a, b) => Math.Abs(a - b)).ToArray();
        Assert.That(errors.Average(), Is.LessThan(2.5), "mean abs error");
        Assert.That(errors.Max(), Is.LessThan(24), "max abs error");
    }

    [Test]
    public void GrayAndRgbaInputsBecomeRgb()
    {
        var gray = TestImages.Noise(5, 6, 1, seed: 7);
        var rgba = TestImages.Noise(5, 6, 4, seed: 8);
        ImageIO.Write(_dir.File("gray.png"), gray);
        ImageIO.Write(_dir.File("rgba.png"), rgba);

        var grayAsRgb = ImageIO.Read(_dir.File("gray.png"));
        var rgbaAsRgb = ImageIO.Read(_dir.File("rgba.png"));
        Assert.That(grayAsRgb.Channels, Is.EqualTo(3));
        Assert.That(rgbaAsRgb.Channels, Is.EqualTo(3));
        for (int p = 0; p < 30; p++)
            for (int c = 0; c < 3; c++)
            {
                Assert.That(grayAsRgb.Pixels[p * 3 + c], Is.EqualTo(gray.Pixels[p]));
                Assert.That(rgbaAsRgb.Pixels[p * 3 + c], Is.EqualTo(rgba.Pixels[p * 4 + c]), "alpha dropped, colour kept");
            }
    }

    [Test]
    public void RgbCanBeReadAsOneChannelLuma()
    {
        var rgb = TestImages.Noise(4, 4, 3, seed: 3);
        ImageIO.Write(_dir.File("rgb.png"), rgb);
        var gray = ImageIO.Read(_dir.File("rgb.png"), channels: 1);
        Assert.That(gray.Channels, Is.EqualTo(1));
        for (int p = 0; p < 16; p++)
        {
            double luma = 0.299 * rgb.Pixels[3 * p] + 0.587 * rgb.Pixels[3 * p + 1] + 0.114 * rgb.Pixels[3 * p + 2];
            Assert.That(gray.Pixels[p], Is.EqualTo(luma).Within(2.0));
        }
    }

    [Test]
    public void CorruptOrMissingFilesNameTheFile()
    {
        var garbage = _dir.File("garbage.png");
        File.WriteAllBytes(garbage, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 });
        var truncated = _dir.File("truncated.png");
        var png = ImageIO.EncodePng(TestImages.Noise(16, 16, 3, seed: 1));
        File.WriteAllBytes(truncated, png[..(png.Length / 2)]);
        var empty = _dir.File("empty.jpg");
        File.WriteAllBytes(empty, Array.Empty<byte>());
        var missing = _dir.File("missing.png");

        foreach (var path in new[] { garbage, truncated, empty, missing })
        {
            var e = Assert.Throws<InvalidDataException>(() => ImageIO.Read(path))!;
            Assert.That(e.Message, Does.Contain(path));
        }
        Assert.That(Assert.Throws<InvalidDataException>(() => ImageIO.Read(garbage))!.Message, Does.Contain("unknown image type"));
    }

    [Test]
    public void TensorConversionFollowsToTensorAndSaveImage()
    {
        var image = TestImages.Noise(3, 5, 3, seed: 11);
        var t = ImageIO.ToTensor(image);
        Assert.That(t.Shape, Is.EqualTo(new[] { 3, 3, 5 }));
        var values = t.ToArray();
        Assert.That(values[2 * 15 + 1 * 5 + 4], Is.EqualTo(image[1, 4, 2] / 255f));
        Assert.That(values.Min(), Is.GreaterThanOrEqualTo(0f));
        Assert.That(values.Max(), Is.LessThanOrEqualTo(1f));
        Assert.That(ImageIO.FromTensor(t).Pixels, Is.EqualTo(image.Pixels));

        var outOfRange = Tensor.FromArray(new[] { -0.5f, 0.5f, 1.5f, 0.999f }, 1, 2, 2);
        Assert.That(ImageIO.FromTensor(outOfRange).Pixels, Is.EqualTo(new byte[] { 0, 128, 255, 255 }));
    }

    [Test]
    public void GridPlacesImagesRowMajorWithPadding()
    {
        var tiles = Enumerable.Range(0, 5).Select(i =>
        {
            var tile = new HostImage(4, 6, 3);
            Array.Fill(tile.Pixels, (byte)(10 * (i + 1)));
            return tile;
        }).ToList();
        var grid = ImageIO.MakeGrid(tiles, nrow: 3, padding: 2, padValue: 255);
        Assert.That((grid.Height, grid.Width), Is.EqualTo((2 * (4 + 2) + 2, 3 * (6 + 2) + 2)));
        Assert.That(grid[0, 0, 0], Is.EqualTo(255));
        Assert.That(grid[2, 2, 1], Is.EqualTo(10), "first tile starts after the padding");
        Assert.That(grid[2, 2 + 8, 0], Is.EqualTo(20));
        Assert.That(grid[2 + 6, 2 + 8, 2], Is.EqualTo(50), "second row");
        Assert.That(grid[2 + 6, 2 + 16, 0], Is.EqualTo(255), "no sixth tile");

        // The tensor overload and file writer: a (N,C,H,W) batch in [0,1].
        var batch = Tensor.FromArray(Enumerable.Range(0, 4 * 1 * 3 * 3).Select(i => (i % 9) / 8f).ToArray(), 4, 1, 3, 3);
        var path = _dir.File("grid.png");
        ImageIO.SaveGrid(path, batch, nrow: 2, padding: 1);
        var saved = ImageIO.Read(path, channels: 1);
        Assert.That((saved.Height, saved.Width), Is.EqualTo((9, 9)));
        Assert.That(saved[1 + 4 + 1, 1 + 4 + 2, 0], Is.EqualTo(ImageIO.FromTensor(Tensor.FromArray(new[] { 5 / 8f }, 1, 1, 1)).Pixels[0]));
    }
}
