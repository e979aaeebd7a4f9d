using System.Globalization;

namespace MaskBit.Models.Config;

/// <summary>A bad config: the message names the file (and line) and the key.</summary>
public sealed class ConfigException(string message) : Exception(message);

/// <summary>One key set to a value (a scalar or a list) by code composing a config (<see cref="MaskBitConfig.With"/>);
/// written as the command-line override that does the same.</summary>
public sealed record ConfigSetting(string Key, ConfigNode Value)
{
    public ConfigSetting(string key, long value) : this(key, new ConfigScalar { Source = "<composed>", Value = value }) { }
    public ConfigSetting(string key, bool value) : this(key, new ConfigScalar { Source = "<composed>", Value = value }) { }

    public override string ToString() => $"{Key}={(Value is ConfigList list ? "[" + string.Join(", ", list.Items) + "]" : Value.ToString())}";
}

/// <summary>A node of a loaded config tree; <see cref="Source"/> is "file:line" for error messages.</summary>
public abstract class ConfigNode
{
    public string Source { get; init; } = "<unknown>";
    public abstract ConfigNode DeepClone();
}

public sealed class ConfigMap : ConfigNode
{
    public OrderedDictionary<string, ConfigNode> Items { get; } = new();
    public override ConfigNode DeepClone()
    {
        var m = new ConfigMap { Source = Source };
        foreach (var (k, v) in Items) m.Items[k] = v.DeepClone();
        return m;
    }
}

public sealed class ConfigList : ConfigNode
{
    public List<ConfigNode> Items { get; } = new();
    public override ConfigNode DeepClone()
    {
        var l = new ConfigList { Source = Source };
        l.Items.AddRange(Items.Select(i => i.DeepClone()));
        return l;
    }
}

/// <summary>A scalar: null, bool, long, double or string (typed as OmegaConf/YAML 1.1 read plain scalars).</summary>
public sealed class ConfigScalar : ConfigNode
{
    public object? Value { get; init; }
    /// <summary>The text of a plain (unquoted) scalar as written, null for a quoted one or a composed value.</summary>
    public string? PlainText { get; init; }
    public override ConfigNode DeepClone() => new ConfigScalar { Source = Source, Value = Value, PlainText = PlainText };

    public override string ToString() => Value switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        long l => l.ToString(CultureInfo.InvariantCulture),
        _ => Value.ToString()!,
    };

    /// <summary>Types a plain (unquoted) YAML scalar as the original configs' loader does: `1_000` is an int,
    /// `1e-4` a float, `True`/`yes` a bool, `null`/`~` null.</summary>
    public static object? ParsePlain(string s)
    {
        if (s is "" or "~" or "null" or "Null" or "NULL") return null;
        if (s is "true" or "True" or "TRUE" or "yes" or "Yes" or "YES" or "on" or "On" or "ON") return true;
        if (s is "false" or "False" or "FALSE" or "no" or "No" or "NO" or "off" or "Off" or "OFF") return false;
        string t = s.Replace("_", "");
        if (System.Text.RegularExpressions.Regex.IsMatch(t, @"^[-+]?[0-9]+$") &&
            long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return l;
        if (System.Text.RegularExpressions.Regex.IsMatch(t, @"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$") &&
            double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var d)) return d;
        return t.ToLowerInvariant() switch
        {
            ".inf" or "+.inf" => double.PositiveInfinity,
            "-.inf" => double.NegativeInfinity,
            ".nan" => double.NaN,
            _ => s,
        };
    }
}
