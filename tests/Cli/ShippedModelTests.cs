using MaskBit.Autograd;
using MaskBit.Autograd.Optim;
using MaskBit.Cli;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Tests.Data;

namespace MaskBit.Tests.Cli;

/// <summary>The pretrained Fashion-MNIST model in models/fashion_mnist: `generate` and `reconstruct` use it when
/// no weights are given, and its samples are recognisably of the requested class (judged by a softmax
/// regression trained here on Fashion-MNIST).</summary>
[TestFixture]
[NonParallelizable]
public class ShippedModelTests
{
    private static readonly int[] Classes = { 0, 1, 7, 8 };   // T-shirt/top, Trouser, Sneaker, Bag
    private const int PerClass = 8;

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Test]
    public void ReconstructWithoutWeightsUsesTheShippedTokenizer()
    {
        using var dir = new TempDirectory();
        for (int i = 0; i < 3; i++) ImageIO.Write(dir.File("in", $"img{i}.png"), TestImages.Gradient(32, 32, 3, phase: 50 * i));
        var (code, output, error) = Run("reconstruct", "--images", dir.File("in"), "--out", dir.File("out"));
        Assert.That(code, Is.EqualTo(Program.ExitOk), error);
        Assert.That(output, Does.Contain("shipped Fashion-MNIST tokenizer"));
        Assert.That(Directory.GetFiles(dir.File("out"), "img*.png"), Has.Length.EqualTo(3));
        Assert.That(File.Exists(dir.File("out", "grid.png")));
    }

    [Test]
    public void EvalTokenizerScoresTheShippedTokenizersReconstructionsWithTheClassifier()
    {
        try { _ = new FashionMnist(train: false, padTo32: true, channels: 1); }
        catch (IOException e) { Assert.Ignore($"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist; .ci/run does): {e.Message}"); return; }
        using var dir = new TempDirectory();
        string folder = Path.Combine(AppContext.BaseDirectory, "models", "fashion_mnist");
        var (code, output, error) = Run("eval", "tokenizer", "--config", Path.Combine(folder, "tokenizer.yaml"),
            "--checkpoint", Path.Combine(folder, "tokenizer.safetensors"), "--max-images", "40", "--out", dir.Path);
        Assert.That(code, Is.EqualTo(Program.ExitOk), error + output);
        Assert.That(output, Does.Contain("reconstructions (40):").And.Contain("real test (40):"));
        Assert.That(File.ReadAllText(dir.File("metrics.json")), Does.Contain("classifier_frechet"));
    }

    /// <summary>One sampling pass: without Inception weights `eval generator` samples the classifier's images only
    /// and prints their scores next to the floor.</summary>
    [Test]
    public void EvalGeneratorScoresTheShippedModelsSamplesWithTheClassifier()
    {
        try { _ = new FashionMnist(train: false, padTo32: true, channels: 1); }
        catch (IOException e) { Assert.Ignore($"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist; .ci/run does): {e.Message}"); return; }
        using var dir = new TempDirectory();
        var (code, output, error) = Run("eval", "generator", "--num-images", "20", "--seed", "1", "--batch-size", "10", "--out", dir.Path);
        Assert.That(code, Is.EqualTo(Program.ExitOk), error + output);
        Assert.That(output, Does.Contain("sampled 20 images").And.Contain("samples (20):").And.Contain("real test (20):"));
        string metrics = File.ReadAllText(dir.File("metrics.json"));
        Assert.That(metrics, Does.Contain("classifier_frechet").And.Contain("images_per_second"));
    }

    /// <summary>`eval tokenizer` and `generate` take --precision: bf16 reconstructions score within half a decibel of
    /// float32's PSNR, fp16 sampling writes its images, and a precision outside no|bf16|fp16 is a usage error.</summary>
    [Test]
    public void EvalAndGenerateTakePrecision()
    {
        try { _ = new FashionMnist(train: false, padTo32: true, channels: 1); }
        catch (IOException e) { Assert.Ignore($"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist; .ci/run does): {e.Message}"); return; }
        using var dir = new TempDirectory();
        string folder = Path.Combine(AppContext.BaseDirectory, "models", "fashion_mnist");
        double Psnr(string precision)
        {
            var (code, output, error) = Run("eval", "tokenizer", "--config", Path.Combine(folder, "tokenizer.yaml"),
                "--checkpoint", Path.Combine(folder, "tokenizer.safetensors"), "--max-images", "8", "--classifier", "none", "--precision", precision, "--out", dir.File(precision));
            Assert.That(code, Is.EqualTo(Program.ExitOk), error + output);
            using var metrics = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir.File(precision, "metrics.json")));
            return metrics.RootElement.EnumerateObject().First(p => p.Name.Equals("psnr", StringComparison.OrdinalIgnoreCase)).Value.GetDouble();
        }
        double float32 = Psnr("no"), bf16 = Psnr("bf16");
        TestContext.Out.WriteLine($"PSNR float32 {float32:F3} dB, bf16 {bf16:F3} dB");
        Assert.That(bf16, Is.EqualTo(float32).Within(0.5));

        var (generated, output, error) = Run("generate", "--classes", "7", "--per-class", "1", "--batch-size", "1", "--steps", "4", "--seed", "1",
            "--precision", "fp16", "--out", dir.File("fp16"));
        Assert.That(generated, Is.EqualTo(Program.ExitOk), error + output);
        Assert.That(Directory.GetFiles(dir.File("fp16"), "class*.png"), Has.Length.EqualTo(1));
        var (refused, _, refusal) = Run("generate", "--precision", "fp32", "--out", dir.File("refused"));
        Assert.That(refused, Is.EqualTo(Program.ExitUsage));
        Assert.That(refusal, Does.Contain("fp32"));
    }

    [Test]
    public void GeneratedSamplesAreOfTheRequestedClass()
    {
        FashionMnist train;
        try { train = new FashionMnist(train: true, padTo32: true, channels: 1); }
        catch (IOException e) { Assert.Ignore($"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist; .ci/run does): {e.Message}"); return; }
        var classifier = SoftmaxRegression.Train(train, examples: 12_000);

        using var dir = new TempDirectory();
        string outDir = dir.File("samples");
        var (code, output, error) = Run("generate", "--classes", string.Join(',', Classes), "--per-class", $"{PerClass}", "--seed", "1",
            "--batch-size", $"{Classes.Length * PerClass}", "--out", outDir);
        Assert.That(code, Is.EqualTo(Program.ExitOk), error);
        Assert.That(output, Does.Contain("using the shipped Fashion-MNIST model"));
        Assert.That(File.Exists(Path.Combine(outDir, "grid.png")));
        Assert.That(Directory.GetFiles(outDir, "class*.png"), Has.Length.EqualTo(Classes.Length * PerClass));

        var samples = Npy.ReadNpz(Path.Combine(outDir, "samples.npz"));
        var images = samples["images"];
        Assert.That(images.Shape, Is.EqualTo(new[] { Classes.Length * PerClass, 3, 32, 32 }));
        var pixels = images.ToFloat32();
        Assert.That(pixels.All(v => v is >= 0f and <= 1f), "images in [0, 1]");
        var labels = samples["labels"].ToInt32();
        Assert.That(labels, Is.EqualTo(Classes.SelectMany(c => Enumerable.Repeat(c, PerClass)).ToArray()));
        Assert.That(samples["tokens"].Shape, Is.EqualTo(new[] { Classes.Length * PerClass, 64 }));

        // Gray = mean of the replicated channels, as the classifier's 1-channel training images.
        int n = labels.Length, size = 32 * 32;
        var gray = new float[n * size];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < size; p++)
                gray[i * size + p] = (pixels[(i * 3) * size + p] + pixels[(i * 3 + 1) * size + p] + pixels[(i * 3 + 2) * size + p]) / 3f;
        var predicted = classifier.Predict(gray, n);
        double agreement = predicted.Zip(labels).Count(p => p.First == p.Second) / (double)n;
        TestContext.Out.WriteLine($"classifier agrees with the requested class on {agreement:P0} of {n} samples (chance 10%); " +
                                  $"its test accuracy {classifier.TestAccuracy:P0}");
        Assert.That(agreement, Is.GreaterThanOrEqualTo(0.5));
    }

    /// <summary>Softmax regression on 32×32 gray pixels, full-batch AdamW (Fashion-MNIST: ≈ 80% accuracy).</summary>
    private sealed class SoftmaxRegression
    {
        private readonly Tensor _weight, _bias;
        public double TestAccuracy { get; private init; }

        private SoftmaxRegression(Tensor weight, Tensor bias) { _weight = weight; _bias = bias; }

        public static SoftmaxRegression Train(FashionMnist data, int examples)
        {
            const int features = 32 * 32, classes = 10, heldOut = 1000;
            var (x, y) = Load(data, examples + heldOut, features);
            var weight = Tensor.Zeros(features, classes).RequiresGrad_();
            var bias = Tensor.Zeros(classes).RequiresGrad_();
            var model = new SoftmaxRegression(weight, bias);
            var optimizer = new AdamW(new[] { weight, bias }, lr: 0.02, weightDecay: 0);
            var inputs = Tensor.FromArray(x.AsSpan(0, examples * features), new[] { examples, features });
            var targets = Tensor.FromInts(y.AsSpan(0, examples), new[] { examples });
            for (int step = 0; step < 60; step++)
            {
                using var scope = TensorScope.Begin();
                optimizer.ZeroGrad();
                F.CrossEntropy(inputs.MatMul(weight) + bias, targets).Backward();
                optimizer.Step();
            }
            var predicted = model.Predict(x.AsSpan(examples * features).ToArray(), heldOut);
            return new SoftmaxRegression(weight, bias) { TestAccuracy = predicted.Zip(y[examples..]).Count(p => p.First == p.Second) / (double)heldOut };
        }

        public int[] Predict(float[] gray, int n)
        {
            using var noGrad = Tape.NoGrad();
            var logits = (Tensor.FromArray(gray, n, gray.Length / n).MatMul(_weight) + _bias).ToArray();
            return Enumerable.Range(0, n).Select(i => Array.IndexOf(logits, logits.AsSpan(i * 10, 10).ToArray().Max(), i * 10) - i * 10).ToArray();
        }

        private static (float[] X, int[] Y) Load(FashionMnist data, int count, int features)
        {
            var x = new float[count * features];
            var y = new int[count];
            for (int i = 0; i < count; i++)
            {
                var sample = data.Load(i);
                for (int p = 0; p < features; p++) x[i * features + p] = sample.Image.Pixels[p] / 255f;
                y[i] = sample.Label;
            }
            return (x, y);
        }
    }
}
