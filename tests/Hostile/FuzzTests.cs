using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using MaskBit.Cli;
using MaskBit.Cli.Commands;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Tests.Data;
using MaskBit.Tests.Interop;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Hostile;

/// <summary>
/// Seeded mutation fuzzing of every reader and the config loader (issue 19): mutants of valid torch checkpoints (zip
/// and legacy), safetensors, npz, configs and images go through the same entry points as the CLI. Each must load or
/// be refused with exit 1 or 2 and one clean line naming the file (no control characters, CLR type names or internal
/// errors), within 20 s and 1 GB of allocation. CI runs <see cref="DefaultCases"/> mutants; set
/// <see cref="CasesVariable"/> for more (e.g. 10000). A failing case prints its target and seed to replay it.
/// </summary>
[TestFixture]
[NonParallelizable]
public class FuzzTests
{
    public const string CasesVariable = "MASKBIT_FUZZ_CASES";
    public const int DefaultCases = 300;
    private static readonly TimeSpan MaxCaseTime = TimeSpan.FromSeconds(20);
    private const long MaxCaseAllocation = 1L << 30;

    private static int CasesPerTarget(int targets) =>
        Math.Max(1, (int.TryParse(Environment.GetEnvironmentVariable(CasesVariable), out int n) && n > 0 ? n : DefaultCases) / targets);

    private const int Targets = 5;
    private TempDirectory _dir = null!;

    [OneTimeSetUp] public void SetUp() => _dir = new TempDirectory();
    [OneTimeTearDown] public void TearDown() => _dir.Dispose();

    // ---- targets ---------------------------------------------------------------------------------------------

    [Test]
    public void TorchCheckpoints()
    {
        var seeds = Directory.GetFiles(TorchFiles.FixtureDir, "*.bin").Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToArray();
        Fuzz("torch", seeds, ".pt", (rng, seed) => TorchCheckpoint.IsZip(seed) && rng.Next(3) > 0 ? MutateZipEntry(rng, seed) : Mutate(rng, seed), InspectFile);
    }

    [Test]
    public void SafeTensorsFiles()
    {
        var rng = new Random(7);
        string path = _dir.File("seed.safetensors");
        SafeTensors.Save(path, [
            new TensorRecord("encoder.conv.weight", TensorDType.Float32, [4, 3, 3, 3], RandomBytes(rng, 4 * 27 * 4)),
            new TensorRecord("encoder.conv.bias", TensorDType.Float16, [4], RandomBytes(rng, 8)),
            new TensorRecord("quantize.codebook", TensorDType.Int64, [2, 3], RandomBytes(rng, 48)),
        ], [KeyValuePair.Create("format", "pt")]);
        byte[] seed = File.ReadAllBytes(path);
        Fuzz("safetensors", [seed], ".safetensors", (r, s) => r.Next(3) > 0 ? MutateSafeTensorsHeader(r, s) : Mutate(r, s), InspectFile);
    }

    [Test]
    public void NpzFiles()
    {
        string path = _dir.File("seed.npz");
        Npy.WriteNpz(path, new Dictionary<string, NpyArray>
        {
            ["images"] = NpyArray.FromFloats(Enumerable.Range(0, 2 * 3 * 4 * 4).Select(i => i / 96f).ToArray(), 2, 3, 4, 4),
            ["tokens"] = NpyArray.FromInt64(Enumerable.Range(0, 8).Select(i => (long)i).ToArray(), 2, 4),
        });
        var seeds = new[] { File.ReadAllBytes(path), File.ReadAllBytes(Path.Combine(TorchFiles.FixtureDir, "expected.npz")) };
        Fuzz("npz", seeds, ".npz", (rng, seed) => rng.Next(3) > 0 ? MutateZipEntry(rng, seed) : Mutate(rng, seed), InspectFile);
    }

    [Test]
    public void Configs()
    {
        var seeds = Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "configs"), "*.yaml", SearchOption.AllDirectories)
            .Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToArray();
        Fuzz("config", seeds, ".yaml", (rng, seed) => rng.Next(4) > 0 ? MutateYaml(rng, seed) : Mutate(rng, seed), path =>
        {
            var stderr = new StringWriter();
            int code = CommandSupport.Guard(stderr, () => { CommandSupport.LoadConfig(path, null); return Program.ExitOk; });
            return (code, stderr.ToString());
        });
    }

    [Test]
    public void Images()
    {
        var rng = new Random(11);
        var image = TestImages.Noise(24, 20, 3, seed: 3);
        var seeds = new[] { ImageIO.EncodePng(image), ImageIO.EncodeJpeg(image), ImageIO.EncodePng(TestImages.Gradient(16, 16, 3, phase: 5)) };
        Fuzz("image", seeds, ".png", Mutate, path =>
        {
            try { ImageIO.Read(path); return (Program.ExitOk, ""); }
            catch (InvalidDataException e) { return (Program.ExitFailed, $"error: {e.Message}\n"); }
        });
    }

    // ---- the loop --------------------------------------------------------------------------------------------

    /// <summary>`maskbit inspect FILE` (which lists without reading the tensors), then a full load as the model
    /// commands do it.</summary>
    private static (int Code, string Err) InspectFile(string path)
    {
        var stdout = new StringWriter(); var stderr = new StringWriter();
        int code = Program.Run(["inspect", path], stdout, stderr);
        if (code == Program.ExitOk) code = CommandSupport.Guard(stderr, () => { CheckpointFile.Load(path); return Program.ExitOk; });
        return (code, stderr.ToString());
    }

    private void Fuzz(string target, byte[][] seeds, string extension, Func<Random, byte[], byte[]> mutate, Func<string, (int Code, string Err)> read)
    {
        int cases = CasesPerTarget(Targets), refused = 0;
        TimeSpan slowest = TimeSpan.Zero;
        long mostAllocated = 0;
        for (int i = 0; i < cases; i++)
        {
            var rng = new Random(target.Aggregate(i, (seed, c) => unchecked(seed * 31 + c)));   // not HashCode: it differs per process
            byte[] mutant = mutate(rng, seeds[rng.Next(seeds.Length)]);
            string path = _dir.File($"{target}-{i}{extension}");
            File.WriteAllBytes(path, mutant);
            long before = GC.GetAllocatedBytesForCurrentThread();
            var clock = Stopwatch.StartNew();
            var (code, error) = read(path);
            clock.Stop();
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            string replay = $"{target} case {i} ({path}, {mutant.Length} bytes)";
            Assert.That(clock.Elapsed, Is.LessThan(MaxCaseTime), $"{replay}: too slow");
            Assert.That(allocated, Is.LessThan(MaxCaseAllocation), $"{replay}: allocated {allocated:N0} bytes");
            Assert.That(code, Is.AnyOf(Program.ExitOk, Program.ExitFailed, Program.ExitUsage), $"{replay}: {error}");
            if (code != Program.ExitOk)
            {
                refused++;
                CleanRefusal(error, path, replay);
            }
            slowest = clock.Elapsed > slowest ? clock.Elapsed : slowest;
            mostAllocated = Math.Max(mostAllocated, allocated);
            File.Delete(path);
        }
        TestContext.Progress.WriteLine($"fuzz {target}: {cases} mutants, {refused} refused cleanly, {cases - refused} loaded; slowest {slowest.TotalMilliseconds:F0} ms, " +
                                       $"most allocated {mostAllocated / (1 << 20)} MiB, peak working set {Process.GetCurrentProcess().PeakWorkingSet64 / (1 << 20)} MiB");
    }

    /// <summary>"error: FILE: …" lines (a config may list several problems, each naming the file), nothing else.</summary>
    private static void CleanRefusal(string stderr, string path, string replay)
    {
        var lines = stderr.TrimEnd('\n').Split('\n');
        Assert.That(lines[0], Does.StartWith($"error: {path}").Or.StartWith($"error: --config: file not found"), $"{replay}: {stderr}");
        foreach (var line in lines.Skip(1))
            Assert.That(line, Does.StartWith(path).Or.StartWith("… and"), $"{replay}: {stderr}");
        Assert.That(string.Concat(lines).Where(char.IsControl), Is.Empty, $"{replay}: control characters in {stderr}");
        Assert.That(stderr, Does.Not.Contain("System.").And.Not.Contain("internal error").And.Not.Contain("Exception"), $"{replay}: {stderr}");
    }

    // ---- mutators --------------------------------------------------------------------------------------------

    private static readonly long[] InterestingInts =
        [0, 1, -1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, int.MaxValue, int.MinValue, uint.MaxValue, long.MaxValue, long.MinValue, 1L << 32, 1L << 40];

    private static byte[] RandomBytes(Random rng, int count)
    {
        var bytes = new byte[count];
        rng.NextBytes(bytes);
        return bytes;
    }

    /// <summary>One to four byte-level edits: bit flips, interesting bytes and integers, truncation, insertion,
    /// deletion and duplication of a chunk.</summary>
    private static byte[] Mutate(Random rng, byte[] seed)
    {
        var data = seed.ToList();
        for (int edits = rng.Next(1, 5); edits > 0 && data.Count > 0; edits--)
        {
            int at = rng.Next(data.Count);
            switch (rng.Next(7))
            {
                case 0: data[at] ^= (byte)(1 << rng.Next(8)); break;
                case 1: data[at] = (byte)InterestingInts[rng.Next(InterestingInts.Length)]; break;
                case 2:
                    var value = BitConverter.GetBytes(InterestingInts[rng.Next(InterestingInts.Length)]);
                    int width = rng.Next(2) == 0 ? 4 : 8;
                    for (int k = 0; k < width && at + k < data.Count; k++) data[at + k] = value[k];
                    break;
                case 3: data.RemoveRange(at, data.Count - at); break;
                case 4: data.InsertRange(at, RandomBytes(rng, rng.Next(1, 64))); break;
                case 5: data.RemoveRange(at, Math.Min(data.Count - at, rng.Next(1, 64))); break;
                default:
                    int length = Math.Min(data.Count - at, rng.Next(1, 256));
                    data.InsertRange(rng.Next(data.Count), data.GetRange(at, length));
                    break;
            }
        }
        return data.ToArray();
    }

    /// <summary>Mutates the content of one entry of a zip (a torch pickle or storage, an .npy array) and writes a
    /// valid zip around it, so the mutation reaches the parsers behind the zip layer.</summary>
    private static byte[] MutateZipEntry(Random rng, byte[] seed)
    {
        var entries = new List<(string Name, byte[] Data)>();
        using (var zip = new ZipArchive(new MemoryStream(seed), ZipArchiveMode.Read))
            foreach (var e in zip.Entries)
            {
                using var s = e.Open();
                using var ms = new MemoryStream();
                s.CopyTo(ms);
                entries.Add((e.FullName, ms.ToArray()));
            }
        // Prefer the parsed entries: the pickle and the arrays.
        var candidates = entries.Select((e, i) => (e, i)).Where(x => x.e.Name.EndsWith(".pkl") || x.e.Name.EndsWith(".npy")).Select(x => x.i).ToList();
        int target = candidates.Count > 0 && rng.Next(4) > 0 ? candidates[rng.Next(candidates.Count)] : rng.Next(entries.Count);
        entries[target] = (entries[target].Name, Mutate(rng, entries[target].Data));
        if (rng.Next(8) == 0) entries.Add(entries[rng.Next(entries.Count)]);   // a duplicate entry
        var output = new MemoryStream();
        using (var zip = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var (name, data) in entries)
            {
                using var s = zip.CreateEntry(name, rng.Next(2) == 0 ? CompressionLevel.NoCompression : CompressionLevel.Fastest).Open();
                s.Write(data);
            }
        return output.ToArray();
    }

    private static readonly string[] JsonTokens =
        ["-1", "0", "18446744073709551615", "9223372036854775807", "1e400", "\"0\"", "null", "[]", "{}", "[1,2,3]", "\"\\u0000\"", "\"F32\"", "\"X9\"", "true"];

    /// <summary>Replaces a JSON value or punctuation in the safetensors header (keeping its length field right).</summary>
    private static byte[] MutateSafeTensorsHeader(Random rng, byte[] seed)
    {
        int headerLength = (int)BitConverter.ToUInt64(seed, 0);
        string header = Encoding.UTF8.GetString(seed, 8, headerLength);
        var numbers = System.Text.RegularExpressions.Regex.Matches(header, @"-?\d+|""[^""]*""|[\[\]{},:]");
        var m = numbers[rng.Next(numbers.Count)];
        string mutated = header[..m.Index] + JsonTokens[rng.Next(JsonTokens.Length)] + header[(m.Index + m.Length)..];
        var bytes = Encoding.UTF8.GetBytes(mutated);
        return [.. BitConverter.GetBytes((ulong)bytes.Length), .. bytes, .. seed.AsSpan(8 + headerLength)];
    }

    private static readonly string[] YamlValues =
        ["0", "-1", "1", "2", "7", "31", "64", "65536", "1e6", "1e309", ".nan", ".inf", "-.inf", "9223372036854775807", "99999999999999999999",
         "\"x\"", "''", "~", "[]", "[0, 0, 0]", "[1, [2]]", "{a: 1}", "${experiment}", "${optimizer.params.learning_rate}", "${nope.x}",
         "${training.seed}${training.seed}", "&a 1", "*a", "[[[[[[[[", "true", "1.5", "lookup", "lookup-free", "\"\\0\"", "!!binary aGk="];

    /// <summary>Line-level edits of a config: a value replaced by a hostile one, a line deleted, duplicated,
    /// re-indented or replaced by an unknown key, a second document, or a truncation.</summary>
    private static byte[] MutateYaml(Random rng, byte[] seed)
    {
        var lines = Encoding.UTF8.GetString(seed).Split('\n').ToList();
        for (int edits = rng.Next(1, 4); edits > 0 && lines.Count > 0; edits--)
        {
            int at = rng.Next(lines.Count);
            string line = lines[at];
            int colon = line.IndexOf(':');
            switch (rng.Next(8))
            {
                case 0 or 1 or 2 when colon > 0: lines[at] = line[..(colon + 1)] + " " + YamlValues[rng.Next(YamlValues.Length)]; break;
                case 3: lines.RemoveAt(at); break;
                case 4: lines.Insert(at, line); break;
                case 5: lines[at] = new string(' ', rng.Next(0, 12)) + line.TrimStart(); break;
                case 6: lines.Insert(at, new string(' ', 4 * rng.Next(0, 3)) + "invented_key: ${experiment.name}"); break;
                default: lines.Insert(at, rng.Next(2) == 0 ? "---" : line[..rng.Next(line.Length + 1)]); break;
            }
        }
        return Encoding.UTF8.GetBytes(string.Join('\n', lines));
    }
}
