using MaskBit.Autograd;
using MaskBit.Models.Generator;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Generator;

/// <summary>Golden `masking`: get_masking_ratio for every mode (exact for root, square, linear; one float32 ulp
/// for cosine and arccos), the sampler's per-step mask counts (exact), and get_mask_tokens replayed from the
/// stored draws (r exact, val_to_mask within one ulp, tokens and mask exact).</summary>
public static class MaskingGolden
{
    private const double OneUlpNearOne = 1.2e-7;

    [GoldenKind("masking")]
    public static void Run(GoldenCase c)
    {
        var checks = new GoldenChecks(c);
        foreach (var name in c.Json.GetProperty("get_masking_ratio_modes").EnumerateArray().Select(m => m.GetString()!))
        {
            var mode = Masking.ParseSchedule(name);
            double tolerance = mode is MaskSchedule.Cosine or MaskSchedule.Arccos ? OneUlpNearOne : 0;
            foreach (var (progress, ratios) in new[] { ("progress", $"ratio.{name}"), ("progress_steps", $"ratio_steps.{name}") })
                checks.Close(ratios, c.Array(progress).ToFloat32().Select(p => Masking.GetMaskingRatio(p, mode)).ToArray(), tolerance);
        }

        foreach (var key in c.Io.Keys.Where(k => k.StartsWith("schedule.", StringComparison.Ordinal)))
        {
            // schedule.<mode>.steps<S>.maskable<N>
            var parts = key.Split('.');
            var mode = Masking.ParseSchedule(parts[1]);
            int steps = int.Parse(parts[2]["steps".Length..]), maskable = int.Parse(parts[3]["maskable".Length..]);
            var counts = new int[steps];
            int numMasked = maskable;
            for (int i = 0; i < steps; i++)
                numMasked = counts[i] = Masking.TokensToMask(Masking.GetMaskingRatio((i + 1) / (double)steps, mode), maskable, numMasked).Count;
            checks.Exact(key, counts);
        }

        var tokensArray = c.Array("gmt.tokens");
        var tokens = tokensArray.ToInt32();
        int batch = tokensArray.Shape[0];
        foreach (var call in c.Json.GetProperty("get_mask_tokens_calls").EnumerateArray())
        {
            string p = call.GetProperty("prefix").GetString()!;
            var mode = Masking.ParseSchedule(call.GetProperty("mode").GetString()!);
            var random = new ReplayRandomSource();
            random.Uniforms.Enqueue(c.Array($"{p}.rand_r").ToFloat32());
            random.Uniforms.Enqueue(c.Array($"{p}.rand_mask").ToFloat32());
            var result = Masking.GetMaskTokens(tokens, batch, call.GetProperty("mask_token").GetInt32(), mode,
                call.GetProperty("min_masking_ratio").GetDouble(), random);
            if (!random.Exhausted) checks.Fail($"{p}: not every stored draw was consumed");
            checks.Close($"{p}.r", result.R, 0);
            checks.Close($"{p}.val_to_mask", result.ValueToMask, mode is MaskSchedule.Cosine or MaskSchedule.Arccos ? OneUlpNearOne : 0);
            checks.Exact($"{p}.masked_tokens", result.Tokens);
            checks.Exact($"{p}.mask", result.Mask);
        }
        Assert.Throws<ArgumentException>(() => Masking.GetMaskTokens(tokens, batch, 16, MaskSchedule.Root, 0, new SeededRandomSource(0)));
        checks.AssertAll();
    }
}
