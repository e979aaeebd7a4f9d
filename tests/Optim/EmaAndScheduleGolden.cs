using System.Text.Json;
using MaskBit.Autograd;
using MaskBit.Autograd.Optim;
using MaskBit.Tests.Golden;
using MaskBit.Tests.Support;

namespace MaskBit.Tests.Optim;

/// <summary>Golden `ema_and_schedule`: EMA, cosine_with_minimum schedule, AdamW and gradient clipping against
/// the reference (README: relative ≤ 1e-6, float32 arithmetic in the same formula order).</summary>
public static class EmaAndScheduleGolden
{
    private const double Tol = 2e-6;

    [GoldenKind("ema_and_schedule")]
    public static void Run(GoldenCase c)
    {
        var failures = new List<string>();
        void Check(string name, float[] actual)
        {
            double e = Compare.ScaledError(actual, c.Array(name).ToFloat32());
            if (!(e <= Tol)) failures.Add($"{name}: scaled error {e:E2}");
        }

        foreach (var v in c.Meta.GetProperty("ema_variants").EnumerateArray()) RunEma(c, v, Check, failures);
        foreach (var s in c.Meta.GetProperty("schedules").EnumerateArray()) RunSchedule(c, s, Check);
        foreach (var a in c.Meta.GetProperty("adamw_variants").EnumerateArray()) RunAdamW(c, a, Check);
        foreach (var clip in new[] { "big", "small" })
        {
            var g0 = Tensor.Zeros(c.Array($"clip.{clip}.g0").Shape); var g1 = Tensor.Zeros(c.Array($"clip.{clip}.g1").Shape);
            var p0 = Tensor.Zeros(g0.Shape).RequiresGrad_(); var p1 = Tensor.Zeros(g1.Shape).RequiresGrad_();
            p0.Grad = c.Tensor($"clip.{clip}.g0"); p1.Grad = c.Tensor($"clip.{clip}.g1");
            float total = GradClip.ClipGradNorm(new[] { p0, p1 }, (float)c.Meta.GetProperty("clip").GetProperty("max_norm").GetDouble());
            Check($"clip.{clip}.total_norm", new[] { total });
            Check($"clip.{clip}.clipped.g0", p0.Grad!.ToArray());
            Check($"clip.{clip}.clipped.g1", p1.Grad!.ToArray());
        }
        if (failures.Count > 0) Assert.Fail($"{c}:\n  " + string.Join("\n  ", failures));
    }

    private static void RunEma(GoldenCase c, JsonElement v, Action<string, float[]> check, List<string> failures)
    {
        string name = v.GetProperty("name").GetString()!, pre = $"ema.{name}";
        var kw = v.GetProperty("kwargs");
        double Get(string key, double dflt) => kw.TryGetProperty(key, out var e) ? e.GetDouble() : dflt;
        var names = new[] { "p0", "p1", "frozen" };
        var ps = names.Select(n => c.Tensor($"{pre}.init.{n}")).ToArray();
        ps[0].RequiresGrad_(); ps[1].RequiresGrad_();
        var ema = new Ema(ps, decay: Get("decay", 0.9999), minDecay: Get("min_decay", 0.0),
            updateAfterStep: (int)Get("update_after_step", 0), updateEvery: (int)Get("update_every", 1),
            useEmaWarmup: kw.TryGetProperty("use_ema_warmup", out var w) && w.GetBoolean(),
            invGamma: Get("inv_gamma", 1.0), power: Get("power", 2.0 / 3.0));
        if (v.GetProperty("set_step").ValueKind == JsonValueKind.Number) ema.SetStep(v.GetProperty("set_step").GetInt64());
        int steps = v.GetProperty("steps").GetInt32();
        var shadows = names.Select(_ => new List<float>()).ToArray();
        var decays = new List<float>(); var optSteps = new List<long>();
        for (int t = 0; t < steps; t++)
        {
            for (int k = 0; k < names.Length; k++)
            {
                var seq = c.Array($"{pre}.param_seq.{names[k]}").ToFloat32();
                int n = (int)ps[k].Numel;
                ps[k].CopyFrom_(seq.AsSpan(t * n, n));
            }
            ema.Step(ps);
            for (int k = 0; k < names.Length; k++) shadows[k].AddRange(ema.Shadow[k].ToArray());
            decays.Add((float)(ema.CurrentDecay ?? double.NaN));
            optSteps.Add(ema.OptimizationStep);
        }
        for (int k = 0; k < names.Length; k++) check($"{pre}.shadow.{names[k]}", shadows[k].ToArray());
        check($"{pre}.cur_decay_value", decays.ToArray());
        if (!c.Array($"{pre}.optimization_step").ToInt64().SequenceEqual(optSteps)) failures.Add($"{pre}.optimization_step differs");
        var grid = c.Array("ema.get_decay_grid").ToInt64();
        check($"{pre}.get_decay", grid.Select(s => (float)ema.GetDecay(s)).ToArray());
    }

    private static void RunSchedule(GoldenCase c, JsonElement s, Action<string, float[]> check)
    {
        string name = s.GetProperty("name").GetString()!, pre = $"schedule.{name}";
        var sched = new LrSchedule("cosine_with_minimum", s.GetProperty("base_lr").GetDouble(), s.GetProperty("warmup").GetInt32(),
            s.GetProperty("total").GetInt64(), s.GetProperty("minimum_rate").GetDouble());
        var steps = c.Array($"{pre}.steps").ToInt64();
        check($"{pre}.factor", steps.Select(k => (float)sched.Factor(k)).ToArray());
        check($"{pre}.lr", steps.Select(k => (float)sched.LearningRateAt(k)).ToArray());
        if (c.Has($"{pre}.stepped_get_last_lr_first12"))
        {
            var lrs = new List<float>();
            for (int i = 0; i < 12; i++) { lrs.Add((float)sched.CurrentLearningRate); sched.Advance(); }
            check($"{pre}.stepped_get_last_lr_first12", lrs.ToArray());
        }
    }

    private static void RunAdamW(GoldenCase c, JsonElement a, Action<string, float[]> check)
    {
        string name = a.GetProperty("name").GetString()!, pre = $"adamw.{name}";
        var betas = a.GetProperty("betas").EnumerateArray().Select(b => b.GetDouble()).ToArray();
        var ps = new[] { c.Tensor($"{pre}.init.p0").RequiresGrad_(), c.Tensor($"{pre}.init.p1").RequiresGrad_() };
        var opt = new AdamW(ps, a.GetProperty("lr").GetDouble(), betas[0], betas[1], a.GetProperty("eps").GetDouble(), a.GetProperty("weight_decay").GetDouble());
        var names = new[] { "p0", "p1" };
        var after = names.ToDictionary(n => n, _ => (p: new List<float>(), m: new List<float>(), v: new List<float>()));
        for (int t = 0; t < 3; t++)
        {
            for (int k = 0; k < 2; k++)
            {
                var g = c.Array($"{pre}.grads.{names[k]}").ToFloat32();
                int n = (int)ps[k].Numel;
                ps[k].Grad = Tensor.FromArray(g.AsSpan(t * n, n), ps[k].Shape);
            }
            opt.Step();
            for (int k = 0; k < 2; k++)
            {
                after[names[k]].p.AddRange(ps[k].ToArray());
                after[names[k]].m.AddRange(opt.ExpAvgOf(ps[k])!.ToArray());
                after[names[k]].v.AddRange(opt.ExpAvgSqOf(ps[k])!.ToArray());
            }
        }
        foreach (var n in names)
        {
            check($"{pre}.after_step.param.{n}", after[n].p.ToArray());
            check($"{pre}.after_step.exp_avg.{n}", after[n].m.ToArray());
            check($"{pre}.after_step.exp_avg_sq.{n}", after[n].v.ToArray());
        }
    }
}
