using MaskBit.Models.Interop;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Generator;

/// <summary>Collects mismatches against a case's stored arrays (or any npz dictionary) so that one run reports
/// every failing array, not only the first.</summary>
public sealed class GoldenChecks(GoldenCase c)
{
    private readonly List<string> _failures = new();

    public void Fail(string message) => _failures.Add(message);

    /// <summary>Integers, booleans or integral floats, compared exactly.</summary>
    public void Exact(string name, ReadOnlySpan<int> actual)
    {
        var expected = c.Array(name).ToFloat64();
        if (expected.Length != actual.Length) { Fail($"{name}: {actual.Length} values, expected {expected.Length}"); return; }
        for (int i = 0; i < expected.Length; i++)
            if (actual[i] != expected[i]) { Fail($"{name}[{i}]: {actual[i]}, expected {expected[i]}"); return; }
    }

    public void Exact(string name, ReadOnlySpan<bool> actual)
    {
        var ints = new int[actual.Length];
        for (int i = 0; i < ints.Length; i++) ints[i] = actual[i] ? 1 : 0;
        Exact(name, ints);
    }

    /// <summary>|Δ| ≤ tolerance, with +inf / −inf required at exactly the reference's positions.</summary>
    public void Close(string name, ReadOnlySpan<float> actual, double tolerance)
    {
        var expected = c.Array(name).ToFloat32();
        if (expected.Length != actual.Length) { Fail($"{name}: {actual.Length} values, expected {expected.Length}"); return; }
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsInfinity(expected[i]) || float.IsInfinity(actual[i]))
            {
                if (actual[i] != expected[i]) { Fail($"{name}[{i}]: {actual[i]}, expected {expected[i]} (infinity pattern)"); return; }
                continue;
            }
            worst = Math.Max(worst, Math.Abs((double)actual[i] - expected[i]));
            if (double.IsNaN(actual[i])) worst = double.PositiveInfinity;
        }
        if (!(worst <= tolerance)) Fail($"{name}: max |Δ| {worst:E2} > {tolerance:E1}");
    }

    public void Close(string name, float actual, double tolerance) => Close(name, new[] { actual }, tolerance);

    public void AssertAll()
    {
        if (_failures.Count > 0) Assert.Fail($"{c}: {_failures.Count} mismatches\n  " + string.Join("\n  ", _failures.Take(40)));
    }
}
