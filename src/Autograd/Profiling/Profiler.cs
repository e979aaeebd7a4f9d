using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using MaskBit.Kernels;

namespace MaskBit.Autograd.Profiling;

/// <summary>One timed interval: a kernel call (category "kernel"), an autograd op's forward ("op") or a backward
/// function ("backward"). Times are Stopwatch ticks; <see cref="Flops"/> is 0 where not defined.</summary>
public readonly record struct ProfileEvent(string Name, string Category, long Start, long End, int ThreadId, string Args, double Flops)
{
    public double Milliseconds => (End - Start) * 1000.0 / Stopwatch.Frequency;
}

/// <summary>Per-name totals of the kernel (or op) events.</summary>
public sealed record ProfileRow(string Name, int Count, double TotalMs, double Flops)
{
    public double MeanMs => TotalMs / Count;
    /// <summary>GFLOP/s over all calls, or null for kernels without a FLOP count.</summary>
    public double? Gflops => Flops > 0 ? Flops / (TotalMs * 1e6) : null;
}

/// <summary>
/// Collects the events of a <see cref="ProfilingBackend"/> and of the tape (as <see cref="ITapeListener"/>), and
/// reports them as a table sorted by total time and as a Chrome trace (chrome://tracing, ui.perfetto.dev).
/// Forward ops are named after the fact: an op records itself on the tape after its kernels ran, so the span
/// of op X covers the kernels since the previous op finished. Backward functions are spans around their call.
/// </summary>
public sealed class Profiler : ITapeListener
{
    private readonly List<ProfileEvent> _events = new();
    private readonly object _lock = new();
    /// <summary>Start of the first kernel since the last op mark on this thread (0: none yet).</summary>
    [ThreadStatic] private static long _pendingStart;

    public IReadOnlyList<ProfileEvent> Events { get { lock (_lock) return _events.ToList(); } }

    public void Clear()
    {
        lock (_lock) _events.Clear();
        _pendingStart = 0;
    }

    internal void AddKernel(string name, long start, long end, string args, double flops)
    {
        if (_pendingStart == 0) _pendingStart = start;
        Add(new ProfileEvent(name, "kernel", start, end, Environment.CurrentManagedThreadId, args, flops));
    }

    private void Add(ProfileEvent e) { lock (_lock) _events.Add(e); }

    public void OnForward(string op)
    {
        if (_pendingStart == 0) return;   // views and other ops without kernels get no span
        Add(new ProfileEvent(op, "op", _pendingStart, Stopwatch.GetTimestamp(), Environment.CurrentManagedThreadId, "", 0));
        _pendingStart = 0;
    }

    public IDisposable OnBackward(string op)
    {
        _pendingStart = 0;
        return new BackwardSpan(this, op + " backward", Stopwatch.GetTimestamp());
    }

    private sealed class BackwardSpan(Profiler profiler, string name, long start) : IDisposable
    {
        public void Dispose()
        {
            profiler.Add(new ProfileEvent(name, "backward", start, Stopwatch.GetTimestamp(), Environment.CurrentManagedThreadId, "", 0));
            _pendingStart = 0;
        }
    }

    /// <summary>Totals per name of the events of one category, largest total first.</summary>
    public IReadOnlyList<ProfileRow> Summary(string category = "kernel") =>
        Events.Where(e => e.Category == category).GroupBy(e => e.Name)
            .Select(g => new ProfileRow(g.Key, g.Count(), g.Sum(e => e.Milliseconds), g.Sum(e => e.Flops)))
            .OrderByDescending(r => r.TotalMs).ToList();

    /// <summary>The kernel table (count, total, mean, share of all kernel time, GFLOP/s) and, when the tape
    /// reported ops, the same for autograd ops (spans; ops called inside a backward count there too).</summary>
    public void WriteTable(TextWriter o, int maxRows = 40)
    {
        WriteRows(o, "kernel", Summary("kernel"), maxRows);
        var ops = Summary("op").Concat(Summary("backward")).OrderByDescending(r => r.TotalMs).ToList();
        if (ops.Count == 0) return;
        o.WriteLine();
        WriteRows(o, "autograd op", ops, maxRows);
    }

    private static void WriteRows(TextWriter o, string what, IReadOnlyList<ProfileRow> rows, int maxRows)
    {
        double total = rows.Sum(r => r.TotalMs);
        var cells = rows.Take(maxRows).Select(r => new[]
        {
            r.Name, r.Count.ToString(CultureInfo.InvariantCulture), F(r.TotalMs, "F3"), F(r.MeanMs, "F4"),
            F(100 * r.TotalMs / Math.Max(total, 1e-12), "F1"), r.Gflops is { } g ? F(g, "F1") : "",
        }).ToList();
        string[] header = [what, "count", "total ms", "mean ms", "share %", "GFLOP/s"];
        var widths = header.Select((h, i) => cells.Select(c => c[i].Length).Append(h.Length).Max()).ToArray();
        string Line(string[] c) => string.Join("  ", c.Select((x, i) => i == 0 ? x.PadRight(widths[i]) : x.PadLeft(widths[i]))).TrimEnd();
        o.WriteLine(Line(header));
        foreach (var c in cells) o.WriteLine(Line(c));
        if (rows.Count > maxRows) o.WriteLine($"… {rows.Count - maxRows} more");
        o.WriteLine($"{rows.Sum(r => r.Count)} calls, {F(total, "F1")} ms in total");
    }

    private static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>Writes the events as Chrome trace JSON: complete events ("ph": "X") with ts and dur in µs,
    /// one track per thread, args with the shapes and GFLOP/s.</summary>
    public void WriteChromeTrace(string path)
    {
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
        w.WriteStartObject();
        w.WriteString("displayTimeUnit", "ms");
        w.WriteStartArray("traceEvents");
        var events = Events;
        long origin = events.Count > 0 ? events.Min(e => e.Start) : 0;
        foreach (int tid in events.Select(e => e.ThreadId).Distinct())
        {
            w.WriteStartObject();
            w.WriteString("name", "thread_name");
            w.WriteString("ph", "M");
            w.WriteNumber("pid", 1);
            w.WriteNumber("tid", tid);
            w.WriteStartObject("args");
            w.WriteString("name", $"managed thread {tid}");
            w.WriteEndObject();
            w.WriteEndObject();
        }
        double ticksPerMicrosecond = Stopwatch.Frequency / 1e6;
        foreach (var e in events)
        {
            w.WriteStartObject();
            w.WriteString("name", e.Name);
            w.WriteString("cat", e.Category);
            w.WriteString("ph", "X");
            w.WriteNumber("ts", Math.Round((e.Start - origin) / ticksPerMicrosecond, 3));
            w.WriteNumber("dur", Math.Round((e.End - e.Start) / ticksPerMicrosecond, 3));
            w.WriteNumber("pid", 1);
            w.WriteNumber("tid", e.ThreadId);
            w.WriteStartObject("args");
            if (e.Args.Length > 0) w.WriteString("shapes", e.Args);
            if (e.Flops > 0)
            {
                w.WriteNumber("gflop", Math.Round(e.Flops / 1e9, 6));
                w.WriteNumber("gflops_per_s", Math.Round(e.Flops / (e.Milliseconds * 1e6), 2));
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>Installs a profiling decorator over <paramref name="inner"/> as this thread's default device and the
    /// profiler as this thread's tape listener, until the result is disposed. Tensors created meanwhile (models
    /// included) live on the decorator, so every kernel they run is timed.</summary>
    public IDisposable Install(IBackend inner)
    {
        var previousDevice = Device.Default;
        var previousListener = Tape.Listener;
        var backend = new ProfilingBackend(inner, this);
        Device.Default = backend;
        Tape.Listener = this;
        _pendingStart = 0;
        return new Restore(() => { Device.Default = previousDevice; Tape.Listener = previousListener; });
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        private Action? _undo = undo;
        public void Dispose() { _undo?.Invoke(); _undo = null; }
    }
}
