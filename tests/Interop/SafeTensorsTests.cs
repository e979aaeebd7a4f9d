using System.Text;
using MaskBit.Models.Interop;

namespace MaskBit.Tests.Interop;

[TestFixture]
public class SafeTensorsTests
{
    [OneTimeSetUp]
    public void MakeTempDir() => TorchFiles.EnsureTempDir();

    private static List<TensorRecord> AllDTypes()
    {
        // Every dtype the fixture has (float16, bfloat16, int64, int32, 0-d, strided views materialised, float64, bool, empty).
        var a = TorchCheckpoint.Load(Path.Combine(TorchFiles.FixtureDir, "dtypes_and_views.bin"));
        var b = TorchCheckpoint.Load(Path.Combine(TorchFiles.FixtureDir, "extra_dtypes.bin"));
        return a.Concat(b).Append(new TensorRecord("u8", TensorDType.UInt8, new[] { 3 }, new byte[] { 0, 7, 255 })).ToList();
    }

    [Test]
    public void RoundTripKeepsNamesOrderDtypesShapesBytesAndMetadata()
    {
        var tensors = AllDTypes();
        string path = TorchFiles.TempFile("roundtrip.safetensors");
        SafeTensors.Save(path, tensors, new[] { KeyValuePair.Create("format", "pt"), KeyValuePair.Create("step", "123") });

        var back = SafeTensors.Load(path);
        Assert.That(back.Names, Is.EqualTo(tensors.Select(t => t.Name)));
        foreach (var (want, got) in tensors.Zip(back))
        {
            Assert.That(got.DType, Is.EqualTo(want.DType), want.Name);
            Assert.That(got.Shape, Is.EqualTo(want.Shape), want.Name);
            Assert.That(got.Data, Is.EqualTo(want.Data), want.Name);
        }
        Assert.That(back.Metadata.Select(kv => $"{kv.Key}={kv.Value}"), Is.EqualTo(new[] { "format=pt", "step=123" }));
        Assert.That(CheckpointFile.Detect(path), Is.EqualTo(CheckpointKind.SafeTensors));

        long headerLength = BitConverter.ToInt64(File.ReadAllBytes(path), 0);
        Assert.That(headerLength % 8, Is.Zero, "data section is 8-byte aligned");
    }

    [Test]
    public void SaveReplacesAtomicallyAndLeavesNoTemporaryFiles()
    {
        string dir = Path.Combine(TorchFiles.EnsureTempDir(), "atomic");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "w.safetensors");
        SafeTensors.Save(path, new[] { TensorRecord.FromFloats("a", new float[] { 1, 2 }, 2) });
        SafeTensors.Save(path, new[] { TensorRecord.FromFloats("b", new float[] { 3 }, 1) });
        Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EqualTo(new[] { "w.safetensors" }));
        Assert.That(SafeTensors.Load(path).Names, Is.EqualTo(new[] { "b" }));
        Assert.Throws<ArgumentException>(() => SafeTensors.Save(path, new[] { TensorRecord.FromFloats("a", new float[] { 1 }, 1), TensorRecord.FromFloats("a", new float[] { 1 }, 1) }));
    }

    /// <summary>A file with the given JSON header and data section.</summary>
    private static string Write(string name, string header, int dataBytes, ulong? declaredHeaderLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        string path = TorchFiles.TempFile(name);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes(declaredHeaderLength ?? (ulong)json.Length));
        fs.Write(json);
        fs.Write(new byte[dataBytes]);
        return path;
    }

    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, null, null, TestName = "WellFormedHeaderLoads")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 1000UL, "exceeds the file", TestName = "HeaderLongerThanFile")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 200_000_000UL, "exceeds the 100000000-byte limit", TestName = "HeaderOverTheLimit")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],", 8, null, "not valid JSON", TestName = "HeaderNotJson")]
    [TestCase("[1, 2]", 0, null, "not a JSON object", TestName = "HeaderNotAnObject")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, null, "lie outside", TestName = "OffsetsOutsideTheFile")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, null, "overlaps", TestName = "OverlappingTensors")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, null, "belong to no tensor", TestName = "HoleInTheData")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, null, "do not hold shape [3]", TestName = "ShapeDoesNotMatchBytes")]
    [TestCase("{\"a\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, null, "unsupported dtype", TestName = "UnknownDtype")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, null, "non-negative", TestName = "NegativeDimension")]
    [TestCase("{\"__metadata__\":{\"step\":3}}", 0, null, "is not a string", TestName = "NonStringMetadata")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, null, "twice", TestName = "DuplicateName")]
    public void HeaderIsValidated(string header, int dataBytes, ulong? declaredLength, string? problem)
    {
        string path = Write("header.safetensors", header, dataBytes, declaredLength);
        if (problem == null) { Assert.That(SafeTensors.Load(path)["a"].Shape, Is.EqualTo(new[] { 2 })); return; }
        var ex = Assert.Throws<CheckpointFormatException>(() => SafeTensors.Load(path));
        Assert.That(ex!.Message, Does.StartWith(path + ": "));
        Assert.That(ex.Problem, Does.Contain(problem));
    }

    [Test]
    public void TooShortFileIsReported()
    {
        string path = TorchFiles.TempFile("short.safetensors");
        File.WriteAllBytes(path, new byte[] { 1, 2, 3 });
        Assert.That(Assert.Throws<CheckpointFormatException>(() => SafeTensors.Load(path))!.Problem, Does.Contain("too short"));
    }
}
