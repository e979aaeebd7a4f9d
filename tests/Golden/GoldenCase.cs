using System.Reflection;
using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Kernels;
using MaskBit.Models.Interop;

namespace MaskBit.Tests.Golden;

/// <summary>One fixture folder made with the reference PyTorch code: case.json (kind, meta, array list),
/// io.npz (inputs, outputs, gradients) and optionally config.yaml / model.bin.</summary>
public sealed class GoldenCase
{
    public string Dir { get; }
    public string Source { get; }
    public string Name => Path.GetFileName(Dir);
    public string Kind { get; }
    public JsonElement Json { get; }
    private readonly Lazy<Dictionary<string, NpyArray>> _io;

    public GoldenCase(string dir, string source)
    {
        Dir = dir;
        Source = source;
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "case.json")));
        Json = doc.RootElement.Clone();
        Kind = Json.GetProperty("kind").GetString() ?? throw new InvalidDataException($"{dir}/case.json has no kind");
        _io = new(() =>
        {
            string file = Json.TryGetProperty("files", out var f) && f.TryGetProperty("io", out var io) ? io.GetString()! : "io.npz";
            return Npy.ReadNpz(Path.Combine(dir, file));
        });
    }

    public JsonElement Meta => Json.GetProperty("meta");
    public IReadOnlyDictionary<string, NpyArray> Io => _io.Value;
    public bool Has(string name) => Io.ContainsKey(name);

    public NpyArray Array(string name) =>
        Io.TryGetValue(name, out var a) ? a : throw new KeyNotFoundException($"{Name}/io.npz has no array '{name}'");

    /// <summary>A float32 (or, for integer arrays, Int32) tensor from io.npz.</summary>
    public Tensor Tensor(string name, IBackend? device = null, bool requiresGrad = false)
    {
        var a = Array(name);
        if (a.Type is NpyType.Int64 or NpyType.Int32)
            return Autograd.Tensor.FromInts(a.ToInt32(), a.Shape, device);
        var t = Autograd.Tensor.FromArray(a.ToFloat32(), a.Shape, device);
        return requiresGrad ? t.RequiresGrad_() : t;
    }

    public override string ToString() => $"{Source}/{Name}";
}

/// <summary>Finds fixture folders: the repository's own (tests/Fixtures/golden) and, when the environment
/// variable MASKBIT_GOLDEN_DIR names a folder, every case folder under it.</summary>
public static class GoldenCases
{
    public const string EnvVar = "MASKBIT_GOLDEN_DIR";

    public static string RepoDir => Path.Combine(TestContext.CurrentContext?.TestDirectory ?? AppContext.BaseDirectory, "Fixtures", "golden");

    public static IEnumerable<GoldenCase> All()
    {
        foreach (var c in Discover(Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden"), "repo")) yield return c;
        var extra = Environment.GetEnvironmentVariable(EnvVar);
        if (!string.IsNullOrEmpty(extra))
        {
            if (!Directory.Exists(extra)) throw new DirectoryNotFoundException($"{EnvVar}={extra} is not a folder");
            foreach (var c in Discover(extra, "env")) yield return c;
        }
    }

    private static IEnumerable<GoldenCase> Discover(string root, string source)
    {
        if (!Directory.Exists(root)) yield break;
        foreach (var dir in Directory.GetDirectories(root).OrderBy(d => d, StringComparer.Ordinal))
            if (File.Exists(Path.Combine(dir, "case.json"))) yield return new GoldenCase(dir, source);
    }
}

/// <summary>The device a runner runs on (<see cref="Device.Default"/>, set by the harness).</summary>
public static class GoldenDevice
{
    /// <summary>True on the CPU backend; on a test device (an ILGPU emulator in CI) runners leave out their
    /// slowest runs, which the CPU run covers.</summary>
    public static bool IsCpu => Device.Default is Kernels.Cpu.CpuBackend;

    /// <summary>False on ILGPU's CPU accelerator unless MASKBIT_TEST_SLOW_EMULATOR=1: it emulates each GPU thread with
    /// an OS thread, so a run costs about one barrier round per 32×32 weight tile, and full ImageNet networks
    /// (ResNet-50, ConvNeXt-Small) take minutes there at any image size. Runners of such cases ignore themselves
    /// on the emulator; CUDA (bench/gpu-check.sh) runs them.</summary>
    public static bool RunsNetworkSizedCases =>
        Device.Default.Name != "ilgpu-cpu" || Environment.GetEnvironmentVariable("MASKBIT_TEST_SLOW_EMULATOR") == "1";
}

/// <summary>Marks a static method <c>void Run(GoldenCase c)</c> as the parity runner of a case kind. The runner
/// creates its models and tensors on <see cref="Device.Default"/>, which the harness sets to the test device.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class GoldenKindAttribute(string kind) : Attribute
{
    public string Kind { get; } = kind;

    /// <summary>The kind's cases also run on the ILGPU test devices (<see cref="Support.TestDevices.IlgpuNames"/>),
    /// not only on the CPU backend.</summary>
    public bool OnDevices { get; init; }

    /// <summary>With <see cref="OnDevices"/>: the case folders that run on the test devices (null: every case).</summary>
    public string[]? DeviceCases { get; init; }

    public bool RunsOnDevices(GoldenCase c) => OnDevices && (DeviceCases == null || DeviceCases.Contains(c.Name));

    public static Dictionary<string, (MethodInfo Runner, GoldenKindAttribute Kind)> Runners() =>
        typeof(GoldenKindAttribute).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            .Select(m => (m, a: m.GetCustomAttribute<GoldenKindAttribute>()))
            .Where(x => x.a != null)
            .ToDictionary(x => x.a!.Kind, x => (x.m, x.a!));
}
