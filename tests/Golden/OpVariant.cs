using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Golden;

/// <summary>Marks <c>static void X(OpVariant v)</c> as the runner of one op of the `ops` fixture
/// (the <c>op</c> field of a variant in case.json meta.variants).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class GoldenOpAttribute(string op) : Attribute
{
    public string Op { get; } = op;
}

/// <summary>One variant of the `ops` fixture: arrays "&lt;variant&gt;.&lt;what&gt;", its meta entry, and checks that
/// collect every mismatch before failing.</summary>
public sealed class OpVariant
{
    public GoldenCase Case { get; }
    public string Name { get; }
    public JsonElement Meta { get; }
    public string Op => Meta.GetProperty("op").GetString()!;
    private readonly List<string> _failures = new();

    private OpVariant(GoldenCase c, string name, JsonElement meta) { Case = c; Name = name; Meta = meta; }

    public static IEnumerable<string> Names(GoldenCase c) =>
        c.Meta.GetProperty("variants").EnumerateArray().Select(v => v.GetProperty("name").GetString()!);

    public bool Has(string what) => Case.Has($"{Name}.{what}");
    public Tensor Input(string what, bool requiresGrad = false) => Case.Tensor($"{Name}.{what}", requiresGrad: requiresGrad);
    public float[] Floats(string what) => Case.Array($"{Name}.{what}").ToFloat32();
    public int MetaInt(string key) => Meta.GetProperty(key).GetInt32();
    public double MetaDouble(string key) => Meta.GetProperty(key).GetDouble();
    public bool MetaBool(string key) => Meta.GetProperty(key).GetBoolean();
    public bool HasMeta(string key) => Meta.TryGetProperty(key, out _);

    /// <summary>Backpropagates sum(y·R) with the variant's stored R.</summary>
    public void BackwardWithR(Tensor y) => y.Mul(Input("R")).Sum().Backward();

    /// <summary>Compares with the stored array by scaled error max|a−b|/max|b| (README tolerance for ops: 2e-5).</summary>
    public void Expect(string what, Tensor? actual, double scaledTol = 2e-5)
    {
        if (actual == null) { _failures.Add($"{what}: no value computed"); return; }
        var expected = Case.Array($"{Name}.{what}");
        if (!expected.Shape.AsSpan().SequenceEqual(actual.Shape))
        { _failures.Add($"{what}: shape {ShapeUtil.Format(actual.Shape)}, expected {ShapeUtil.Format(expected.Shape)}"); return; }
        double err = Compare.ScaledError(actual.ToArray(), expected.ToFloat32());
        if (!(err <= scaledTol)) _failures.Add($"{what}: scaled error {err:E2} > {scaledTol:E0}");
    }

    public void ExpectInts(string what, int[] actual)
    {
        var expected = Case.Array($"{Name}.{what}").ToInt64();
        if (!expected.Select(v => (int)v).SequenceEqual(actual)) _failures.Add($"{what}: integers differ");
    }

    public static void Run(GoldenCase c, string variant)
    {
        var meta = c.Meta.GetProperty("variants").EnumerateArray().First(v => v.GetProperty("name").GetString() == variant);
        var v = new OpVariant(c, variant, meta);
        var runner = Runners.Value.GetValueOrDefault(v.Op) ?? throw new NotImplementedException($"no runner for op '{v.Op}' ({c}/{variant})");
        try { runner.Invoke(null, new object[] { v }); }
        catch (TargetInvocationException e) { ExceptionDispatchInfo.Capture(e.InnerException!).Throw(); }
        if (v._failures.Count > 0) Assert.Fail($"{c}/{variant}:\n  " + string.Join("\n  ", v._failures));
    }

    private static readonly Lazy<Dictionary<string, MethodInfo>> Runners = new(() =>
        typeof(OpVariant).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            .SelectMany(m => m.GetCustomAttributes<GoldenOpAttribute>().Select(a => (a.Op, m)))
            .ToDictionary(x => x.Op, x => x.m));
}
