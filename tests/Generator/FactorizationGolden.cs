using MaskBit.Models.Generator;
using MaskBit.Tests.Golden;

namespace MaskBit.Tests.Generator;

/// <summary>Golden `factorization`: split_factorized_tokens and combine_factorized_tokens, exact.</summary>
public static class FactorizationGolden
{
    [GoldenKind("factorization")]
    public static void Run(GoldenCase c)
    {
        var checks = new GoldenChecks(c);
        foreach (var combo in c.Json.GetProperty("combos").EnumerateArray())
        {
            string p = combo.GetProperty("prefix").GetString()!;
            int codebookSize = combo.GetProperty("codebook_size").GetInt32(), splits = combo.GetProperty("splits").GetInt32();
            var split = Factorization.Split(c.Tensor($"{p}.tokens"), codebookSize, splits);
            checks.Exact($"{p}.split", split.ToIntArray());
            checks.Exact($"{p}.combined", Factorization.Combine(c.Tensor($"{p}.split"), codebookSize, splits).ToIntArray());
        }
        checks.AssertAll();
    }
}
