using System.Text.Json;
using MaskBit.Autograd.Optim;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Optim;

/// <summary>Golden `lr_schedules` (README there): every schedule of the reference's get_scheduler.</summary>
public class LrScheduleGoldenTests
{
    private static IEnumerable<TestCaseData> Cases()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(GoldenCases.RepoDir, "lr_schedules", "schedules.json")));
        foreach (var c in json.RootElement.GetProperty("cases").EnumerateArray())
        {
            var schedule = new LrSchedule(c.GetProperty("name").GetString()!, c.GetProperty("learning_rate").GetDouble(),
                c.GetProperty("warmup_steps").GetInt32(), c.GetProperty("total_steps").GetInt64(),
                cycles: c.GetProperty("num_cycles").GetInt32(), power: c.GetProperty("power").GetDouble());
            var rates = c.GetProperty("rates").EnumerateArray().Select(r => r.GetDouble()).ToArray();
            yield return new TestCaseData(schedule, rates).SetArgDisplayNames($"{schedule.Name}-cycles{schedule.Cycles}-power{schedule.Power}");
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void SteppedRatesMatchTheReference(LrSchedule schedule, double[] expected)
    {
        for (int k = 0; k < expected.Length; k++)
        {
            Assert.That(schedule.CurrentLearningRate, Is.EqualTo(expected[k]).Within(1e-12 * Math.Max(expected[k], 1e-7)), $"step {k}");
            schedule.Advance();
        }
    }

    [Test]
    public void PolynomialRefusesABaseRateAtOrBelowItsEndRate() =>
        Assert.Throws<ArgumentException>(() => new LrSchedule("polynomial", 1e-7, 0, 10));
}
