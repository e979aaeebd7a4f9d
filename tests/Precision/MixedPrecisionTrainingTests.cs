using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Training;
using MaskBit.Tests.Training;

namespace MaskBit.Tests.Precision;

/// <summary>training.mixed_precision through the one training system, on the tiny generator of
/// <see cref="GeneratorTrainerTests"/>: the config key, a bf16 loss curve against float32, and fp16 loss scaling
/// skipping and recovering from an injected overflow.</summary>
[NonParallelizable]
public class MixedPrecisionTrainingTests
{
    private static MaskBitConfig Config(params string[] overrides)
    {
        var dir = Path.Combine(Path.GetTempPath(), "maskbit-precision-tests");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "tiny.yaml");
        File.WriteAllText(path, GeneratorTrainerTests.TinyConfig);
        return MaskBitConfig.Load(path, ["training.use_ema=false", .. overrides]);
    }

    private static TokenBatch Batch(int seed)
    {
        var random = new Random(seed);
        return new TokenBatch(Enumerable.Range(0, 8 * 64).Select(_ => random.Next(256)).ToArray(),
            Enumerable.Range(0, 8).Select(_ => random.Next(10)).ToArray(), 0, seed);
    }

    [TestCase("\"no\"", null)]
    [TestCase("no", null)]
    [TestCase("bf16", DType.BFloat16)]
    [TestCase("fp16", DType.Float16)]
    public void ConfigKeyReachesBothStages(string value, DType? expected)
    {
        var config = Config($"training.mixed_precision={value}");
        Assert.That(GeneratorTrainingSettings.From(config).MixedPrecision, Is.EqualTo(expected));
        Assert.That(TokenizerTrainingSettings.From(config).MixedPrecision, Is.EqualTo(expected));
        Assert.That(MlmStep.From(config).Precision.DType, Is.EqualTo(expected));
    }

    [Test]
    public void UnknownPrecisionIsAConfigError()
    {
        var e = Assert.Throws<ConfigException>(() => GeneratorTrainingSettings.From(Config("training.mixed_precision=fp8")))!;
        Assert.That(e.Message, Does.Contain("training.mixed_precision").And.Contain("fp8"));
    }

    /// <summary>The same 50 batches and draws in float32 and in bf16 with activation checkpointing (issue 16's memory
    /// setting), also with AdamW's moments in bf16 (optimizer.params.moments_dtype): each bf16 curve stays within 1% of
    /// float32's at every step (measured: see the test output).</summary>
    [Test]
    public void Bf16CheckpointedLossCurveFollowsFloat32()
    {
        const int steps = 50;
        double[] Curve(params string[] overrides)
        {
            var step = MlmStep.From(Config(overrides));
            return Enumerable.Range(0, steps).Select(i => { int b = i % 4; return step.Run(() => Batch(b), i)["train/mlm_loss"]; }).ToArray();
        }
        var full = Curve("training.mixed_precision=\"no\"");
        string[] memorySetting = ["training.mixed_precision=bf16", "training.activation_checkpointing=true"];
        foreach (var (name, mixed) in new[]
        {
            ("bf16 + checkpointing", Curve(memorySetting)),
            ("bf16 + checkpointing + bf16 moments", Curve([.. memorySetting, "optimizer.params.moments_dtype=bf16"])),
        })
        {
            double worst = 0;
            for (int i = 0; i < steps; i++)
            {
                double relative = (mixed[i] - full[i]) / full[i];
                worst = Math.Max(worst, Math.Abs(relative));
                TestContext.Out.WriteLine($"step {i + 1}: float32 {full[i]:F5}  {name} {mixed[i]:F5}  relative difference {relative:E2}");
                Assert.That(mixed[i], Is.EqualTo(full[i]).Within(1).Percent, $"{name}, step {i + 1}");
            }
            TestContext.Out.WriteLine($"{name}: largest relative difference {worst:E2}");
            Assert.That(mixed[^1], Is.LessThan(mixed[0]), $"{name} lowers the loss");
        }
    }

    /// <summary>A loss scale of 2³⁰ overflows the fp16 gradients: those steps are skipped (parameters untouched,
    /// schedule not advanced, logged), the scale halves until the gradients fit, and training goes on with finite
    /// updates.</summary>
    [Test]
    public void Fp16LossScalingRecoversFromAnInjectedOverflow()
    {
        var step = MlmStep.From(Config("training.mixed_precision=fp16", "training.max_grad_norm=1.0"));
        Assert.That(step.Precision.Scale, Is.EqualTo(MixedPrecision.InitialScale));
        step.Precision.Scale = Math.Pow(2, 30);
        var parameters = step.Generator.Parameters().ToList();
        float[] Weights() => parameters.SelectMany(p => p.ToArray()).ToArray();
        var initial = Weights();
        int skipped = 0, applied = 0;
        for (int i = 0; i < 40 && applied < 3; i++)
        {
            var before = Weights();
            var values = step.Run(() => Batch(i % 4), i);
            bool wasSkipped = values["skipped_steps"] > skipped;
            if (wasSkipped)
            {
                skipped++;
                Assert.That(Weights().SequenceEqual(before), $"step {i + 1} overflowed and must not change the weights");
                Assert.That(applied, Is.Zero, "once the scale fits, it stays (growth needs 2000 clean steps)");
            }
            else
            {
                applied++;
                var after = Weights();
                Assert.That(after.All(float.IsFinite), $"step {i + 1}: finite weights");
            }
            Assert.That(double.IsFinite(values["train/mlm_loss"]));
            TestContext.Out.WriteLine($"step {i + 1}: loss {values["train/mlm_loss"]:F4} scale {values["loss_scale"]:E2} skipped {values["skipped_steps"]}");
        }
        Assert.That(skipped, Is.GreaterThan(0), "the injected scale overflowed");
        Assert.That(applied, Is.EqualTo(3), "training recovered");
        Assert.That(Weights().SequenceEqual(initial), Is.False, "the applied steps updated the weights (the first at the warm-up's learning rate 0)");
        Assert.That(step.Precision.Scale, Is.EqualTo(Math.Pow(2, 30 - skipped)));
        Assert.That(step.Schedule.Step, Is.EqualTo(applied), "skipped steps do not advance the schedule");
    }
    /// <summary>An fp16 run checkpointed after an injected overflow resumes exactly: the restored step has the loss
    /// scale, growth tracker and skipped-step count it had reached (not GradScaler's start of 2¹⁶), and its next steps
    /// give the uninterrupted run's losses, scales and weights bit for bit.</summary>
    [Test]
    public void Fp16LossScaleResumesExactly()
    {
        string[] overrides = ["training.mixed_precision=fp16", "training.max_grad_norm=1.0"];
        var first = MlmStep.From(Config(overrides));
        first.Precision.Scale = Math.Pow(2, 30);
        int stepsDone = 0;
        for (; stepsDone < 40 && (first.Precision.SkippedSteps == 0 || first.Precision.GrowthTracker < 2); stepsDone++)
        {
            int batch = stepsDone % 4;
            first.Run(() => Batch(batch), stepsDone);
        }
        Assert.That(first.Precision.SkippedSteps, Is.GreaterThan(0), "the injected scale overflowed");
        Assert.That(first.Precision.GrowthTracker, Is.EqualTo(2), "clean steps since the overflow");

        string path = Path.Combine(Path.GetTempPath(), $"maskbit-fp16-resume-{Environment.ProcessId}.safetensors");
        try
        {
            TrainingCheckpoint.Save(path, first.State(""));
            var resumed = MlmStep.From(Config(overrides));
            Assert.That(resumed.Precision.Scale, Is.EqualTo(MixedPrecision.InitialScale));
            TrainingCheckpoint.Restore(path, resumed.State(""));
            Assert.That(resumed.Precision.Scale, Is.EqualTo(first.Precision.Scale), "loss scale");
            Assert.That(resumed.Precision.GrowthTracker, Is.EqualTo(first.Precision.GrowthTracker), "growth tracker");
            Assert.That(resumed.Precision.SkippedSteps, Is.EqualTo(first.Precision.SkippedSteps), "skipped steps");
            for (int i = 0; i < 3; i++)
            {
                int batch = (stepsDone + i) % 4;
                var expected = first.Run(() => Batch(batch), stepsDone + i);
                var actual = resumed.Run(() => Batch(batch), stepsDone + i);
                foreach (var key in new[] { "train/mlm_loss", "loss_scale", "skipped_steps" })
                    Assert.That(actual[key], Is.EqualTo(expected[key]), $"resumed step {i + 1}: {key}");
            }
            Assert.That(resumed.Generator.Parameters().SelectMany(p => p.ToArray()),
                Is.EqualTo(first.Generator.Parameters().SelectMany(p => p.ToArray())), "weights after the resumed steps");
        }
        finally { File.Delete(path); }
    }
}
