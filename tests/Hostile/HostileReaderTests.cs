using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using MaskBit.Cli;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Tests.Data;
using MaskBit.Tests.Interop;

namespace MaskBit.Tests.Hostile;

/// <summary>The weights-file, image and command-line reproducers of issue 19: each is refused quickly, within the
/// load's memory budget, with one line naming the file and the entry, array or tensor in our words.</summary>
[TestFixture]
[NonParallelizable]
public class HostileReaderTests
{
    private TempDirectory _dir = null!;

    [SetUp] public void SetUp() => _dir = new TempDirectory();
    [TearDown] public void TearDown() => _dir.Dispose();

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter(); var stderr = new StringWriter();
        var clock = Stopwatch.StartNew();
        int code = Program.Run(args, stdout, stderr);
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)));
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>`maskbit inspect FILE` fails with exit 1 and one clean line naming the file.</summary>
    private static string InspectFails(string path)
    {
        var (code, _, error) = Run("inspect", path);
        Assert.That(code, Is.EqualTo(Program.ExitFailed), error);
        HostileAssert.OneCleanLine(error, path);
        return error;
    }

    private static void WriteZip(string path, CompressionLevel level, params (string Name, byte[] Data)[] entries)
    {
        using var fs = File.Create(path);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Create);
        foreach (var (name, data) in entries)
        {
            using var s = zip.CreateEntry(name, level).Open();
            s.Write(data);
        }
    }

    private static byte[] NpyHeader(string descr, string shape, long dataBytes)
    {
        string header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        header = header.PadRight(header.Length + (64 - (10 + header.Length + 1) % 64) % 64) + "\n";
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 };
        bytes.AddRange(BitConverter.GetBytes((ushort)header.Length));
        bytes.AddRange(Encoding.ASCII.GetBytes(header));
        bytes.AddRange(new byte[dataBytes]);
        return bytes.ToArray();
    }

    [Test]
    public void TwentyMillionDigitLongInAPickleIsRefusedAtOnce()
    {
        var pickle = new List<byte> { 0x80, 2, (byte)'L' };
        pickle.AddRange(Enumerable.Repeat((byte)'1', 20_000_000));
        pickle.AddRange("L\n."u8.ToArray());
        string path = _dir.File("long.pt");
        WriteZip(path, CompressionLevel.Optimal, ("archive/data.pkl", pickle.ToArray()), ("archive/version", "3\n"u8.ToArray()));
        Assert.That(new FileInfo(path).Length, Is.LessThan(100_000), "the reproducer is a small file");
        Assert.That(InspectFails(path), Does.Contain("number at byte 2 is longer than"));
    }

    [TestCase((byte)0x8a)]
    [TestCase((byte)0x8b)]
    public void HugeBinaryLongIsRefused(byte opcode)
    {
        var operand = Enumerable.Repeat((byte)0xff, 200).ToArray();
        var pickle = new PickleBytes().Op(opcode).Raw(opcode == 0x8a ? [(byte)operand.Length] : BitConverter.GetBytes(operand.Length)).Raw(operand).Stop();
        string path = _dir.File("long1.pt");
        TorchFiles.WriteZip(path, pickle);
        Assert.That(InspectFails(path), Does.Contain("200 bytes long"));
    }

    [Test]
    public void TorchStorageOverTheBudgetIsRefusedBeforeItIsRead()
    {
        const int numel = 4 << 20;   // 16 MiB of float32
        string path = _dir.File("big.pt");
        TorchFiles.WriteZip(path, PickleBytes.StateDict("w", numel, 0, [numel], [1]), ("0", new byte[numel * 4]));
        using (LoadBudget.Limit(8 << 20))
        {
            var e = Assert.Throws<CheckpointFormatException>(() => CheckpointFile.Load(path))!;
            Assert.That(e.Message, Does.Contain("storage '0' needs 16,777,216 bytes").And.Contain("memory budget"));
        }
        Assert.That(CheckpointFile.Load(path).Single().Count, Is.EqualTo(numel), "within the default budget it loads");
    }

    [Test]
    public void InspectListsTensorsWithoutReadingThem()
    {
        // 64 MiB of tensors in each format, listed within a 1 MiB budget: only headers and pickles are read.
        const int numel = 16 << 20;
        string torch = _dir.File("big.pt"), safetensors = _dir.File("big.safetensors"), npz = _dir.File("big.npz");
        TorchFiles.WriteZip(torch, PickleBytes.StateDict("w", numel, 0, [numel], [1]), ("0", new byte[numel * 4]));
        SafeTensors.Save(safetensors, [new TensorRecord("w", TensorDType.Float32, [numel], new byte[numel * 4])]);
        WriteZip(npz, CompressionLevel.NoCompression, ("w.npy", NpyHeader("<f4", $"({numel},)", numel * 4L)));
        using var _ = LoadBudget.Limit(1 << 20);
        foreach (var path in new[] { torch, safetensors, npz })
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            var (code, output, error) = Run("inspect", path);
            Assert.That(code, Is.EqualTo(Program.ExitOk), error);
            Assert.That(output, Does.Match(@"\bw\s+float32\s+\[16777216\]\s+67,108,864"));
            Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(4 << 20), path);
        }
    }

    [Test]
    public void NpzWhoseArrayExpandsPastTheBudgetIsRefusedBeforeAllocating()
    {
        string path = _dir.File("zeros.npz");
        WriteZip(path, CompressionLevel.Optimal, ("images.npy", NpyHeader("<f4", "(1024, 1024, 16)", 64L << 20)));
        Assert.That(new FileInfo(path).Length, Is.LessThan(1 << 20));
        using var _ = LoadBudget.Limit(16 << 20);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<CheckpointFormatException>(() => CheckpointFile.Load(path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Contain("array 'images' needs 67,108,864 bytes").And.Contain("memory budget"));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(16L << 20), "refused before the array was allocated");
    }

    [Test]
    public void NpzHeaderClaimingMoreThanItsEntryHoldsIsRefused()
    {
        // 3 GiB declared by a few bytes: the declared size is compared with the entry before anything is read.
        string path = _dir.File("liar.npz");
        WriteZip(path, CompressionLevel.Optimal, ("x.npy", NpyHeader("<f4", "(805306368,)", 16)));
        Assert.That(InspectFails(path), Does.Contain("array 'x' is truncated: shape (805306368,) of float32 needs 3,221,225,472 bytes"));
    }

    [TestCase("(2L, 3L)", 24, null)]
    [TestCase("(abc,)", 0, "holds 'abc', not a dimension")]
    [TestCase("(2147483647, 2147483647, 2147483647)", 0, "is too large")]
    [TestCase("(99999999999999999999,)", 0, "not a dimension")]
    public void NpzShapeTextIsCheckedInOurWords(string shape, int dataBytes, string? problem)
    {
        string path = _dir.File("shape.npz");
        WriteZip(path, CompressionLevel.NoCompression, ("a.npy", NpyHeader("<f4", shape, dataBytes)));
        if (problem == null) { Assert.That(CheckpointFile.Load(path).Single().Shape, Is.EqualTo(new[] { 2, 3 })); return; }
        Assert.That(InspectFails(path), Does.Contain($"array 'a'").And.Contain(problem));
    }

    [Test]
    public void NpzTrailingBytesDuplicatesAndTooManyDimensionsAreRefused()
    {
        string trailing = _dir.File("trailing.npz");
        var bytes = NpyHeader("<f4", "(2,)", 8).Concat(new byte[5]).ToArray();
        WriteZip(trailing, CompressionLevel.NoCompression, ("a.npy", bytes));
        Assert.That(InspectFails(trailing), Does.Contain("array 'a' has 5 bytes after its data"));

        string duplicate = _dir.File("duplicate.npz");
        WriteZip(duplicate, CompressionLevel.NoCompression, ("a.npy", NpyHeader("<f4", "(2,)", 8)), ("a.npy", NpyHeader("<f4", "(2,)", 8)));
        Assert.That(InspectFails(duplicate), Does.Contain("array 'a' occurs twice"));

        string dims = _dir.File("dims.npz");
        WriteZip(dims, CompressionLevel.NoCompression, ("a.npy", NpyHeader("<f4", "(" + string.Join(", ", Enumerable.Repeat("1", 1000)) + ")", 4)));
        Assert.That(InspectFails(dims), Does.Contain("array 'a' has 1000 dimensions"));
    }

    private static void WriteSafeTensors(string path, byte[] header, int dataBytes)
    {
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)header.Length));
        fs.Write(header);
        fs.Write(new byte[dataBytes]);
    }

    [Test]
    public void SafeTensorsWithInvalidUtf8NameOrStringOffsetsIsRefusedInOurWords()
    {
        string utf8 = _dir.File("utf8.safetensors");
        byte[] header = [.. "{\"w"u8, 0xff, .. "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"u8];
        WriteSafeTensors(utf8, header, 4);
        Assert.That(InspectFails(utf8), Does.Contain("header is not valid UTF-8"));

        string offsets = _dir.File("offsets.safetensors");
        WriteSafeTensors(offsets, Encoding.UTF8.GetBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}"), 4);
        Assert.That(InspectFails(offsets), Does.Contain("tensor 'w': data_offsets must be [begin, end]"));

        string nul = _dir.File("nul.safetensors");
        WriteSafeTensors(nul, Encoding.UTF8.GetBytes("{\"w\\u0000x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}"), 4);
        Assert.That(InspectFails(nul), Does.Contain("tensor 'w?x'"));
    }

    [Test]
    public void JpegCutInsideItsHeaderIsRefusedNotLoopedOn()
    {
        // StbImageSharp loops forever on this 8-byte SOI + APP0 prefix (found by the fuzz suite).
        byte[] prefix = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46];
        var e = Assert.Throws<InvalidDataException>(() => ImageIO.Decode(prefix, "cut.jpg"));
        Assert.That(e!.Message, Does.StartWith("cut.jpg: cannot decode image (8 bytes): JPEG segment 0xE0"));
        var whole = ImageIO.EncodeJpeg(TestImages.Gradient(8, 8, 3, phase: 1));
        Assert.That(ImageIO.Decode(whole, "whole.jpg").Width, Is.EqualTo(8), "a whole JPEG still decodes");
    }

    [Test]
    public void ImageDecodeErrorsHaveNoNulBytes()
    {
        string path = _dir.File("bad.png");
        File.WriteAllBytes(path, new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 13, 10, 26, 10, 0, 0, 0, 13, 1, 2, 3 });
        var e = Assert.Throws<InvalidDataException>(() => ImageIO.Read(path))!;
        Assert.That(e.Message, Does.StartWith(path).And.Not.Contain('\0'));
    }

    [Test]
    public void ReconstructSkipsUnreadableImagesAndCountsThem()
    {
        for (int i = 0; i < 3; i++) ImageIO.Write(_dir.File("in", $"img{i}.png"), TestImages.Gradient(32, 32, 3, phase: 50 * i));
        File.WriteAllBytes(_dir.File("in", "broken.png"), "not an image"u8.ToArray());
        var (code, output, error) = Run("reconstruct", "--images", _dir.File("in"), "--out", _dir.File("out"));
        Assert.That(code, Is.EqualTo(Program.ExitOk), error);
        Assert.That(error, Does.Contain($"skipped: {_dir.File("in", "broken.png")}: cannot decode image"));
        Assert.That(error, Does.Contain("warning: skipped 1 of 4 images"));
        Assert.That(output, Does.Contain("reconstructed 3 images"));

        var strict = Run("reconstruct", "--images", _dir.File("in"), "--out", _dir.File("out2"), "--strict");
        Assert.That(strict.Code, Is.EqualTo(Program.ExitFailed));
        Assert.That(strict.Err, Does.Contain("broken.png").And.Contain("--strict"));

        File.WriteAllBytes(_dir.File("bad", "a.png"), "x"u8.ToArray());
        File.WriteAllBytes(_dir.File("bad", "b.jpg"), "y"u8.ToArray());
        var none = Run("reconstruct", "--images", _dir.File("bad"), "--out", _dir.File("out3"));
        Assert.That(none.Code, Is.EqualTo(Program.ExitFailed));
        Assert.That(none.Err, Does.Contain("none of the 2 images could be read"));
    }

    [Test]
    public void CommandLineMisusesAreReportedInOurWords()
    {
        var seed = Run("generate", "--seed", "abc", "--classes", "1", "--out", _dir.File("never"));
        Assert.That(seed.Code, Is.EqualTo(Program.ExitUsage));
        Assert.That(seed.Err, Does.Contain("--seed: 'abc' is not an integer").And.Not.Contain("System."));

        var unknown = Run("frobnicate");
        Assert.That(unknown.Code, Is.EqualTo(Program.ExitUsage));
        Assert.That(unknown.Err, Does.Contain("frobnicate").And.Not.Contain("Required command was not provided"));
        var unknownSub = Run("train", "frobnicate");
        Assert.That(unknownSub.Err, Does.Contain("frobnicate").And.Not.Contain("Required command was not provided"));

        var both = Run("inspect", Path.Combine(TorchFiles.FixtureDir, "model.bin"), "--config", "configs/fashion_mnist_tokenizer.yaml");
        Assert.That(both.Code, Is.EqualTo(Program.ExitUsage));
        Assert.That(both.Err, Does.Contain("not both"));
    }
}

/// <summary>What every refusal of hostile input must look like.</summary>
internal static class HostileAssert
{
    /// <summary>One line "error: FILE: …" (a config error may list several such lines), with no control characters,
    /// no CLR type names and no internal error.</summary>
    public static void OneCleanLine(string stderr, string file)
    {
        var lines = stderr.TrimEnd('\n').Split('\n');
        Assert.That(lines[0], Does.StartWith($"error: {file}"), stderr);
        Assert.That(stderr.TrimEnd('\n').Where(c => c != '\n'), Has.None.Matches<char>(char.IsControl), stderr);
        Assert.That(stderr, Does.Not.Contain("System.").And.Not.Contain("internal error").And.Not.Contain("Exception"), stderr);
    }
}
