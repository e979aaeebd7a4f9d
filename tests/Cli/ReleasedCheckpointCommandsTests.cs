using System.Runtime.InteropServices;
using System.Text;
using MaskBit.Autograd;
using MaskBit.Cli;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Tests.Data;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Perceptual;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Cli;

/// <summary>The README's "Released checkpoints" commands, read from the README and run as written in a folder
/// holding reference-format stand-ins under the released names (tests/Fixtures/golden/released_format/README.md): the
/// golden tokenizer_lfq's torch.save file as maskbit_tokenizer_{10,12}bit.bin, a torch.save LFQBert as
/// maskbit_generator_10bit.bin, their small configs at the configs/ paths, the FID InceptionV3 with formula weights as
/// pt_inception-2015-12-05-6726825d.pth, a mu/sigma npz as train_imagenet256_stats.npz, and ten one-image shards made
/// by `maskbit shard` as the ImageNet validation shards. One change, because 50,000 samples through the Inception
/// network take days on a CPU: `eval generator` gets --num-images 4 appended.</summary>
[NonParallelizable]
public class ReleasedCheckpointCommandsTests
{
    /// <summary>The commands of the README's bash block under "### Released checkpoints", continuation lines
    /// joined, comments dropped, the leading <c>maskbit</c> removed.</summary>
    private static List<string[]> ReadmeCommands()
    {
        string readme = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "README.md"));
        int section = readme.IndexOf("### Released checkpoints", StringComparison.Ordinal);
        Assert.That(section, Is.GreaterThanOrEqualTo(0), "README section");
        int start = readme.IndexOf("```bash\n", section, StringComparison.Ordinal) + "```bash\n".Length;
        string block = readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)].Replace("\\\n", " ");
        return block.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l =>
            {
                var words = Words(l);
                Assert.That(words[0], Is.EqualTo("maskbit"), l);
                return words[1..];
            })
            .ToList();
    }

    /// <summary>Shell words: whitespace-separated, single quotes kept together and removed.</summary>
    private static string[] Words(string line)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        bool quoted = false, any = false;
        foreach (char ch in line)
        {
            if (ch == '\'') { quoted = !quoted; any = true; }
            else if (char.IsWhiteSpace(ch) && !quoted)
            {
                if (any) words.Add(word.ToString());
                word.Clear();
                any = false;
            }
            else { word.Append(ch); any = true; }
        }
        if (any) words.Add(word.ToString());
        return [.. words];
    }

    [Test]
    public void ReadmeReleasedCheckpointCommandsRunAsWritten()
    {
        using var dir = new TempDirectory();
        string golden = GoldenCases.RepoDir, released = Path.Combine(golden, "released_format");
        void Place(string source, params string[] names)
        {
            foreach (var name in names)
            {
                File.Copy(source, dir.File(name));
            }
        }
        Place(Path.Combine(golden, "tokenizer_lfq", "model.bin"), "maskbit_tokenizer_10bit.bin", "maskbit_tokenizer_12bit.bin");
        Place(Path.Combine(golden, "tokenizer_lfq", "config.yaml"), "configs/tokenizer/maskbit_tokenizer_12bit.yaml");
        Place(Path.Combine(released, "generator.bin"), "maskbit_generator_10bit.bin");
        Place(Path.Combine(released, "generator.yaml"), "configs/generator/maskbit_generator_10bit.yaml");
        using (TensorScope.Begin())
            SafeTensors.Save(dir.File("pt_inception-2015-12-05-6726825d.pth"),
                FormulaWeights.Build(Path.Combine(golden, "formula_nets", "inception_params.json"))
                    .Where(kv => !kv.Key.EndsWith(".num_batches_tracked", StringComparison.Ordinal))
                    .Select(kv => TensorRecord.FromFloats(kv.Key, kv.Value.ToArray(), kv.Value.Shape)).ToList());
        const int dim = 2048;
        var sigma = new double[dim * dim];
        for (int i = 0; i < dim; i++) sigma[i * dim + i] = 1;
        Npy.WriteNpz(dir.File("train_imagenet256_stats.npz"), new Dictionary<string, NpyArray>
        {
            ["mu"] = new(NpyType.Float64, [dim], new byte[dim * 8]),
            ["sigma"] = new(NpyType.Float64, [dim, dim], MemoryMarshal.AsBytes(sigma.AsSpan()).ToArray()),
        });
        for (int i = 0; i < 10; i++) ImageIO.Write(dir.File("imgs", $"class{i % 2}", $"img{i}.png"), TestImages.Gradient(32, 32, 3, phase: 41 * i));

        string previous = Environment.CurrentDirectory;
        Environment.CurrentDirectory = dir.Path;
        try
        {
            Run(["shard", "--images", "imgs", "--out", "imagenet_shards/val", "--name", "imagenet-val", "--digits", "4", "--max-count", "1"]);
            var commands = ReadmeCommands();
            Assert.That(commands.Select(c => c[0]), Is.EqualTo(new[] { "inspect", "convert", "eval", "eval", "generate" }), "the README's commands");
            foreach (var command in commands)
                Run(command[0] == "eval" && command[1] == "generator" ? [.. command, "--num-images", "4"] : command);
        }
        finally { Environment.CurrentDirectory = previous; }

        Assert.That(File.Exists(dir.File("maskbit_tokenizer_12bit.safetensors")), "convert's output");
        Assert.That(File.ReadAllText(dir.File("eval", "tokenizer_12bit", "metrics.json")), Does.Contain("rFID").And.Contain("PSNR"));
        Assert.That(File.ReadAllText(dir.File("eval", "generator_10bit", "metrics.json")), Does.Contain("gFID").And.Contain("InceptionScore"));
        Assert.That(File.Exists(dir.File("samples", "generator_10bit", "grid.png")), "generate's grid");
    }

    private static void Run(string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, stdout, stderr);
        TestContext.Out.WriteLine($"maskbit {string.Join(' ', args)} → exit {code}\n{stdout.ToString().Trim()}");
        Assert.That(code, Is.EqualTo(Program.ExitOk), $"maskbit {string.Join(' ', args)}:\n{stderr}");
    }
}
