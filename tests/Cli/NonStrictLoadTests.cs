using MaskBit.Models.Config;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;

namespace MaskBit.Tests.Cli;

public class NonStrictLoadTests
{
    [Test]
    public void NonStrictLoadingReportsProblemsInsteadOfFailing()
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", "tokenizer_lfq");
        var sd = CheckpointFile.Load(Path.Combine(dir, "model.bin"));
        var tampered = Path.Combine(Directory.CreateTempSubdirectory("maskbit-nonstrict").FullName, "w.safetensors");
        SafeTensors.Save(tampered, sd.Where(t => t.Name != "decoder.conv_out.bias").Append(TensorRecord.FromFloats("extra.weight", new[] { 1f }, 1)));
        var model = new ConvVQModel(TokenizerConfig.From(MaskBitConfig.Load(Path.Combine(dir, "config.yaml"))));

        var e = Assert.Throws<InvalidDataException>(() => PretrainedModels.LoadTokenizerWeights(model, tampered))!;
        Assert.That(e.Message, Does.Contain("decoder.conv_out.bias").And.Contain("extra.weight"));

        var warnings = new List<string>();
        Assert.That(PretrainedModels.LoadTokenizerWeights(model, tampered, warn: warnings.Add).Source, Is.EqualTo(WeightsSource.PlainFile));
        Assert.That(warnings, Has.Some.Contain("missing key 'decoder.conv_out.bias'"));
        Assert.That(warnings, Has.Some.Contain("unexpected key 'extra.weight'"));
    }
}
