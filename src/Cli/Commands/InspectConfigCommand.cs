using MaskBit.Autograd.Nn;
using MaskBit.Models.Config;
using MaskBit.Models.Generator;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Cli.Commands;

/// <summary>`maskbit inspect --config C`: builds the models a config describes and prints each one's parameter
/// count as a plain integer, then a per-module table (to compare with the reference's official models).</summary>
internal static class InspectConfigCommand
{
    public static int Run(string configPath, IReadOnlyList<string> overrides, TextWriter o)
    {
        var config = MaskBitConfig.Load(configPath, overrides);
        var models = new List<(string Name, Module Model)>();
        using var countingOnly = Init.ShapesOnly();
        if (config.Has("model.vq_model.quantizer_type"))
            models.Add(("tokenizer", ImageTokenizer.FromConfig(config)));
        if (config.Has("model.discriminator.name"))
            models.Add(("discriminator", GanDiscriminator.FromConfig(DiscriminatorConfig.From(config))));
        if (config.Has("model.mlm_model.model_cls"))
            models.Add(("generator", new MaskedGenerator(GeneratorConfig.From(config))));
        if (models.Count == 0) throw new ConfigException($"{configPath}: describes no model this port builds (model.vq_model, model.discriminator, model.mlm_model)");

        foreach (var (name, model) in models) o.WriteLine($"{name}: {model.ParameterCount()}");
        o.WriteLine();
        o.WriteLine($"  {"module",-40} {"parameters",14}");
        foreach (var (name, model) in models)
        {
            o.WriteLine($"  {name,-40} {model.ParameterCount(),14:N0}");
            long own = model.ParameterCount() - model.NamedChildren().Sum(c => c.Module.ParameterCount());
            if (own > 0) o.WriteLine($"    {"(own parameters)",-38} {own,14:N0}");
            foreach (var (child, module) in model.NamedChildren())
                o.WriteLine($"    {child,-38} {module.ParameterCount(),14:N0}");
        }
        return Program.ExitOk;
    }
}
