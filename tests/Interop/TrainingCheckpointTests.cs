using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Autograd.Optim;
using MaskBit.Models.Interop;

namespace MaskBit.Tests.Interop;

public class TrainingCheckpointTests
{
    private sealed class Tiny : Module
    {
        public Linear A { get; }
        public LayerNorm N { get; }
        public Linear B { get; }
        public Tiny(int seed)
        {
            var rng = new Random(seed);
            A = Register("a", new Linear(6, 8, rng: rng));
            N = Register("n", new LayerNorm(8));
            B = Register("b", new Linear(8, 1, rng: rng));
        }
        public Tensor Forward(Tensor x) => B.Forward(N.Forward(A.Forward(x)).Gelu());
    }

    private sealed record Run(Tiny Model, AdamW Opt, Ema Ema, LrSchedule Sched, Rng Rng)
    {
        public static Run Create() => Create(new Tiny(3));
        private static Run Create(Tiny m) => new(m, new AdamW(m.Parameters(), 1e-2, weightDecay: 0.01), new Ema(m.Parameters(), 0.9),
            new LrSchedule("cosine_with_minimum", 1e-2, 2, 20), new Rng(42));

        public TrainingState State => new()
        {
            Modules = new Dictionary<string, Module> { ["model"] = Model },
            Optimizers = new Dictionary<string, AdamW> { ["model"] = Opt },
            Emas = new Dictionary<string, Ema> { ["model"] = Ema },
            Schedules = new Dictionary<string, LrSchedule> { ["model"] = Sched },
            Rngs = new Dictionary<string, Rng> { ["model"] = Rng },
        };

        public float Step()
        {
            using var scope = TensorScope.Begin();
            var x = Tensor.FromArray(Enumerable.Range(0, 4 * 6).Select(_ => (float)Rng.NextGaussian()).ToArray(), 4, 6);
            Opt.LearningRate = Sched.CurrentLearningRate;
            var loss = Model.Forward(x).Square().Mean();
            loss.Backward();
            GradClip.ClipGradNorm(Model.Parameters(), 1f);
            Opt.Step();
            Opt.ZeroGrad();
            Sched.Advance();
            Ema.Step(Model.Parameters().ToList());
            return loss.Item();
        }
    }

    [Test]
    public void ResumedRunContinuesExactlyLikeTheUninterruptedOne()
    {
        var reference = Run.Create();
        var expected = Enumerable.Range(0, 8).Select(_ => reference.Step()).ToArray();

        var dir = Directory.CreateTempSubdirectory("maskbit-ckpt").FullName;
        var first = Run.Create();
        for (int i = 0; i < 5; i++) first.Step();
        var state = first.State;
        state.Step = 5;
        state.ConfigYaml = "training:\n    seed: 42\n";
        state.Data = new DataPosition(0, 5);
        TrainingCheckpoint.Save(Path.Combine(dir, "ckpt.safetensors"), state);

        var resumed = Run.Create();
        for (int i = 0; i < 2; i++) resumed.Step();              // diverge first: the restore must overwrite everything
        var restored = resumed.State;
        TrainingCheckpoint.Restore(Path.Combine(dir, "ckpt.safetensors"), restored);
        Assert.That(restored.Step, Is.EqualTo(5));
        Assert.That(restored.Data, Is.EqualTo(new DataPosition(0, 5)));
        Assert.That(restored.ConfigYaml, Does.Contain("seed: 42"));
        var continued = Enumerable.Range(0, 3).Select(_ => resumed.Step()).ToArray();
        Assert.That(continued, Is.EqualTo(expected[5..]), "losses after resume equal the uninterrupted run bit for bit");
        Assert.That(resumed.Ema.Shadow[0].ToArray(), Is.EqualTo(reference.Ema.Shadow[0].ToArray()));
    }

    /// <summary>A checkpoint as the first format revision wrote it: EMA by parameter index, the data position and
    /// the schedule's step as extra.* strings, one "rng".</summary>
    internal static void RewriteAsFirstRevision(string path, Module model, string part)
    {
        var sd = SafeTensors.Load(path);
        var names = model.NamedParameters().Select(p => p.Name).ToList();
        var records = sd.Select(r => r.Name.StartsWith($"ema.{part}.", StringComparison.Ordinal)
            ? new TensorRecord($"ema.{part}.{names.IndexOf(r.Name[$"ema.{part}.".Length..])}", r.DType, r.Shape, r.Data.ToArray())
            : r).ToList();
        var renamed = new Dictionary<string, string>
        {
            ["data.epoch"] = "extra.data_epoch", ["data.batch"] = "extra.data_batch", [$"schedule.{part}.step"] = "extra.scheduler_step",
            ["schedule.discriminator.step"] = "extra.discriminator_scheduler_step", [$"rng.{part}"] = "rng",
        };
        var meta = sd.Metadata.Select(kv => KeyValuePair.Create(renamed.GetValueOrDefault(kv.Key, kv.Key), kv.Value?.ToString() ?? "")).ToList();
        SafeTensors.Save(path, records, meta);
    }

    [Test]
    public void FirstRevisionCheckpointsStillRestoreAndLoad()
    {
        var reference = Run.Create();
        var expected = Enumerable.Range(0, 8).Select(_ => reference.Step()).ToArray();

        var dir = Directory.CreateTempSubdirectory("maskbit-ckpt").FullName;
        string path = Path.Combine(dir, "old.safetensors");
        var first = Run.Create();
        for (int i = 0; i < 5; i++) first.Step();
        var state = first.State;
        state.Step = 5;
        state.Data = new DataPosition(1, 2);
        TrainingCheckpoint.Save(path, state);
        RewriteAsFirstRevision(path, first.Model, "model");
        Assert.That(SafeTensors.Load(path).Names, Does.Contain("ema.model.0"));

        var resumed = Run.Create();
        var restored = resumed.State;
        TrainingCheckpoint.Restore(path, restored);
        Assert.That((restored.Step, restored.Data, resumed.Sched.Step), Is.EqualTo((5L, new DataPosition(1, 2), 5L)));
        Assert.That(Enumerable.Range(0, 3).Select(_ => resumed.Step()).ToArray(), Is.EqualTo(expected[5..]));

        var model = new Tiny(99);
        var loaded = WeightsLoader.Load(model, path, new WeightsLayout(["model"]));
        Assert.That(loaded.Source, Is.EqualTo(WeightsSource.TrainingEma));
        Assert.That(model.Parameters().First().ToArray(), Is.EqualTo(first.Ema.Shadow[0].ToArray()), "index-keyed EMA weights load by position");
    }

    [Test]
    public void MismatchedCheckpointIsRejectedWithFileAndTensorNames()
    {
        var dir = Directory.CreateTempSubdirectory("maskbit-ckpt").FullName;
        var path = Path.Combine(dir, "ckpt.safetensors");
        var run = Run.Create();
        run.Step();
        TrainingCheckpoint.Save(path, run.State);
        var other = new Linear(3, 3);
        var e = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Restore(path, new TrainingState { Modules = new Dictionary<string, Module> { ["model"] = other } }))!;
        Assert.That(e.Message, Does.Contain(path));
        Assert.That(e.Message, Does.Contain("'weight'"));
    }

    [Test]
    public void RngStateRoundTrips()
    {
        var a = new Rng(7);
        a.NextUInt64();
        var b = new Rng(1) { State = a.State };
        Assert.That(b.NextUInt64(), Is.EqualTo(a.NextUInt64()));
        Assert.Throws<FormatException>(() => b.State = "zz");
    }
}
