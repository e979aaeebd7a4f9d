using MaskBit.Cli.Commands;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Metrics;
using MaskBit.Models.Training;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Cli;

/// <summary>`eval generator` keeps its memory independent of the number of images: batches reuse their host
/// buffers, and the large arrays a batch leaves behind are collected every
/// <see cref="GeneratorEvaluation.FullCollectionEveryBytes"/> (without that the GC let them pile up to its
/// large-object budget: ~7 MB more per 1,000 images). Peak RSS at 5,000 and 50,000 images is in bench/RESULTS.md.</summary>
[NonParallelizable]
public class EvalGeneratorMemoryTests
{
    [Test]
    public void SampledBatchesReuseOneHostBuffer()
    {
        string dir = GoldenCases.RepoDir;
        var config = MaskBitConfig.Load(Path.Combine(dir, "released_format", "generator.yaml"));
        var sampler = new Sampler(PretrainedModels.Generator(config, Path.Combine(dir, "released_format", "generator.bin")),
            PretrainedModels.Tokenizer(config, Path.Combine(dir, "tokenizer_lfq", "model.bin")));
        var loaded = new SamplingFlags.Loaded(config, sampler, SamplerOptions.FromConfig(config) with { NumSteps = 1 }, 1, 2, "", null);
        var first = loaded.SampleBatch([0, 1], new SeededRandomSource(1)).Data;
        var second = loaded.SampleBatch([2, 3], new SeededRandomSource(2)).Data;
        Assert.That(second, Is.SameAs(first), "a batch of the same size downloads into the previous batch's buffer");
        Assert.That(loaded.SampleBatch([4], new SeededRandomSource(3)).Data, Has.Length.EqualTo(3 * 32 * 32), "a short last batch gets its own");
    }

    /// <summary>A stand-in sampler leaves a large array behind per batch, as the Inception outputs do.</summary>
    [Test]
    public void LargeGarbageOfBatchesIsCollectedAsTheEvaluationGoes()
    {
        const int batches = 24, garbageBytes = 8 << 20;
        var evaluation = new GeneratorEvaluation(null, batches, numClasses: 1, settings: "");
        int fullCollectionsBefore = GC.CollectionCount(2);
        evaluation.Run((labels, _) =>
        {
            GC.KeepAlive(new byte[garbageBytes]);
            return new ImageBatch(new float[labels.Length * 3], labels.Length, 3, 1, 1);
        }, batchSize: 1);
        int expected = (int)((long)batches * garbageBytes / GeneratorEvaluation.FullCollectionEveryBytes) - 1;
        Assert.That(GC.CollectionCount(2) - fullCollectionsBefore, Is.GreaterThanOrEqualTo(expected),
            $"{batches} batches of {garbageBytes >> 20} MB garbage: a full collection every {GeneratorEvaluation.FullCollectionEveryBytes >> 20} MB allocated");
    }
}
