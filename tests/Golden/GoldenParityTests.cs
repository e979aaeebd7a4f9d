using System.Reflection;
using System.Runtime.ExceptionServices;
using MaskBit.Autograd;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Golden;

/// <summary>Every fixture case becomes a test named after its folder; `ops` cases become one test per variant.
/// Cases of the kinds marked <see cref="GoldenKindAttribute.OnDevices"/> (and the `ops` variants) run once more on
/// each ILGPU test device, named "…@device", with every tensor created there (on "ilgpu-cpu", a CPU accelerator
/// with narrow warps: <see cref="TestDevices.GetForModels"/>). A kind without a runner yet is
/// reported as ignored, naming the kind.</summary>
[TestFixture]
[NonParallelizable]
public class GoldenParityTests
{
    private static readonly Dictionary<string, (MethodInfo Runner, GoldenKindAttribute Kind)> Runners = GoldenKindAttribute.Runners();

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var c in GoldenCases.All())
        {
            bool onDevices = c.Kind == "ops" || (Runners.TryGetValue(c.Kind, out var r) && r.Kind.RunsOnDevices(c));
            IEnumerable<string> devices = onDevices ? [TestDevices.Cpu, .. TestDevices.IlgpuNames] : [TestDevices.Cpu];
            foreach (var device in devices)
            {
                string suffix = device == TestDevices.Cpu ? "" : $"@{device}";
                if (c.Kind == "ops")
                    foreach (var v in OpVariant.Names(c))
                        yield return new TestCaseData(c, v, device).SetName($"Golden({c.Source}/{c.Name}/{v}{suffix})");
                else
                    yield return new TestCaseData(c, null, device).SetName($"Golden({c.Source}/{c.Name}{suffix})");
            }
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void Parity(GoldenCase c, string? variant, string device)
    {
        var previous = Device.Default;
        int assertionsBefore = DeviceAssertions.Failures;
        Device.Default = TestDevices.GetForModels(device);
        try
        {
            if (c.Kind == "ops") { OpVariant.Run(c, variant!); return; }
            if (!Runners.TryGetValue(c.Kind, out var runner))
                Assert.Ignore($"no parity runner for kind '{c.Kind}' yet (case {c})");
            try { runner.Runner.Invoke(null, new object[] { c }); }
            catch (TargetInvocationException e) { ExceptionDispatchInfo.Capture(e.InnerException!).Throw(); }
        }
        finally { Device.Default = previous; }
        Assert.That(DeviceAssertions.Failures, Is.EqualTo(assertionsBefore), $"device assertion failed: {DeviceAssertions.LastMessage}");
    }
}
