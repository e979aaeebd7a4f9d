using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using MaskBit.Models.Benchmarks;

namespace MaskBit.Bench;

/// <summary>A summary column derived from a workload's mean time and its FLOP or byte count: GFLOP/s, % of the
/// FMA peak, or GB/s. Empty for workloads without that count.</summary>
public sealed class ThroughputColumn : IColumn
{
    public enum Kind { Gflops, PercentOfPeak, GBytesPerSecond }

    private readonly Kind _kind;

    public ThroughputColumn(Kind kind) => _kind = kind;

    public static readonly IColumn[] All =
        [new ThroughputColumn(Kind.Gflops), new ThroughputColumn(Kind.PercentOfPeak), new ThroughputColumn(Kind.GBytesPerSecond)];

    public string Id => $"{nameof(ThroughputColumn)}.{_kind}";
    public string ColumnName => _kind switch
    {
        Kind.Gflops => "GFLOP/s",
        Kind.PercentOfPeak => "% peak",
        _ => "GB/s",
    };
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => (int)_kind;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => _kind switch
    {
        Kind.Gflops => "Arithmetic rate at the mean time (2 FLOPs per multiply-add)",
        Kind.PercentOfPeak => $"GFLOP/s as a share of this machine's FMA peak ({FmaPeak.MachineHeader}); ! marks a row above 100%: {FmaPeak.UnderMeasuredNote}",
        _ => "Compulsory memory traffic per second at the mean time (memory-bound ops)",
    };

    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is not > 0 || benchmarkCase.Parameters["Workload"] is not string name) return "-";
        var w = Workload.Get(name);
        double seconds = meanNs.Value * 1e-9;
        return _kind switch
        {
            Kind.Gflops when w.Flops > 0 => (w.Flops / seconds / 1e9).ToString("F1"),
            Kind.PercentOfPeak when w.Flops > 0 => PercentOfPeak(w.Flops / seconds / 1e9),
            Kind.GBytesPerSecond when w.Bytes > 0 => (w.Bytes / seconds / 1e9).ToString("F2"),
            _ => "-",
        };
    }

    private static string PercentOfPeak(double gflops)
    {
        var (percent, underMeasured) = FmaPeak.Share(gflops);
        return percent.ToString("F1") + (underMeasured ? "!" : "");
    }

    public override string ToString() => ColumnName;
}
