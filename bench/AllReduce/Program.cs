using System.Diagnostics;
using MaskBit.Distributed;

// In-place float32 sum all-reduce of 1 MB … 256 MB, as the gradient averager issues it: median of a few repeats after
// one warm-up. Bus bandwidth is NCCL's convention, bytes × 2(n−1)/n per second (what each rank sends and receives).
var group = ProcessGroup.World;
if (group.WorldSize < 2)
{
    Console.Error.WriteLine("run under mpirun with 2 or more ranks: mpirun -np 2 dotnet run -c Release --project bench/AllReduce");
    return 2;
}
if (group.Rank == 0) Console.WriteLine($"ranks {group.WorldSize}; MB  median ms  algorithm MB/s  bus MB/s");
foreach (int megabytes in new[] { 1, 4, 16, 64, 256 })
{
    var buffer = new float[megabytes * (1 << 20) / sizeof(float)];
    buffer.AsSpan().Fill(1f);
    var times = new List<double>();
    for (int repeat = 0; repeat < 6; repeat++)
    {
        group.Barrier();
        var clock = Stopwatch.StartNew();
        group.StartAllReduceSum(buffer, 0, buffer.Length).Wait();
        if (repeat > 0) times.Add(clock.Elapsed.TotalSeconds);
    }
    times.Sort();
    double median = times[times.Count / 2];
    if (group.Rank == 0)
        Console.WriteLine($"{megabytes,4}  {median * 1e3,9:F1}  {megabytes / median,14:F0}  {megabytes / median * 2 * (group.WorldSize - 1) / group.WorldSize,8:F0}");
}
return 0;
