using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Autograd.Optim;
using MaskBit.Cli;
using MaskBit.Models.Config;
using MaskBit.Models.Data;
using MaskBit.Models.Generator;
using MaskBit.Models.Interop;
using MaskBit.Models.Metrics;
using MaskBit.Models.Tokenizer;
using MaskBit.Models.Training;
using MaskBit.Tests.Data;

namespace MaskBit.Tests.Training;

/// <summary>The reference's training recipe in the one training loop, on the tiny generator of
/// <see cref="GeneratorTrainerTests"/>: gradient accumulation, resume options, init_checkpoint, the epoch length of
/// max_train_examples, per-parameter gradient norms, held-out evaluation, the token cache following the config's
/// augmentation, and TensorBoard event files read back (framing, CRC-32C, Event/Summary fields).</summary>
[NonParallelizable]
public class TrainingRecipeTests
{
    private TempDirectory _dir = null!;
    private string _config = "", _tokenizer = "";

    [SetUp]
    public void SetUp()
    {
        _dir = new TempDirectory();
        _config = _dir.File("tiny.yaml");
        File.WriteAllText(_config, GeneratorTrainerTests.TinyConfig);
        _tokenizer = _dir.File("tokenizer.safetensors");
        var tokenizer = new ConvVQModel(TokenizerConfig.From(MaskBitConfig.Load(_config)), seed: 11);
        SafeTensors.Save(_tokenizer, tokenizer.StateDict().Select(kv => GeneratorTrainerTests.Record(kv.Name, kv.Tensor)).ToList());
    }

    [TearDown]
    public void TearDown() => _dir.Dispose();

    private GeneratorTrainer Trainer(string run, IEnumerable<string> overrides, TextWriter? log = null, bool? cache = true, int samples = 32,
        IFeatureExtractor? inception = null, GaussianStatistics? fidReference = null) =>
        new(MaskBitConfig.Load(_config, overrides), new GeneratorTrainerOptions
        {
            OutputDir = run, TokenizerPath = _tokenizer, Dataset = GeneratorTrainerTests.First(GeneratorTrainerTests.Data(), samples),
            CacheTokens = cache, DataWorkers = 1, Log = log ?? TextWriter.Null, Inception = inception, FidReference = fidReference,
        });

    private static List<JsonElement> Metrics(string run) =>
        File.ReadAllLines(new RunFolder(run).MetricsPath).Select(l => JsonDocument.Parse(l).RootElement).ToList();

    // ---- gradient accumulation ---------------------------------------------------------------------------------

    [Test]
    public void AccumulatedStepEqualsTheMeanOfItsMicroBatchGradients()
    {
        var overrides = new[] { "training.gradient_accumulation_steps=2", "training.max_grad_norm=0", "training.use_ema=false" };
        var config = MaskBitConfig.Load(_config, overrides);
        var accumulated = MlmStep.From(config);
        var manual = MlmStep.From(config, batchSize: null);
        var batches = Enumerable.Range(0, 2).Select(b => Batch(8, seed: b)).ToArray();
        int next = 0;
        var values = accumulated.Run(() => batches[next++], stepsDone: 0);
        Assert.That(next, Is.EqualTo(2), "two micro-batches per optimisation step");

        // The same draws (one shared generator), each loss halved, then one AdamW step.
        var random = new RngRandomSource(manual.Rng);
        double lossSum = 0;
        foreach (var batch in batches)
        {
            var (loss, _) = manual.Loss(batch, random);
            lossSum += loss.Item();
            loss.MulScalar(0.5f).Backward();
        }
        manual.Optimizer.Step();
        Assert.That(values["train/mlm_loss"], Is.EqualTo(lossSum / 2).Within(1e-6));
        var a = accumulated.Generator.Parameters().ToList();
        var b = manual.Generator.Parameters().ToList();
        for (int i = 0; i < a.Count; i++) Assert.That(a[i].ToArray(), Is.EqualTo(b[i].ToArray()), $"parameter {i}");
        Assert.That(accumulated.Schedule.Step, Is.EqualTo(1), "the schedule counts optimisation steps");
    }

    private static TokenBatch Batch(int count, int seed)
    {
        var random = new Random(seed);
        return new TokenBatch(Enumerable.Range(0, count * 64).Select(_ => random.Next(256)).ToArray(),
            Enumerable.Range(0, count).Select(_ => random.Next(10)).ToArray(), 0, seed);
    }

    [Test]
    public void AccumulatingTrainerTakesMicroBatchesAndStepsTheScheduleOncePerStep()
    {
        string run = _dir.File("accumulate");
        var trainer = Trainer(run, ["training.gradient_accumulation_steps=2", "training.max_train_steps=3"]);
        trainer.Run();
        Assert.That(trainer.SamplesPerStep, Is.EqualTo(16));
        Assert.That(trainer.State.Data, Is.EqualTo(new DataPosition(1, 2)), "6 batches of 8 from 32 samples: 4 in epoch 0, 2 in epoch 1");
        var schedule = trainer.Settings.Schedule.Create(trainer.Settings.Optimizer.LearningRate, trainer.Settings.MaxTrainSteps);
        var rates = Metrics(run).Select(m => m.GetProperty("lr").GetDouble()).ToArray();
        Assert.That(rates, Is.EqualTo(new[] { schedule.LearningRateAt(0), schedule.LearningRateAt(1), schedule.LearningRateAt(2) }).Within(1e-12));
    }

    // ---- resume, init_checkpoint, epoch length, gradient norms ------------------------------------------------

    [TestCase(true, true)]
    [TestCase(false, true)]
    [TestCase(true, false)]
    public void ResumeRestoresTheOptimizerAndScheduleUnlessTheConfigSaysNot(bool resumeSchedule, bool resumeOptimizer)
    {
        string run = _dir.File("resume");
        Trainer(run, ["training.max_train_steps=2"]).Run();
        var log = new StringWriter();
        var trainer = Trainer(run, ["training.max_train_steps=3", $"experiment.resume_lr_scheduler={resumeSchedule}",
            $"experiment.dont_resume_optimizer={!resumeOptimizer}"], log);
        trainer.Run();
        var settings = trainer.Settings;
        var schedule = settings.Schedule.Create(settings.Optimizer.LearningRate, settings.MaxTrainSteps);
        var lastLine = Metrics(run)[^1];
        Assert.That(lastLine.GetProperty("step").GetInt64(), Is.EqualTo(3));
        // The third step runs at the schedule's step 2, or at step 0 (warm-up: rate 0) when the schedule restarts.
        Assert.That(lastLine.GetProperty("lr").GetDouble(), Is.EqualTo(schedule.LearningRateAt(resumeSchedule ? 2 : 0)).Within(1e-12));
        var first = trainer.Step.Optimizer.Parameters[0];
        Assert.That(trainer.Step.Optimizer.StepOf(first), Is.EqualTo(resumeOptimizer ? 3 : 1));
        Assert.That(log.ToString().Contains("dont_resume_optimizer"), Is.EqualTo(!resumeOptimizer));
        Assert.That(log.ToString().Contains("resume_lr_scheduler=false"), Is.EqualTo(!resumeSchedule));
    }

    [Test]
    public void InitCheckpointRestoresATrainingCheckpointWholeAndLoadsPlainWeights()
    {
        string source = _dir.File("source");
        var trained = Trainer(source, ["training.max_train_steps=2"]);
        trained.Run();

        string fromCheckpoint = _dir.File("from-checkpoint"), log = "";
        var writer = new StringWriter();
        var continued = Trainer(fromCheckpoint, ["training.max_train_steps=3", $"experiment.init_checkpoint={new RunFolder(source).CheckpointPath(2)}"], writer);
        continued.Run();
        log = writer.ToString();
        Assert.That(log, Does.Contain("initialised from the training checkpoint"));
        Assert.That(Metrics(fromCheckpoint).Select(m => m.GetProperty("step").GetInt64()), Is.EqualTo(new long[] { 3 }), "continues at the checkpoint's step");
        Assert.That(continued.Step.Optimizer.StepOf(continued.Step.Optimizer.Parameters[0]), Is.EqualTo(3), "with the optimizer's moments");

        string fromWeights = _dir.File("from-weights");
        writer = new StringWriter();
        var fresh = Trainer(fromWeights, ["training.max_train_steps=1", $"experiment.init_checkpoint={trained.WeightsPath}"], writer);
        fresh.Start(default, resumed: false);
        Assert.That(writer.ToString(), Does.Contain("initialised the generator from"));
        var expected = SafeTensors.Load(trained.WeightsPath);
        foreach (var (name, tensor) in fresh.Generator.NamedParameters())
            Assert.That(tensor.ToArray(), Is.EqualTo(expected[name].ToTensor().ToArray()), name);

        // Unlike the reference, a missing file is refused (issue 19: a typo would silently start from scratch).
        var missing = Assert.Throws<ConfigException>(() =>
            Trainer(_dir.File("missing"), ["training.max_train_steps=1", $"experiment.init_checkpoint={_dir.File("none.safetensors")}"], new StringWriter()).Run());
        Assert.That(missing!.Message, Does.Contain("which does not exist"));
    }

    [Test]
    public void MaxTrainExamplesSetsTheEpochLengthWithoutCuttingTheData()
    {
        // The reference's SimpleImagenet: ⌈examples / (batch · workers)⌉ · workers batches per epoch.
        Assert.That(LoopSettings.EpochSteps(1_281_167, 64, 12, 1), Is.EqualTo(20_028));
        Assert.That(LoopSettings.EpochSteps(16, 8, 2, 1), Is.EqualTo(2));
        Assert.That(LoopSettings.EpochSteps(16, 8, 2, 2), Is.EqualTo(1));

        string run = _dir.File("epochs");
        var trainer = Trainer(run, ["training.max_train_steps=3", "experiment.max_train_examples=16", "dataset.params.num_workers_per_gpu=2"]);
        trainer.Run();
        Assert.That(Metrics(run).Select(m => m.GetProperty("epoch").GetInt64()), Is.EqualTo(new long[] { 0, 1, 1 }));
        Assert.That(trainer.State.Data, Is.EqualTo(new DataPosition(0, 3)), "the 32 samples are all in the data's epoch");
    }

    [Test]
    public void PerParameterGradientNormsAreLoggedEveryLogGradNormEverySteps()
    {
        string run = _dir.File("norms");
        var trainer = Trainer(run, ["training.max_train_steps=2", "experiment.log_grad_norm_every=2"]);
        trainer.Run();
        var lines = Metrics(run);
        Assert.That(lines[0].EnumerateObject().Any(p => p.Name.StartsWith("grad_norm/")), Is.False);
        var norms = lines[1].EnumerateObject().Where(p => p.Name.StartsWith("grad_norm/")).ToDictionary(p => p.Name[10..], p => p.Value.GetDouble());
        var names = trainer.Generator.NamedParameters().Select(p => p.Name).ToList();
        Assert.That(norms.Keys, Is.EquivalentTo(names));
        Assert.That(norms.Values, Has.All.GreaterThanOrEqualTo(0).And.All.Matches<double>(double.IsFinite));
    }

    [Test]
    public void GradientNormsDivideTheL2NormByTheElementCount()
    {
        var module = new MaskBit.Autograd.Nn.Linear(2, 3);
        var (weight, bias) = (module.Weight, module.Bias!);
        weight.Grad = Tensor.FromArray(new float[] { 3, 4, 0, 0, 0, 0 }, [3, 2]);
        bias.Grad = Tensor.FromArray(new float[] { 0, 6, 8 }, [3]);
        var norms = GradientNorms.PerParameter(module);
        Assert.That(norms["grad_norm/weight"], Is.EqualTo(5.0 / 6).Within(1e-6));
        Assert.That(norms["grad_norm/bias"], Is.EqualTo(10.0 / 3).Within(1e-6));
    }

    // ---- evaluation and augmentation ----------------------------------------------------------------------------

    [Test]
    public void EvalEveryScoresHeldOutTokensTheSameWayEachTime()
    {
        string images = _dir.File("eval");
        for (int i = 0; i < 6; i++)
            ImageIO.Write(_dir.File("eval", $"class{i % 3}", $"img{i}.png"), TestImages.Gradient(16, 16, 3, phase: 29 * i));
        string run = _dir.File("evaluated");
        var inception = new ChannelMeans();
        var reference = new GaussianStatistics(new double[3], [1, 0, 0, 0, 1, 0, 0, 0, 1]);
        var trainer = Trainer(run, ["training.max_train_steps=2", "experiment.eval_every=1", $"dataset.params.eval_shards_path_or_url={images}"],
            inception: inception, fidReference: reference);
        trainer.Run();
        var evals = Metrics(run).Where(m => m.TryGetProperty("eval/mlm_loss", out _)).ToList();
        Assert.That(evals, Has.Count.EqualTo(2));
        Assert.That(inception.Images, Is.EqualTo(2 * 6), "one sample per held-out image at each evaluation");
        foreach (var e in evals)
            foreach (var key in new[] { "eval/mlm_loss", "eval/masked_token_loss", "eval/correct_tokens", "eval/masked_correct_tokens", "eval/InceptionScore", "eval/gFID" })
                Assert.That(double.IsFinite(e.GetProperty(key).GetDouble()), key);
        // The same weights score the same: the masks are drawn from a fixed seed.
        var first = trainer.Evaluate()!;
        Assert.That(trainer.Evaluate()!["mlm_loss"], Is.EqualTo(first["mlm_loss"]));
        Assert.That(trainer.Generator.Training, Is.True, "back in train mode");
    }

    /// <summary>A stand-in for the FID InceptionV3: the channel means as features and as logits.</summary>
    private sealed class ChannelMeans : IFeatureExtractor
    {
        public int Images { get; private set; }
        public int FeatureDim => 3;
        public int LogitsDim => 3;

        public InceptionOutputs Extract(ReadOnlySpan<byte> images, int count, int height, int width)
        {
            var features = new double[count * 3];
            for (int i = 0; i < count * 3; i++)
            {
                double sum = 0;
                foreach (byte b in images.Slice(i * height * width, height * width)) sum += b;
                features[i] = sum / (height * width * 255.0);
            }
            Images += count;
            return new InceptionOutputs(count, features, (double[])features.Clone());
        }
    }

    [Test]
    public void AugmentingConfigTokenizesOnTheFlyUnlessTheCacheIsAskedFor()
    {
        string[] augment = ["training.max_train_steps=1", "dataset.preprocessing.use_random_crop=true", "dataset.preprocessing.min_scale=0.8"];
        string onTheFly = _dir.File("on-the-fly");
        var log = new StringWriter();
        Trainer(onTheFly, augment, log, cache: null, samples: 8).Run();
        Assert.That(File.Exists(Path.Combine(onTheFly, CachedTokenBatches.FileName)), Is.False);
        Assert.That(log.ToString(), Does.Not.Contain("token cache"));

        string cached = _dir.File("cached");
        log = new StringWriter();
        Trainer(cached, augment, log, cache: true, samples: 8).Run();
        Assert.That(File.Exists(Path.Combine(cached, CachedTokenBatches.FileName)));
        Assert.That(log.ToString(), Does.Contain("random crop and flip").And.Contain("not applied"));

        string plain = _dir.File("plain");
        Trainer(plain, ["training.max_train_steps=1"], cache: null, samples: 8).Run();
        Assert.That(File.Exists(Path.Combine(plain, CachedTokenBatches.FileName)), "a config that does not augment caches by default");
    }

    // ---- TensorBoard ---------------------------------------------------------------------------------------------

    [Test]
    public void Crc32CMatchesTheCastagnoliCheckValue() =>
        Assert.That(TensorBoardLog.Crc32C("123456789"u8), Is.EqualTo(0xE3069283u));

    [Test]
    public void TensorBoardLoggerWritesReadableScalarAndImageEvents()
    {
        string run = _dir.File("tensorboard");
        Trainer(run, ["training.max_train_steps=2", "experiment.generate_every=2", "experiment.logger=tensorboard"]).Run();
        var files = Directory.GetFiles(new RunFolder(run).TensorBoardDir, "events.out.tfevents.*");
        Assert.That(files, Has.Length.EqualTo(1));
        var events = ReadEvents(files[0]);
        Assert.That(events[0].FileVersion, Is.EqualTo("brain.Event:2"));
        var scalars = events.SelectMany(e => e.Scalars.Select(s => (e.Step, s.Tag, s.Value))).ToList();
        var metrics = Metrics(run);
        foreach (var (tag, step) in new[] { ("train/mlm_loss", 1L), ("lr", 2L), ("grad_norm", 2L) })
        {
            float logged = (float)metrics[(int)step - 1].GetProperty(tag).GetDouble();
            Assert.That(scalars.Single(s => s.Tag == tag && s.Step == step).Value, Is.EqualTo(logged), tag);
        }
        var image = events.SelectMany(e => e.Images.Select(i => (e.Step, i))).Single();
        Assert.That(image.Step, Is.EqualTo(2));
        Assert.That(image.i.Tag, Is.EqualTo("Train Generated"));
        var png = File.ReadAllBytes(new RunFolder(run).SamplesPath(2));
        Assert.That(image.i.Png, Is.EqualTo(png));
        var grid = ImageIO.Read(new RunFolder(run).SamplesPath(2));
        Assert.That((image.i.Height, image.i.Width), Is.EqualTo((grid.Height, grid.Width)));

        // A resumed run starts its file with SessionLog.START at the resume step (TensorBoard drops later events).
        Trainer(run, ["training.max_train_steps=3", "experiment.logger=tensorboard"]).Run();
        var second = Directory.GetFiles(new RunFolder(run).TensorBoardDir, "events.out.tfevents.*").Single(f => f != files[0]);
        var resumed = ReadEvents(second);
        Assert.That((resumed[1].Step, resumed[1].SessionStart), Is.EqualTo((2L, true)));
    }

    [Test]
    public void WandbLoggerIsRefusedWithExitCode2()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(["train", "generator", "--config", _config, "--tokenizer", _tokenizer, "--out", _dir.File("wandb"), "experiment.logger=wandb"], stdout, stderr);
        Assert.That(code, Is.EqualTo(Program.ExitUsage));
        Assert.That(stderr.ToString(), Does.Contain("experiment.logger 'wandb' is not supported"));
        Assert.That(stderr.ToString().Trim().Split('\n'), Has.Length.EqualTo(1));
    }

    private sealed record ScalarValue(string Tag, float Value);
    private sealed record ImageValue(string Tag, int Height, int Width, byte[] Png);
    private sealed record Event(long Step, string? FileVersion, bool SessionStart, List<ScalarValue> Scalars, List<ImageValue> Images);

    /// <summary>Reads a TFRecord file, checking both masked CRC-32Cs of every record, and decodes the Event fields
    /// the writer uses.</summary>
    private static List<Event> ReadEvents(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var events = new List<Event>();
        for (int at = 0; at < bytes.Length;)
        {
            var header = bytes.AsSpan(at, 12);
            int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(header);
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(header[8..]), Is.EqualTo(TensorBoardLog.MaskedCrc32C(header[..8])), "length CRC");
            var data = bytes.AsSpan(at + 12, length);
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at + 12 + length, 4)), Is.EqualTo(TensorBoardLog.MaskedCrc32C(data)), "data CRC");
            events.Add(DecodeEvent(data.ToArray()));
            at += 12 + length + 4;
        }
        return events;
    }

    private static Event DecodeEvent(byte[] data)
    {
        long step = 0;
        string? version = null;
        bool start = false;
        var scalars = new List<ScalarValue>();
        var images = new List<ImageValue>();
        foreach (var (field, value) in Fields(data))
            switch (field)
            {
                case 2: step = (long)value.Varint; break;
                case 3: version = Encoding.UTF8.GetString(value.Bytes!); break;
                case 6: start = Fields(value.Bytes!).Any(f => f.Field == 1 && f.Value.Varint == 1); break;
                case 5:
                    foreach (var (_, v) in Fields(value.Bytes!))
                    {
                        var parts = Fields(v.Bytes!).ToList();
                        string tag = Encoding.UTF8.GetString(parts.Single(p => p.Field == 1).Value.Bytes!);
                        if (parts.FirstOrDefault(p => p.Field == 2) is { Value.Fixed32: { } f }) scalars.Add(new ScalarValue(tag, BitConverter.Int32BitsToSingle((int)f)));
                        if (parts.FirstOrDefault(p => p.Field == 4) is { Value.Bytes: { } img })
                        {
                            var image = Fields(img).ToDictionary(p => p.Field, p => p.Value);
                            images.Add(new ImageValue(tag, (int)image[1].Varint, (int)image[2].Varint, image[4].Bytes!));
                        }
                    }
                    break;
            }
        return new Event(step, version, start, scalars, images);
    }

    private readonly record struct WireValue(ulong Varint, uint? Fixed32, byte[]? Bytes);

    private static IEnumerable<(int Field, WireValue Value)> Fields(byte[] data)
    {
        int at = 0;
        ulong ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; ; shift += 7)
            {
                byte b = data[at++];
                result |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return result;
            }
        }
        while (at < data.Length)
        {
            ulong key = ReadVarint();
            int field = (int)(key >> 3);
            switch ((int)(key & 7))
            {
                case 0: yield return (field, new WireValue(ReadVarint(), null, null)); break;
                case 1: at += 8; break;   // wall_time
                case 2:
                    int length = (int)ReadVarint();
                    yield return (field, new WireValue(0, null, data.AsSpan(at, length).ToArray()));
                    at += length;
                    break;
                case 5: yield return (field, new WireValue(0, BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(at, 4)), null)); at += 4; break;
                default: throw new InvalidDataException($"wire type {key & 7}");
            }
        }
    }
}
