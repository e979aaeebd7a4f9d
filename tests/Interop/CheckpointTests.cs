using System.Diagnostics;
using System.Text.Json;
using MaskBit.Kernels;
using MaskBit.Models.Interop;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Interop;

[TestFixture]
public class CheckpointTests
{
    // ---- the golden checkpoint_formats case -------------------------------------------------------------------

    /// <summary>Golden runner: every file of the case loads to exactly the values of expected.npz.</summary>
    [GoldenKind("checkpoint_formats")]
    public static void Run(GoldenCase c)
    {
        var expected = Npy.ReadNpz(Path.Combine(c.Dir, "expected.npz"));
        foreach (var file in c.Json.GetProperty("files").EnumerateObject())
        {
            string path = Path.Combine(c.Dir, file.Name);
            if (!File.Exists(path))
            {
                Assert.That(file.Value.GetProperty("required").GetBoolean(), Is.False, $"required file {file.Name} is missing");
                continue;
            }
            CheckFile(c.Json, expected, path);
        }
    }

    public static IEnumerable<string> FixtureFiles()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TorchFiles.FixtureDir, "case.json")));
        return doc.RootElement.GetProperty("files").EnumerateObject().Select(f => f.Name).ToList();
    }

    [TestCaseSource(nameof(FixtureFiles))]
    public void FixtureFileLoadsExactly(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TorchFiles.FixtureDir, "case.json")));
        CheckFile(doc.RootElement, Npy.ReadNpz(Path.Combine(TorchFiles.FixtureDir, "expected.npz")), Path.Combine(TorchFiles.FixtureDir, file));
    }

    /// <summary>Names (in file order), dtypes, shapes, storage layout, sharing, values and nested extras of one file.</summary>
    private static void CheckFile(JsonElement caseJson, Dictionary<string, NpyArray> expected, string path)
    {
        string file = Path.GetFileName(path);
        var sd = TorchCheckpoint.Load(path);
        var tensors = caseJson.GetProperty("tensors");
        var allNames = tensors.EnumerateObject().Select(p => p.Name).ToList();
        var names = file.StartsWith("dtypes_and_views") ? allNames.Where(n => !n.StartsWith("extra.")).ToList()
            : file == "extra_dtypes.bin" ? allNames.Where(n => n.StartsWith("extra.")).ToList()
            : caseJson.GetProperty("base_names").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.That(sd.Names, Is.EqualTo(names), $"{file}: tensor names in file order");

        foreach (var t in sd)
        {
            var spec = tensors.GetProperty(t.Name);
            string where = $"{file}:{t.Name}";
            Assert.That(t.DType.Name(), Is.EqualTo(spec.GetProperty("dtype").GetString()), where);
            Assert.That(t.Shape, Is.EqualTo(spec.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray()), where);
            Assert.That(t.Origin, Is.Not.Null, where);
            Assert.That(t.Origin!.StorageOffset, Is.EqualTo(spec.GetProperty("storage_offset").GetInt64()), where);
            Assert.That(t.Origin.Stride, Is.EqualTo(spec.GetProperty("stride").EnumerateArray().Select(e => e.GetInt64()).ToArray()), where);
            Assert.That(t.Origin.StorageNumel, Is.EqualTo(spec.GetProperty("storage_numel").GetInt64()), where);
            var sharing = sd.Where(o => o.Origin!.StorageKey == t.Origin.StorageKey && o.Name != t.Name).Select(o => o.Name);
            Assert.That(sharing, Is.EquivalentTo(spec.GetProperty("shares_storage_with").EnumerateArray().Select(e => e.GetString())), $"{where}: storage sharing");

            var want = expected[t.Name];
            Assert.That(want.Shape, Is.EqualTo(t.Shape), where);
            if (want.Type == NpyType.Float32)
                Assert.That(t.ToFloat32().Select(BitConverter.SingleToInt32Bits), Is.EqualTo(want.ToFloat32().Select(BitConverter.SingleToInt32Bits)), where);
            else if (want.Type == NpyType.Bool)
                Assert.That(t.Data, Is.EqualTo(want.Data), where);
            else
                Assert.That(t.ToInt64(), Is.EqualTo(want.ToInt64()), where);
        }

        if (caseJson.GetProperty("nested").TryGetProperty(file, out var nested))
        {
            var want = TorchFiles.Plain(nested.GetProperty("extras"));
            var got = TorchFiles.Normalize(sd.Metadata.ToList());
            Assert.That(StateDict.FormatValue(got), Is.EqualTo(StateDict.FormatValue(want)), $"{file}: nested extras");
        }
        else Assert.That(sd.Metadata, Is.Empty, $"{file}: metadata");
    }

    [Test]
    public void KeepVarsMarksParametersButNotBuffers()
    {
        var sd = TorchCheckpoint.Load(Path.Combine(TorchFiles.FixtureDir, "keep_vars_parameters.bin"));
        Assert.That(sd["linear.weight"].Origin!.IsParameter, Is.True);
        Assert.That(sd["bn.running_mean"].Origin!.IsParameter, Is.False);
        Assert.That(TorchCheckpoint.Load(Path.Combine(TorchFiles.FixtureDir, "model.bin"))["linear.weight"].Origin!.IsParameter, Is.False);
    }

    [Test]
    public void EngineTensorsKeepValuesAndRefuseIntegersThatDoNotFit()
    {
        var sd = TorchCheckpoint.Load(Path.Combine(TorchFiles.FixtureDir, "dtypes_and_views.bin"));
        var byName = sd.Where(t => t.Name != "int64.buffer").Select(t => (t, tensor: t.ToTensor())).ToList();
        var weight = byName.Single(x => x.t.Name == "shared.transposed");
        Assert.That(weight.tensor.DType, Is.EqualTo(DType.Float32));
        Assert.That(weight.tensor.ToArray(), Is.EqualTo(weight.t.ToFloat32()));
        var bits = byName.Single(x => x.t.Name == "bits_to_indices");
        Assert.That(bits.tensor.DType, Is.EqualTo(DType.Int32));
        Assert.That(bits.tensor.ToIntArray().Select(v => (long)v), Is.EqualTo(bits.t.ToInt64()));
        Assert.That(byName.Single(x => x.t.Name == "scalar.float").tensor.Shape, Is.Empty);

        var ex = Assert.Throws<OverflowException>(() => sd["int64.buffer"].ToTensor());
        Assert.That(ex!.Message, Does.Contain("int64.buffer"));
    }

    [Test]
    public void EveryGoldenModelBinLoads()
    {
        var golden = TorchFiles.SharedGoldenDir();
        if (golden == null) Assert.Ignore("no shared golden folder on this machine");
        var files = Directory.GetFiles(golden!, "model.bin", SearchOption.AllDirectories);
        Assert.That(files, Is.Not.Empty);
        foreach (var f in files)
        {
            var sd = CheckpointFile.Load(f);
            Assert.That(sd.Count, Is.GreaterThan(0), f);
            foreach (var (_, tensor) in sd.ToTensors()) Assert.That(tensor.Numel, Is.GreaterThanOrEqualTo(0));
        }
    }

    // ---- malformed and hostile files --------------------------------------------------------------------------

    [OneTimeSetUp]
    public void MakeTempDir() => TorchFiles.EnsureTempDir();

    private static CheckpointFormatException LoadFails(string path)
    {
        var ex = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.Load(path));
        Assert.That(ex!.Message, Does.StartWith(path + ": "));
        Assert.That(ex.FilePath, Is.EqualTo(path));
        return ex;
    }

    private static string WriteBytes(string name, byte[] bytes)
    {
        string path = TorchFiles.TempFile(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Test]
    public void TruncatedZipIsReported()
    {
        var bytes = File.ReadAllBytes(Path.Combine(TorchFiles.FixtureDir, "model.bin"));
        Assert.That(LoadFails(WriteBytes("truncated.bin", bytes[..1000])).Problem, Does.Contain("zip archive"));
    }

    [Test]
    public void WrongMagicIsReported()
    {
        var bytes = File.ReadAllBytes(Path.Combine(TorchFiles.FixtureDir, "legacy_format.bin"));
        bytes[6] ^= 0xff;   // inside the pickled magic number
        string path = WriteBytes("bad_magic.bin", bytes);
        Assert.That(LoadFails(path).Problem, Does.Contain("not a PyTorch checkpoint"));
        var ex = Assert.Throws<CheckpointFormatException>(() => TorchCheckpoint.LoadLegacy(path));
        Assert.That(ex!.Problem, Does.Contain("bad legacy magic number"));
    }

    [Test]
    public void TruncatedLegacyFileIsReported()
    {
        var bytes = File.ReadAllBytes(Path.Combine(TorchFiles.FixtureDir, "legacy_format.bin"));
        Assert.That(LoadFails(WriteBytes("legacy_truncated.bin", bytes[..^5])).Problem, Does.Contain("file ends inside storage"));
    }

    public static IEnumerable<TestCaseData> HostilePickles()
    {
        yield return new TestCaseData(new PickleBytes().Global("os", "system").Str("echo pwned").Op(0x85).Op('R').Stop(), "os.system")
            .SetName("ForbiddenGlobal(os.system via GLOBAL)");
        // builtins.eval through STACK_GLOBAL with memoised strings, as protocol 4 writes it.
        yield return new TestCaseData(new PickleBytes(4).Op(0x8c).Raw(new byte[] { 8 }).Raw("builtins"u8.ToArray()).Op(0x94)
                .Op(0x8c).Raw(new byte[] { 4 }).Raw("eval"u8.ToArray()).Op(0x94).Op('h').Raw(new byte[] { 0 }).Op('h').Raw(new byte[] { 1 })
                .Op(0x93).Str("1+1").Op(0x85).Op('R').Stop(), "builtins.eval")
            .SetName("ForbiddenGlobal(builtins.eval via STACK_GLOBAL)");
        yield return new TestCaseData(new PickleBytes().Op('(').Str("id").Op('i').Raw("subprocess\ncheck_output\n"u8.ToArray()).Stop(), "subprocess.check_output")
            .SetName("ForbiddenGlobal(subprocess via INST)");
        // A valid state dict with one extra entry naming a global the library would happily build a ClassDict for.
        yield return new TestCaseData(new PickleBytes().Global("collections", "OrderedDict").Op(')').Op('R').Op('(')
                .Str("w").Tensor("FloatStorage", "0", 4, 0, new long[] { 4 }, new long[] { 1 })
                .Str("extra").Global("__builtin__", "set").Op(']').Op(0x85).Op('R').Op('u').Stop(), "__builtin__.set")
            .SetName("ForbiddenGlobal(builtin set inside a state dict)");
    }

    [TestCaseSource(nameof(HostilePickles))]
    public void ForbiddenGlobalIsRefusedByName(byte[] pickle, string global)
    {
        string path = TorchFiles.TempFile($"hostile_{global}.bin");
        TorchFiles.WriteZip(path, pickle, ("0", new byte[16]));
        Assert.That(LoadFails(path).Problem, Does.Contain($"refusing global '{global}'"));
    }

    [TestCase(4, 0, new long[] { 4 }, new long[] { 1 }, 8, "holds 8 bytes but is declared as 4 float32 values", TestName = "StorageShorterThanDeclared")]
    [TestCase(4, 0, new long[] { 2, 3 }, new long[] { 3, 1 }, 16, "reaches element 5 of storage '0', which has only 4 elements", TestName = "StorageShorterThanItsTensor")]
    [TestCase(4, 7, new long[] { 1 }, new long[] { 1 }, 16, "reaches element 7", TestName = "OffsetOutsideTheStorage")]
    [TestCase(4, 0, new long[] { 2 }, new long[] { -1 }, 16, "negative stride", TestName = "NegativeStride")]
    [TestCase(1L << 40, 0, new long[] { 1 }, new long[] { 1 }, 16, "too large", TestName = "HugeStorageIsRefusedBeforeAllocating")]
    [TestCase(4, 0, new long[] { 1L << 33, 1L << 33 }, new long[] { 1, 1 }, 16, "invalid size", TestName = "HugeShapeIsRefused")]
    public void BadTensorLayoutIsReported(long numel, long offset, long[] size, long[] stride, int storageBytes, string problem)
    {
        string path = TorchFiles.TempFile("layout.bin");
        TorchFiles.WriteZip(path, PickleBytes.StateDict("w", numel, offset, size, stride), ("0", new byte[storageBytes]));
        Assert.That(LoadFails(path).Problem, Does.Contain(problem));
    }

    [Test]
    public void SharedListBombInMetadataIsRefused()
    {
        // 30 levels of lists that each hold the previous one twice: ~200 bytes of pickle, 2^30 leaves if expanded.
        var p = new PickleBytes().Op(']').Op('q').Raw(new byte[] { 0 }).Op('0');
        for (byte i = 0; i < 30; i++)
            p.Op('(').Op('h').Raw(new[] { i }).Op('h').Raw(new[] { i }).Op('l').Op('q').Raw(new[] { (byte)(i + 1) }).Op('0');
        var pickle = p.Op('}').Op('(').Str("model").Global("collections", "OrderedDict").Op(')').Op('R')
            .Str("bomb").Op('h').Raw(new byte[] { 30 }).Op('u').Stop();
        string path = TorchFiles.TempFile("bomb.bin");
        TorchFiles.WriteZip(path, pickle);
        Assert.That(LoadFails(path).Problem, Does.Contain("metadata expands to more than"));
    }

    [Test]
    public void StorageKeysCannotEscapeTheArchive()
    {
        string path = TorchFiles.TempFile("escape.bin");
        TorchFiles.WriteZip(path, PickleBytes.StateDict("w", 4, 0, new long[] { 4 }, new long[] { 1 }, key: "../../etc/passwd"), ("0", new byte[16]));
        Assert.That(LoadFails(path).Problem, Does.Contain("not a plain name"));
    }

    [Test]
    public void MissingStorageIsReported()
    {
        string path = TorchFiles.TempFile("missing.bin");
        TorchFiles.WriteZip(path, PickleBytes.StateDict("w", 4, 0, new long[] { 4 }, new long[] { 1 }, key: "7"), ("0", new byte[16]));
        Assert.That(LoadFails(path).Problem, Does.Contain("storage '7' is missing"));
    }

    [Test]
    public void HandBuiltStateDictLoads()
    {
        string path = TorchFiles.TempFile("good.bin");
        var values = new float[] { 1, 2, 3, 4, 5, 6 };
        TorchFiles.WriteZip(path, PickleBytes.StateDict("w", 6, 1, new long[] { 2, 2 }, new long[] { 1, 2 }),
            ("0", values.SelectMany(BitConverter.GetBytes).ToArray()));
        // storage[1 + i + 2j]: rows (2, 4), (3, 5)
        Assert.That(TorchCheckpoint.Load(path)["w"].ToFloat32(), Is.EqualTo(new float[] { 2, 4, 3, 5 }));
    }

    [Test]
    public void NotACheckpointIsReported()
    {
        Assert.That(LoadFails(WriteBytes("text.bin", "hello world, not a checkpoint"u8.ToArray())).Problem, Does.Contain("not a PyTorch checkpoint"));
        Assert.That(LoadFails(TorchFiles.TempFile("does_not_exist.bin")).Problem, Is.EqualTo("no such file"));
    }

    [Test]
    public void FuzzedCheckpointsOnlyEverFailWithTheLoadersException()
    {
        var sources = new[] { "model.bin", "legacy_format.bin" }.Select(f => File.ReadAllBytes(Path.Combine(TorchFiles.FixtureDir, f))).ToArray();
        var rng = new Random(20240611);
        string path = TorchFiles.TempFile("fuzz.bin");
        var clock = Stopwatch.StartNew();
        int loaded = 0, refused = 0;
        for (int iteration = 0; iteration < 400; iteration++)
        {
            var bytes = (byte[])sources[iteration < 300 ? 0 : 1].Clone();
            int kind = rng.Next(4);
            if (kind == 0) bytes = bytes[..rng.Next(bytes.Length)];                                      // truncate
            else if (kind == 1) for (int i = rng.Next(1, 9); i > 0; i--) bytes[rng.Next(bytes.Length)] ^= (byte)(1 << rng.Next(8));   // bit flips
            else if (kind == 2) for (int i = rng.Next(1, 5); i > 0; i--) bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256);       // random bytes
            else
            {
                // Overwrite a short run inside the pickle region, where structure (opcodes, lengths) lives.
                int start = rng.Next(Math.Min(bytes.Length, 1200)), len = rng.Next(1, 16);
                for (int i = start; i < Math.Min(bytes.Length, start + len); i++) bytes[i] = (byte)rng.Next(256);
            }
            File.WriteAllBytes(path, bytes);
            try { CheckpointFile.Load(path); loaded++; }
            catch (CheckpointFormatException) { refused++; }
            catch (Exception e) { Assert.Fail($"iteration {iteration} (mutation {kind}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}"); }
        }
        TestContext.Out.WriteLine($"fuzz: {loaded} loaded, {refused} refused in {clock.ElapsedMilliseconds} ms");
        Assert.That(refused, Is.GreaterThan(50));
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)));
    }
}
