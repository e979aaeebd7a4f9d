using System.Diagnostics;
using System.Globalization;
using MaskBit.Distributed;
using MaskBit.Kernels.Cpu;
using MaskBit.Models.Benchmarks;
using MaskBit.Models.Config;

// Two measurements of data-parallel training (bench/RESULTS.md gives the commands):
//   AllReduce.dll                      in-place float32 sum all-reduce of 1 MB … 256 MB, as the gradient averager
//                                      issues it: median of 5 after a warm-up, under mpirun with 2 or more ranks.
//   AllReduce.dll step tokenizer|generator [--threads N] [--batch B] [--steps S] [--no-overlap]
//                                      the small tokenizer's (G + D) or generator's training step on random inputs,
//                                      B images per rank: median ms per step of S after 2 warm-ups and global images/s;
//                                      --no-overlap starts the gradient all-reduces after the backward instead of
//                                      during it (the A/B of the time the overlap hides). One process or under mpirun.
var group = ProcessGroup.World;
return args.Length > 0 && args[0] == "step" ? Step(args[1..]) : Bandwidth();

int Bandwidth()
{
    if (group.WorldSize < 2)
    {
        Console.Error.WriteLine("run under mpirun with 2 or more ranks: mpirun -np 2 dotnet bench/AllReduce/bin/Release/net10.0/AllReduce.dll");
        return 2;
    }
    // Bus bandwidth is NCCL's convention, bytes × 2(n−1)/n per second (what each rank sends and receives).
    // Minor page faults per call show a temporary buffer mapped afresh on every call (MpiCollectives.MaxMessageBytes);
    // unlike the times they do not depend on the machine's load.
    if (group.Rank == 0) Console.WriteLine($"ranks {group.WorldSize}; MB  median ms  algorithm MB/s  bus MB/s  minor faults per call (rank 0)");
    foreach (int megabytes in new[] { 1, 4, 16, 64, 256 })
    {
        var buffer = new float[megabytes * (1 << 20) / sizeof(float)];
        buffer.AsSpan().Fill(1f);
        const int repeats = 6;
        long faults = MinorFaults();
        double median = Median(repeats, () => group.StartAllReduceSum(buffer, 0, buffer.Length).Wait());
        faults = MinorFaults() - faults;
        // Each call doubled every element (on 2 ranks): a wrong piece shows as another value.
        float expected = MathF.Pow(group.WorldSize, repeats);
        if (Array.FindIndex(buffer, v => v != expected) is int wrong and >= 0)
            throw new InvalidOperationException($"element {wrong} is {buffer[wrong]}, expected {expected}");
        if (group.Rank == 0)
            Console.WriteLine($"{megabytes,4}  {median * 1e3,9:F1}  {megabytes / median,14:F0}  {megabytes / median * 2 * (group.WorldSize - 1) / group.WorldSize,8:F0}  {faults / repeats,8}");
    }
    return 0;
}

int Step(string[] options)
{
    string? Option(string name) => Array.IndexOf(options, name) is int i and >= 0 && i + 1 < options.Length ? options[i + 1] : null;
    int Integer(string name, int fallback) => Option(name) is { } text ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;
    string model = options.FirstOrDefault() ?? "";
    if (model is not ("tokenizer" or "generator"))
    {
        Console.Error.WriteLine("usage: AllReduce.dll step tokenizer|generator [--threads N] [--batch B] [--steps S] [--no-overlap]");
        return 2;
    }
    CpuParallel.Workers = Integer("--threads", Environment.ProcessorCount);
    int batch = Integer("--batch", model == "tokenizer" ? 8 : 32), steps = Integer("--steps", 5);
    bool overlap = !options.Contains("--no-overlap");
    IModelStep step;
    if (model == "tokenizer")
    {
        var workload = new TokenizerStepWorkload(MaskBitConfig.Load(ModelWorkloads.SmallTokenizerConfig), batch);
        workload.Step.Gradients.OverlapWithBackward = overlap;
        step = workload;
    }
    else
    {
        var workload = new MlmStepWorkload(MaskBitConfig.Load(ModelWorkloads.SmallGeneratorConfig), batch);
        workload.Step.Gradients.OverlapWithBackward = overlap;
        step = workload;
    }
    step.Run();
    double median = Median(steps + 1, () => step.Run());
    if (group.Rank == 0)
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{model} step: {group.WorldSize} process(es) × {CpuParallel.Workers} thread(s), batch {batch} per rank, overlap {(overlap ? "on" : "off")}: " +
            $"{median * 1e3:F1} ms per step (median of {steps}), {batch * group.WorldSize / median:F1} images/s"));
    return 0;
}

// This process's minor page faults so far (/proc/self/stat, field 10).
static long MinorFaults()
{
    string stat = File.ReadAllText("/proc/self/stat");
    return long.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[7], CultureInfo.InvariantCulture);
}

// The median time of repeats − 1 runs after one warm-up, each started together on every rank.
double Median(int repeats, Action run)
{
    var times = new List<double>();
    for (int repeat = 0; repeat < repeats; repeat++)
    {
        group.Barrier();
        var clock = Stopwatch.StartNew();
        run();
        if (repeat > 0) times.Add(clock.Elapsed.TotalSeconds);
    }
    times.Sort();
    return times[times.Count / 2];
}
