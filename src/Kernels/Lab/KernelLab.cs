using System.Diagnostics;
using System.Reflection;
using MaskBit.Kernels.Cpu;
using MaskBit.Kernels.Ilgpu;

namespace MaskBit.Kernels.Lab;

/// <summary>One numbered version of a kernel family (see README.md in this folder), with its design and its
/// arithmetic intensity written down next to it.</summary>
/// <param name="Number">1, 2, …: a later number is a newer design, not necessarily a faster one.</param>
/// <param name="Design">What the version does, in a sentence or two.</param>
/// <param name="FlopsPerSharedLoad">FLOPs per shared-memory load instruction in the inner loop (a 128-bit load counts
/// once); 0 where the version stages nothing in shared memory.</param>
/// <param name="FlopsPerGlobalByte">FLOPs per byte read from or written to global memory by a group, at full tiles.</param>
/// <param name="Entries">The kernel methods the version launches (the offline PTX test compiles and inspects them).</param>
/// <param name="VectorSharedLoads">Whether the design reads shared memory with 128-bit loads (the PTX test checks it).</param>
/// <param name="CudaOnly">Whether only a CUDA GPU runs it (inline PTX: the CPU accelerator cannot validate it).</param>
/// <param name="ToleranceFloor">The least relative error the version is allowed on any case: its arithmetic's rounding
/// where that is coarser than float32 (TF32, bf16); 0 for float32 versions.</param>
public sealed record LabVersion(int Number, string Design, double FlopsPerSharedLoad, double FlopsPerGlobalByte,
    IReadOnlyList<MethodInfo> Entries, bool VectorSharedLoads = false, bool CudaOnly = false, double ToleranceFloor = 0);

/// <summary>A problem of a family at one shape: inputs on an ILGPU device, every version runnable on them, and the
/// CPU backend's result for the same inputs.</summary>
public abstract class LabProblem : IDisposable
{
    /// <summary>Enqueues version <paramref name="version"/> on the device (no wait).</summary>
    public abstract void Run(int version);

    /// <summary>The device's output of the last run (waits for it).</summary>
    public abstract float[] Result();

    /// <summary>The CPU backend's output for the same inputs (computed once).</summary>
    public abstract float[] Reference();

    public abstract void Dispose();
}

/// <summary>A shape of a family: its name, a description, the FLOPs of one run, the largest |result − reference|
/// a version may show relative to the largest |reference| (float32 rounding grows with the reduction length), and
/// how to set it up on a device.</summary>
public sealed record LabCase(string Name, string Shape, double Flops, double Tolerance, Func<IlgpuBackend, LabProblem> Prepare);

/// <summary>A kernel family of the lab: its versions, the one the ILGPU backend uses on a GPU, small validation cases (edge shapes that are not tile multiples;
/// the CPU accelerator runs them in the tests) and the model's shapes for the benchmark.</summary>
public abstract class LabFamily
{
    public abstract string Name { get; }
    public abstract IReadOnlyList<LabVersion> Versions { get; }
    public abstract int UsedVersion { get; }
    public abstract IReadOnlyList<LabCase> ValidationCases { get; }
    public abstract IReadOnlyList<LabCase> BenchmarkCases { get; }

    public LabVersion Version(int number) => Versions.FirstOrDefault(v => v.Number == number)
        ?? throw new ArgumentException($"kernel family {Name} has no version {number} (it has {string.Join(", ", Versions.Select(v => v.Number))})");
}

/// <summary>A version's result against the CPU reference: the largest absolute difference, the largest
/// |reference| it is measured against, and the case's relative tolerance.</summary>
public readonly record struct LabCheck(double MaxError, double Scale, double Tolerance)
{
    public double RelativeError => MaxError / Math.Max(Scale, 1e-30);
    public bool Passed => !double.IsNaN(MaxError) && MaxError <= Tolerance * Math.Max(Scale, 1e-30);
}

/// <summary>The kernel lab: every family, validation of a version against the CPU reference, and timing.</summary>
public static class KernelLab
{
    public static IReadOnlyList<LabFamily> Families { get; } = [new GemmLab(), new ConvLab(), new ConvBackwardLab(weights: false), new ConvBackwardLab(weights: true), new LfqBackwardLab(), new ReduceLab(), new GroupNormLab(), new GroupNormBackwardLab(), new AttentionLab(), new AttentionBackwardLab()];

    public static LabFamily Family(string name) => Families.FirstOrDefault(f => f.Name == name)
        ?? throw new ArgumentException($"no kernel family '{name}' in the lab (it has {string.Join(", ", Families.Select(f => f.Name))})");

    /// <summary>Runs <paramref name="version"/> once and compares its output with the CPU reference, within the
    /// case's tolerance or the version's floor, whichever is larger.</summary>
    public static LabCheck Validate(LabCase c, LabProblem problem, LabVersion version)
    {
        problem.Run(version.Number);
        float[] actual = problem.Result(), expected = problem.Reference();
        double tolerance = Math.Max(c.Tolerance, version.ToleranceFloor);
        if (actual.Length != expected.Length) throw new InvalidOperationException($"{c.Name} v{version.Number}: {actual.Length} outputs, the reference has {expected.Length}");
        double maxError = 0, scale = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double error = Math.Abs((double)actual[i] - expected[i]);
            if (double.IsNaN(error) && !float.IsNaN(expected[i])) return new LabCheck(double.NaN, scale, tolerance);
            if (!double.IsNaN(error)) maxError = Math.Max(maxError, error);
            scale = Math.Max(scale, Math.Abs((double)expected[i]));
        }
        return new LabCheck(maxError, scale, tolerance);
    }

    /// <summary>Median milliseconds of <paramref name="version"/> over at least <paramref name="minRuns"/> runs and
    /// about <paramref name="targetSeconds"/>, each run waited for (after one untimed warm-up run).</summary>
    public static double MedianMs(IlgpuBackend device, LabProblem problem, int version, int minRuns = 5, double targetSeconds = 0.5)
    {
        problem.Run(version);
        device.Synchronize();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < minRuns || (total.Elapsed.TotalSeconds < targetSeconds && times.Count < 1000))
        {
            long t0 = Stopwatch.GetTimestamp();
            problem.Run(version);
            device.Synchronize();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }
}

/// <summary>The buffers of a lab problem on one backend, disposed together: inputs uploaded, outputs allocated,
/// results downloaded. <see cref="OnCpu"/> runs the CPU backend's reference computation on the same inputs.</summary>
internal sealed class LabBuffers(IBackend device) : IDisposable
{
    private readonly List<Storage> _owned = [];

    public IBackend Device => device;

    public Buf Upload(float[] values)
    {
        var buf = Allocate(values.Length, zero: false);
        device.Upload(values, buf);
        return buf;
    }

    public Buf Allocate(long length, bool zero = true)
    {
        var storage = device.Allocate(length, zero: zero);
        _owned.Add(storage);
        return new Buf(storage, 0);
    }

    /// <summary>The first <paramref name="length"/> floats of <paramref name="buf"/> (waits for the device).</summary>
    public float[] Download(Buf buf, long length)
    {
        var values = new float[length];
        device.Download(buf, values);
        return values;
    }

    /// <summary>The CPU backend's result: <paramref name="compute"/> uploads the inputs, runs the op and downloads
    /// the output; its buffers are freed after.</summary>
    public static T OnCpu<T>(Func<LabBuffers, T> compute)
    {
        using var cpu = new LabBuffers(CpuBackend.Instance);
        return compute(cpu);
    }

    public void Dispose()
    {
        foreach (var storage in _owned) storage.Dispose();
        _owned.Clear();
    }
}

/// <summary>Deterministic test data for lab problems: uniform in [−1, 1) from a seed.</summary>
internal static class LabData
{
    public static float[] Uniform(long length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (long i = 0; i < length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }
}
