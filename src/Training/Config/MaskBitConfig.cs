using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace MaskBit.Models.Config;

/// <summary>
/// A config in the original MaskBit YAML schema (experiment, model.vq_model, model.mlm_model, model.discriminator,
/// losses, dataset, optimizer, lr_scheduler, training): loaded with YamlDotNet, `${a.b.c}` interpolations resolved,
/// `a.b.c=value` command-line overrides applied, and every key and type checked against <see cref="ConfigSchema"/>.
/// </summary>
public sealed partial class MaskBitConfig
{
    public string File { get; }
    public ConfigMap Root { get; }

    private MaskBitConfig(string file, ConfigMap root) { File = file; Root = root; }

    /// <summary>Loads, applies overrides ("a.b.c=value", value in YAML syntax), resolves interpolations, validates.</summary>
    public static MaskBitConfig Load(string path, IEnumerable<string>? overrides = null)
    {
        if (!System.IO.File.Exists(path)) throw new ConfigException($"{path}: config file not found");
        return Parse(System.IO.File.ReadAllText(path), path, overrides);
    }

    public static MaskBitConfig Parse(string yaml, string file, IEnumerable<string>? overrides = null)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (YamlException e) { throw new ConfigException($"{file}:{e.Start.Line}: invalid YAML: {e.InnerException?.Message ?? e.Message}"); }
        ConfigMap root = stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" }
            ? new ConfigMap { Source = file }
            : Convert(stream.Documents[0].RootNode, file) as ConfigMap ?? throw new ConfigException($"{file}: the top level must be a mapping");
        var cfg = new MaskBitConfig(file, root);
        foreach (var o in overrides ?? Array.Empty<string>()) cfg.ApplyOverride(o);
        cfg.ResolveInterpolations();
        cfg.Validate();
        cfg._read.Clear();   // only what the sections read counts (UnreadKeys)
        return cfg;
    }

    private static ConfigNode Convert(YamlNode node, string file)
    {
        string src = $"{file}:{node.Start.Line}";
        switch (node)
        {
            case YamlMappingNode m:
                var map = new ConfigMap { Source = src };
                foreach (var (k, v) in m.Children)
                {
                    var key = (k as YamlScalarNode)?.Value ?? throw new ConfigException($"{file}:{k.Start.Line}: mapping keys must be plain names");
                    if (map.Items.ContainsKey(key)) throw new ConfigException($"{file}:{k.Start.Line}: key '{key}' appears twice");
                    map.Items[key] = Convert(v, file);
                }
                return map;
            case YamlSequenceNode s:
                var list = new ConfigList { Source = src };
                list.Items.AddRange(s.Children.Select(c => Convert(c, file)));
                return list;
            case YamlScalarNode sc:
                bool quoted = sc.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted or ScalarStyle.Literal or ScalarStyle.Folded;
                return new ConfigScalar { Source = src, Value = quoted ? sc.Value ?? "" : ConfigScalar.ParsePlain(sc.Value ?? "") };
            default:
                throw new ConfigException($"{src}: unsupported YAML node (anchors/aliases are not supported)");
        }
    }

    // ---- overrides -------------------------------------------------------------------------------------------
    /// <summary>Applies "a.b.c=value" (the originals' command-line override form).</summary>
    public void ApplyOverride(string assignment)
    {
        int eq = assignment.IndexOf('=');
        if (eq <= 0) throw new ConfigException($"override '{assignment}': expected key=value, e.g. training.seed=1");
        string key = assignment[..eq].Trim(), text = assignment[(eq + 1)..];
        if (!ConfigSchema.Keys.ContainsKey(key))
        {
            var hint = ConfigSchema.Suggest(key);
            throw new ConfigException($"override '{assignment}': unknown key '{key}'{(hint != null ? $" (did you mean '{hint}'?)" : "")}");
        }
        ConfigNode value;
        try
        {
            var stream = new YamlStream();
            stream.Load(new StringReader(text.Length == 0 ? "''" : text));
            value = Convert(stream.Documents[0].RootNode, "<command line>");
        }
        catch (YamlException e) { throw new ConfigException($"override '{assignment}': invalid value: {e.Message}"); }
        Set(key, value, $"override '{assignment}'");
    }

    /// <summary>A copy of this config with each setting applied, checked as a loaded file is (keys and types).</summary>
    public MaskBitConfig With(IEnumerable<ConfigSetting> settings)
    {
        var copy = new MaskBitConfig(File, (ConfigMap)Root.DeepClone());
        foreach (var setting in settings)
        {
            if (!ConfigSchema.Keys.ContainsKey(setting.Key)) throw new ConfigException($"{File}: setting '{setting}': unknown key '{setting.Key}'");
            copy.Set(setting.Key, setting.Value.DeepClone(), $"setting '{setting}'");
        }
        copy.Validate();
        return copy;
    }

    private void Set(string key, ConfigNode value, string what)
    {
        var parts = key.Split('.');
        var map = Root;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            if (!map.Items.TryGetValue(parts[i], out var child))
                map.Items[parts[i]] = child = new ConfigMap { Source = value.Source };
            map = child as ConfigMap ?? throw new ConfigException($"{what}: '{string.Join('.', parts[..(i + 1)])}' in {File} is not a section");
        }
        map.Items[parts[^1]] = value;
    }

    // ---- interpolation ---------------------------------------------------------------------------------------
    [GeneratedRegex(@"\$\{([^}]*)\}")]
    private static partial Regex InterpolationPattern();

    private void ResolveInterpolations()
    {
        var resolving = new HashSet<string>();
        void Visit(ConfigNode node, string path)
        {
            switch (node)
            {
                case ConfigMap m:
                    foreach (var k in m.Items.Keys.ToList())
                    {
                        string p = path.Length == 0 ? k : $"{path}.{k}";
                        m.Items[k] = ResolveNode(m.Items[k], p, resolving);
                        Visit(m.Items[k], p);
                    }
                    break;
                case ConfigList l:
                    for (int i = 0; i < l.Items.Count; i++) { l.Items[i] = ResolveNode(l.Items[i], $"{path}[{i}]", resolving); Visit(l.Items[i], $"{path}[{i}]"); }
                    break;
            }
        }
        Visit(Root, "");
    }

    private ConfigNode ResolveNode(ConfigNode node, string path, HashSet<string> resolving)
    {
        if (node is not ConfigScalar { Value: string s } sc || !s.Contains("${")) return node;
        if (!resolving.Add(path)) throw new ConfigException($"{sc.Source}: '{path}' interpolates itself (cycle through {string.Join(" → ", resolving)})");
        try
        {
            var whole = InterpolationPattern().Match(s);
            if (whole.Success && whole.Index == 0 && whole.Length == s.Length)
                return ResolveNode(Lookup(whole.Groups[1].Value.Trim(), sc), whole.Groups[1].Value.Trim(), resolving).DeepClone();
            string text = InterpolationPattern().Replace(s, m =>
            {
                var target = ResolveNode(Lookup(m.Groups[1].Value.Trim(), sc), m.Groups[1].Value.Trim(), resolving);
                return target is ConfigScalar t ? t.ToString() : throw new ConfigException($"{sc.Source}: '{m.Value}' in '{path}' names a section, not a value");
            });
            return new ConfigScalar { Source = sc.Source, Value = text };
        }
        finally { resolving.Remove(path); }
    }

    private ConfigNode Lookup(string reference, ConfigScalar from)
    {
        ConfigNode node = Root;
        foreach (var part in reference.Split('.'))
        {
            if (node is not ConfigMap m || !m.Items.TryGetValue(part, out var next))
                throw new ConfigException($"{from.Source}: interpolation '${{{reference}}}' names a key that does not exist");
            node = next;
        }
        return node;
    }

    // ---- validation ------------------------------------------------------------------------------------------
    private void Validate()
    {
        var errors = new List<string>();
        void Visit(ConfigNode node, string path)
        {
            if (node is ConfigMap m && (path.Length == 0 || ConfigSchema.IsSection(path)) && !ConfigSchema.Keys.ContainsKey(path))
            {
                foreach (var (k, v) in m.Items) Visit(v, path.Length == 0 ? k : $"{path}.{k}");
                return;
            }
            if (!ConfigSchema.Keys.TryGetValue(path, out var type))
            {
                var hint = ConfigSchema.Suggest(path);
                errors.Add($"{node.Source}: unknown key '{path}'{(hint != null ? $" (did you mean '{hint}'?)" : "")}");
                return;
            }
            if (!Matches(node, type)) errors.Add($"{node.Source}: '{path}' must be {Describe(type)}, got {DescribeNode(node)}");
        }
        Visit(Root, "");
        if (errors.Count > 0) throw new ConfigException(string.Join("\n", errors));
    }

    private static bool Matches(ConfigNode node, ConfigType type) => type switch
    {
        ConfigType.Int => node is ConfigScalar { Value: long },
        ConfigType.Float => node is ConfigScalar { Value: long or double },
        ConfigType.Bool => node is ConfigScalar { Value: bool },
        ConfigType.String => node is ConfigScalar { Value: string or null },
        ConfigType.IntList => node is ConfigList l && l.Items.All(i => i is ConfigScalar { Value: long }),
        ConfigType.FloatList => node is ConfigList l && l.Items.All(i => i is ConfigScalar { Value: long or double }),
        _ => false,
    };

    private static string Describe(ConfigType t) => t switch
    {
        ConfigType.Int => "an integer",
        ConfigType.Float => "a number",
        ConfigType.Bool => "true or false",
        ConfigType.String => "a string",
        ConfigType.IntList => "a list of integers",
        _ => "a list of numbers",
    };

    private static string DescribeNode(ConfigNode n) => n switch
    {
        ConfigMap => "a section",
        ConfigList => "a list",
        ConfigScalar { Value: string s } => $"the string '{s}'",
        ConfigScalar s => s.ToString(),
        _ => "?",
    };

    // ---- typed access ----------------------------------------------------------------------------------------
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    /// <summary>The node at <paramref name="path"/>, or null; the path counts as read (<see cref="UnreadKeys"/>).</summary>
    public ConfigNode? Find(string path)
    {
        _read.Add(path);
        ConfigNode node = Root;
        foreach (var part in path.Split('.'))
        {
            if (node is not ConfigMap m || !m.Items.TryGetValue(part, out var next)) return null;
            node = next;
        }
        return node;
    }

    public bool Has(string path) => Find(path) != null;

    private object? Value(string path) =>
        Find(path) switch
        {
            null => throw new ConfigException($"{File}: required key '{path}' is missing"),
            ConfigScalar s => s.Value,
            var n => throw new ConfigException($"{n.Source}: '{path}' is a section or list, not a value"),
        };

    public long GetInt(string path) => Value(path) is long l ? l : throw new ConfigException($"{File}: '{path}' is not an integer");
    public long GetInt(string path, long fallback) => Has(path) ? GetInt(path) : fallback;
    public double GetDouble(string path) => Value(path) switch { long l => l, double d => d, _ => throw new ConfigException($"{File}: '{path}' is not a number") };
    public double GetDouble(string path, double fallback) => Has(path) ? GetDouble(path) : fallback;
    public bool GetBool(string path) => Value(path) is bool b ? b : throw new ConfigException($"{File}: '{path}' is not a bool");
    public bool GetBool(string path, bool fallback) => Has(path) ? GetBool(path) : fallback;
    public string GetString(string path) => Value(path) as string ?? throw new ConfigException($"{File}: '{path}' is not a string");
    public string GetString(string path, string fallback) => Has(path) ? GetString(path) : fallback;

    public int[] GetIntList(string path) =>
        Find(path) is ConfigList l ? l.Items.Select(i => (int)(long)((ConfigScalar)i).Value!).ToArray()
            : throw new ConfigException($"{File}: '{path}' is not a list");

    /// <summary>Every leaf key of the config (a.b.c), lists included.</summary>
    public IEnumerable<string> LeafKeys()
    {
        static IEnumerable<string> Walk(ConfigMap map, string prefix) =>
            map.Items.SelectMany(kv => kv.Value is ConfigMap m ? Walk(m, prefix + kv.Key + ".") : [prefix + kv.Key]);
        return Walk(Root, "");
    }

    /// <summary>The leaf keys nothing has read so far (a getter, <see cref="Has"/> or <see cref="Find"/> of the key
    /// itself; looking at a section reads none of its keys).</summary>
    public IEnumerable<string> UnreadKeys() => LeafKeys().Where(key => !_read.Contains(key));

    // ---- writing ---------------------------------------------------------------------------------------------
    /// <summary>The resolved config as YAML (stored in checkpoints and run folders).</summary>
    public string ToYaml()
    {
        var sb = new StringBuilder();
        void Write(ConfigNode n, int indent)
        {
            foreach (var (k, v) in ((ConfigMap)n).Items)
            {
                sb.Append(' ', indent).Append(k).Append(':');
                switch (v)
                {
                    case ConfigMap: sb.Append('\n'); Write(v, indent + 4); break;
                    case ConfigList l: sb.Append(" [").Append(string.Join(", ", l.Items.Select(Scalar))).Append("]\n"); break;
                    default: sb.Append(' ').Append(Scalar(v)).Append('\n'); break;
                }
            }
        }
        Write(Root, 0);
        return sb.ToString();
    }

    private static string Scalar(ConfigNode n) => n is ConfigScalar { Value: string s }
        ? "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\""
        : n is ConfigScalar sc ? (sc.Value is double d && double.IsInteger(d) && Math.Abs(d) < 1e15 ? d.ToString("0.0", CultureInfo.InvariantCulture) : sc.ToString())
        : throw new ConfigException("nested lists are not supported");
}
