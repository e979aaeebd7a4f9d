namespace MaskBit.Tests.Support;

/// <summary>The golden README's gradient check for models: max|a−b| ≤ rel·max|b| + abs·S per array (S the largest
/// |gradient| of the case) and pooled L2 ≤ pooled over all parameter gradients.</summary>
public sealed class GradTolerance(double rel = 2e-3, double absOfS = 1e-5, double pooled = 1e-3)
{
    private double _num, _den;
    private readonly List<(string Name, float[] Actual, float[] Expected)> _items = new();

    public void Add(string name, float[] actual, float[] expected) => _items.Add((name, actual, expected));

    public IEnumerable<string> Failures()
    {
        double s = _items.Count == 0 ? 0 : _items.Max(i => i.Expected.Length == 0 ? 0 : i.Expected.Max(v => Math.Abs((double)v)));
        foreach (var (name, a, b) in _items)
        {
            if (a.Length != b.Length) { yield return $"{name}: {a.Length} values, expected {b.Length}"; continue; }
            double maxDiff = 0, maxRef = 0;
            for (int i = 0; i < a.Length; i++)
            {
                double d = (double)a[i] - b[i];
                maxDiff = Math.Max(maxDiff, Math.Abs(d));
                maxRef = Math.Max(maxRef, Math.Abs((double)b[i]));
                _num += d * d; _den += (double)b[i] * b[i];
            }
            if (!(maxDiff <= rel * maxRef + absOfS * s)) yield return $"{name}: max diff {maxDiff:E2} > {rel}·{maxRef:E2} + {absOfS}·S";
        }
        double pooledErr = _den == 0 ? Math.Sqrt(_num) : Math.Sqrt(_num / _den);
        if (!(pooledErr <= pooled)) yield return $"pooled L2 error of all gradients {pooledErr:E2} > {pooled}";
    }
}
