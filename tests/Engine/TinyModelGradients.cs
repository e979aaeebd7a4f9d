using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Tokenizer;
using MaskBit.Tests.Support;
using MaskBit.Tests.Training;

namespace MaskBit.Tests.Engine;

/// <summary>The setup that the memory tests (<see cref="SavedTensorsTests"/>, <see cref="CheckpointTests"/>) share:
/// the tiny generator and tokenizer with a scalar loss over their training forward, seeded inputs, a run on one
/// test device, and the bit-equal comparison of two gradient sets.</summary>
internal static class TinyModelGradients
{
    public static MaskBitConfig Tiny(params string[] overrides) => MaskBitConfig.Parse(GeneratorTrainerTests.TinyConfig, "tiny.yaml", overrides);

    public static T OnDevice<T>(string device, Func<T> body)
    {
        var previous = Device.Default;
        Device.Default = TestDevices.GetForModels(device);
        try { return body(); }
        finally { Device.Default = previous; }
    }

    /// <summary>Standard normal values drawn from <paramref name="seed"/>.</summary>
    public static Tensor Gaussian(int[] shape, int seed)
    {
        var rng = new Rng((ulong)seed);
        var values = new float[shape.Aggregate(1, (a, b) => a * b)];
        for (int i = 0; i < values.Length; i++) values[i] = (float)rng.NextGaussian();
        return Tensor.FromArray(values, shape);
    }

    /// <summary>The tiny generator with <paramref name="depth"/> layers in train mode (dropout on: the same seeds
    /// draw the same masks in every run); the loss weighs the logits of two random token grids.</summary>
    public static MaskedGenerator TinyGenerator(MaskBitConfig config, int depth, out Func<Tensor> loss)
    {
        var generatorConfig = GeneratorConfig.From(config) with { Depth = depth };
        var generator = new MaskedGenerator(generatorConfig, seed: 5);
        generator.Train();
        var tokenRng = new Random(3);
        const int batch = 2;
        var tokens = Tensor.FromInts(Enumerable.Range(0, batch * generatorConfig.SeqLen * generatorConfig.Splits).Select(_ => tokenRng.Next(generatorConfig.EffectiveCodebookSize)).ToArray(),
            [batch, generatorConfig.SeqLen, generatorConfig.Splits]);
        var weights = Gaussian([batch, generatorConfig.SeqLen, generatorConfig.Splits, generatorConfig.EffectiveCodebookSize], seed: 6);
        loss = () => generator.Forward(tokens, [1, 4], new bool[batch]).Mul(weights).Sum();
        return generator;
    }

    /// <summary>The tiny tokenizer; the loss is the reconstruction error of one 16² image plus the quantizer's.</summary>
    public static ConvVQModel TinyTokenizer(MaskBitConfig config, out Func<Tensor> loss)
    {
        var model = new ConvVQModel(TokenizerConfig.From(config), seed: 2);
        var images = Gaussian([1, 3, 16, 16], seed: 8);
        loss = () =>
        {
            var (decoded, result) = model.Forward(images);
            return decoded.Sub(images).Square().Mean().Add(result.QuantizerLoss);
        };
        return model;
    }

    /// <summary>Every parameter's gradient (and the input's, when it wants one) after one backward.</summary>
    public static List<float[]> Gradients(IEnumerable<Tensor> parameters, Tensor? input = null) =>
        [.. parameters.Select(p => p.Grad!.ToArray()), .. input == null ? [] : new[] { input.Grad!.ToArray() }];

    public static void AssertSameGradients(List<float[]> expected, List<float[]> actual)
    {
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        for (int i = 0; i < expected.Count; i++) Assert.That(actual[i], Is.EqualTo(expected[i]), $"gradient {i}");
    }
}
