using MaskBit.Models.Data;

namespace MaskBit.Tests.Data;

public class PreprocessTests
{
    private static float[] ResizeRow(float[] row, int outWidth, Interpolation mode)
    {
        var output = new float[outWidth];
        Preprocess.ResizeHwc<float>(row, 1, row.Length, 1, new CropBox(0, 0, 1, row.Length), output, 1, outWidth, mode);
        return output;
    }

    [Test]
    public void ShorterSideResizeKeepsAspectLikeTorchvision()
    {
        Assert.That(Preprocess.ShorterSideSize(480, 640, 256), Is.EqualTo((256, 341)));
        Assert.That(Preprocess.ShorterSideSize(640, 480, 256), Is.EqualTo((341, 256)));
        Assert.That(Preprocess.ShorterSideSize(100, 100, 32), Is.EqualTo((32, 32)));
        var resized = Preprocess.ResizeShorterSide(TestImages.Gradient(30, 45), 20);
        Assert.That((resized.Height, resized.Width, resized.Channels), Is.EqualTo((20, 30, 3)));
    }

    [Test]
    public void BilinearDownscaleIsAntialiasedLikePil()
    {
        // Halving stretches the triangle filter to 4 taps [1,3,3,1]/8, renormalised where it leaves the image.
        var ramp = Enumerable.Range(0, 8).Select(i => 8f * i).ToArray();
        Assert.That(ResizeRow(ramp, 4, Interpolation.Bilinear), Is.EqualTo(new[] { 40f / 7, 20f, 36f, 352f / 7 }).Within(1e-4f));
    }

    [Test]
    public void BilinearUpscaleUsesHalfPixelCentres()
    {
        var ramp = new[] { 0f, 1f, 2f, 3f };
        Assert.That(ResizeRow(ramp, 8, Interpolation.Bilinear), Is.EqualTo(new[] { 0f, 0.25f, 0.75f, 1.25f, 1.75f, 2.25f, 2.75f, 3f }).Within(1e-5f));
    }

    [Test]
    public void NearestPicksTheCoveringPixel()
    {
        Assert.That(ResizeRow(new[] { 0f, 1f, 2f, 3f }, 2, Interpolation.Nearest), Is.EqualTo(new[] { 1f, 3f }));
        Assert.That(ResizeRow(new[] { 0f, 1f }, 4, Interpolation.Nearest), Is.EqualTo(new[] { 0f, 0f, 1f, 1f }));
    }

    [TestCase(Interpolation.Bilinear)]
    [TestCase(Interpolation.Bicubic)]
    [TestCase(Interpolation.Nearest)]
    public void ConstantImagesStayConstant(Interpolation mode)
    {
        var image = new HostImage(17, 23, 3);
        for (int i = 0; i < image.Pixels.Length; i++) image.Pixels[i] = (byte)(60 + i % 3 * 50);
        foreach (var (h, w) in new[] { (5, 7), (40, 31), (17, 23) })
        {
            var resized = Preprocess.Resize(image, h, w, mode);
            for (int i = 0; i < resized.Pixels.Length; i++) Assert.That(resized.Pixels[i], Is.EqualTo(60 + i % 3 * 50));
        }
    }

    [Test]
    public void BicubicReproducesLinearRampsInTheInterior()
    {
        var ramp = Enumerable.Range(0, 10).Select(i => (float)i).ToArray();
        var up = ResizeRow(ramp, 20, Interpolation.Bicubic);
        for (int i = 4; i < 16; i++) Assert.That(up[i], Is.EqualTo((i + 0.5f) / 2 - 0.5f).Within(1e-4f));
    }

    [Test]
    public void ResizedCropSamplesOnlyInsideTheBox()
    {
        var image = new HostImage(10, 10, 1);
        for (int y = 0; y < 10; y++) for (int x = 0; x < 10; x++) image.Pixels[y * 10 + x] = (byte)(x < 5 ? 0 : 200);
        var left = Preprocess.ResizedCrop(image, new CropBox(2, 0, 6, 5), 3, 3, Interpolation.Bicubic);
        Assert.That(left.Pixels, Is.All.EqualTo(0), "taps must not reach the bright half beside the box");
    }

    [Test]
    public void CropsAndFlips()
    {
        var image = TestImages.Noise(6, 9, 3, seed: 5);
        Assert.That(Preprocess.FlipHorizontal(Preprocess.FlipHorizontal(image)).Pixels, Is.EqualTo(image.Pixels));
        var flipped = Preprocess.FlipHorizontal(image);
        Assert.That(flipped[2, 0, 1], Is.EqualTo(image[2, 8, 1]));

        Assert.That(Preprocess.CenterBox(7, 10, 4, 4), Is.EqualTo(new CropBox(2, 3, 4, 4)), "1.5 rounds to 2, 3 stays 3");
        var center = Preprocess.CenterCrop(image, 4);
        Assert.That(center[0, 0, 0], Is.EqualTo(image[1, 2, 0]));

        var padded = Preprocess.Crop(image, new CropBox(-1, -2, 8, 13));
        Assert.That(padded[0, 0, 0], Is.EqualTo(0));
        Assert.That(padded[1, 2, 2], Is.EqualTo(image[0, 0, 2]));
        Assert.That(padded[7, 12, 0], Is.EqualTo(0));
    }

    [Test]
    public void RandomResizedCropBoxesRespectScaleAndRatio()
    {
        var rng = new Random(42);
        for (int i = 0; i < 500; i++)
        {
            var box = Preprocess.RandomResizedCropBox(120, 200, rng, minScale: 0.05);
            Assert.That(box.Top >= 0 && box.Left >= 0 && box.Top + box.Height <= 120 && box.Left + box.Width <= 200, $"{box}");
            double area = (double)box.Height * box.Width / (120 * 200), ratio = (double)box.Width / box.Height;
            Assert.That(area, Is.InRange(0.04, 1.0));
            Assert.That(ratio, Is.InRange(0.7, 1.4));
        }
        var square = Preprocess.RandomResizedCropBox(120, 200, new Random(1), 0.3, 1.0, 1.0, 1.0);
        Assert.That(Math.Abs(square.Height - square.Width), Is.LessThanOrEqualTo(1));
        Assert.That(Preprocess.RandomResizedCropBox(50, 60, new Random(3)), Is.EqualTo(Preprocess.RandomResizedCropBox(50, 60, new Random(3))));
    }

    [Test]
    public void TrainTransformIsSeededAndShaped()
    {
        var transform = new ImageTransform(32, useAspectRatioAug: true, minScale: 0.05);
        var image = TestImages.Gradient(60, 80);
        var a = transform.Train(image, new Random(7));
        var b = transform.Train(image, new Random(7));
        Assert.That((a.Height, a.Width, a.Channels), Is.EqualTo((32, 32, 3)));
        Assert.That(a.Pixels, Is.EqualTo(b.Pixels));
        var distinct = Enumerable.Range(0, 8).Select(s => Convert.ToBase64String(transform.Train(image, new Random(s)).Pixels)).Distinct().Count();
        Assert.That(distinct, Is.GreaterThan(4));
    }

    [Test]
    public void EvalTransformResizesShorterSideThenCentreCrops()
    {
        var transform = new ImageTransform(16, useAspectRatioAug: false, useRandomCrop: false, minScale: 1.0);
        var image = TestImages.Gradient(16, 30);
        var expected = Preprocess.CenterCrop(image, 16);
        Assert.That(transform.Eval(image).Pixels, Is.EqualTo(expected.Pixels), "no resampling when the shorter side already fits");
        Assert.That(transform.Train(image, new Random(1)).Pixels, Is.EqualTo(expected.Pixels), "without random crops training uses the eval transform");
        var large = transform.Eval(TestImages.Gradient(50, 40));
        Assert.That((large.Height, large.Width), Is.EqualTo((16, 16)));
    }

    [Test]
    public void TransformRejectsSettingsTheReferenceRejects()
    {
        Assert.Throws<ArgumentException>(() => _ = new ImageTransform(32, useAspectRatioAug: false, useRandomCrop: false, minScale: 0.05));
        Assert.Throws<ArgumentException>(() => _ = new ImageTransform(32, useAspectRatioAug: true, useRandomCrop: false, minScale: 1.0));
        Assert.That(Preprocess.ParseInterpolation("Bicubic"), Is.EqualTo(Interpolation.Bicubic));
        Assert.Throws<ArgumentException>(() => Preprocess.ParseInterpolation("lanczos"));
    }
}
