using System.Reflection;
using System.Runtime.ExceptionServices;

namespace MaskBit.Tests.Golden;

/// <summary>Every fixture case becomes a test named after its folder; `ops` cases become one test per variant.
/// A kind without a runner yet is reported as ignored, naming the kind.</summary>
[TestFixture]
public class GoldenParityTests
{
    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var c in GoldenCases.All())
        {
            if (c.Kind == "ops")
                foreach (var v in OpVariant.Names(c))
                    yield return new TestCaseData(c, v).SetName($"Golden({c.Source}/{c.Name}/{v})");
            else
                yield return new TestCaseData(c, null).SetName($"Golden({c.Source}/{c.Name})");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void Parity(GoldenCase c, string? variant)
    {
        if (c.Kind == "ops") { OpVariant.Run(c, variant!); return; }
        if (!GoldenKindAttribute.Runners().TryGetValue(c.Kind, out var runner))
            Assert.Ignore($"no parity runner for kind '{c.Kind}' yet (case {c})");
        try { runner.Invoke(null, new object[] { c }); }
        catch (TargetInvocationException e) { ExceptionDispatchInfo.Capture(e.InnerException!).Throw(); }
    }
}
