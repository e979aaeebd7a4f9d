using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

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

    /// <summary>A config file larger than this is refused before it is read (the official ones are ~3 KB).</summary>
    public const int MaxFileBytes = 1 << 20;
    /// <summary>Nesting deeper than this is refused while parsing (the schema is four levels deep).</summary>
    public const int MaxDepth = 16;

    /// <summary>Loads, applies overrides ("a.b.c=value", value in YAML syntax), checks every key against the schema,
    /// resolves interpolations, then checks every value's type, range and relations (<see cref="ConfigSchema"/>).</summary>
    public static MaskBitConfig Load(string path, IEnumerable<string>? overrides = null)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new ConfigException($"{path}: config file not found");
        if (info.Length > MaxFileBytes) throw new ConfigException($"{path}: config file of {info.Length:N0} bytes is over the {MaxFileBytes:N0}-byte limit");
        return Parse(System.IO.File.ReadAllText(path), path, overrides);
    }

    public static MaskBitConfig Parse(string yaml, string file, IEnumerable<string>? overrides = null)
    {
        if (yaml.Length > MaxFileBytes) throw new ConfigException($"{file}: config of {yaml.Length:N0} characters is over the {MaxFileBytes:N0}-character limit");
        var root = ReadYaml(yaml, file) switch
        {
            null or ConfigScalar { Value: null } => new ConfigMap { Source = file },
            ConfigMap map => map,
            var other => throw new ConfigException($"{other.Source}: the top level must be a mapping"),
        };
        var cfg = new MaskBitConfig(file, root);
        foreach (var o in overrides ?? Array.Empty<string>()) cfg.ApplyOverride(o);
        // Unknown keys are refused before any interpolation runs, so an invented section is never processed.
        cfg.ValidateKeys();
        cfg.ResolveInterpolations();
        cfg.ValidateValues();
        cfg._read.Clear();   // only what the sections read counts (UnreadKeys)
        return cfg;
    }

    /// <summary>The one YAML document of <paramref name="yaml"/> as a config tree (null when empty), read from the
    /// parser's events so that nothing is expanded or nested without bound: anchors and aliases (which let a few
    /// bytes expand exponentially), nesting deeper than <see cref="MaxDepth"/> and a second document are refused
    /// as they are met.</summary>
    private static ConfigNode? ReadYaml(string yaml, string file)
    {
        var parser = new Parser(new StringReader(yaml));
        try
        {
            parser.Consume<StreamStart>();
            if (parser.Accept<StreamEnd>(out _)) return null;
            parser.Consume<DocumentStart>();
            var root = parser.Accept<DocumentEnd>(out _) ? null : ReadNode(parser, file, 0);
            parser.Consume<DocumentEnd>();
            if (parser.Accept<DocumentStart>(out var second))
                throw new ConfigException($"{file}:{second.Start.Line}: a second YAML document; a config is one document");
            parser.Consume<StreamEnd>();
            return root;
        }
        catch (YamlException e)
        {
            // YamlDotNet prefixes positions as "(Line: 3, Col: 1, Idx: 9) - (…): "; the line is given our way instead.
            string message = Regex.Replace(e.InnerException?.Message ?? e.Message, @"^\(Line: .*?\): ", "");
            throw new ConfigException($"{file}:{e.Start.Line}: invalid YAML: {message}");
        }
        catch (InvalidOperationException)
        {
            // YamlDotNet's parser throws this (not a YamlException) on some malformed input (found by the fuzz suite).
            throw new ConfigException($"{file}:{parser.Current?.Start.Line ?? 0}: invalid YAML: the structure cannot be parsed");
        }
    }

    private static ConfigNode ReadNode(IParser parser, string file, int depth)
    {
        var next = parser.Current ?? throw new ConfigException($"{file}: YAML ends early");
        string src = $"{file}:{next.Start.Line}";
        if (next is AnchorAlias) throw new ConfigException($"{src}: YAML aliases (*name) are not supported; write the value out");
        if (next is NodeEvent { Anchor.IsEmpty: false }) throw new ConfigException($"{src}: YAML anchors (&name) are not supported; write the value out");
        if (depth > MaxDepth) throw new ConfigException($"{src}: nested deeper than {MaxDepth} levels");
        switch (next)
        {
            case MappingStart:
                parser.MoveNext();
                var map = new ConfigMap { Source = src };
                while (!parser.TryConsume<MappingEnd>(out _))
                {
                    if (ReadNode(parser, file, depth + 1) is not ConfigScalar { Value: not null } keyNode)
                        throw new ConfigException($"{src}: mapping keys must be plain names");
                    string key = keyNode.Value is string text ? text : keyNode.ToString();
                    if (map.Items.ContainsKey(key)) throw new ConfigException($"{keyNode.Source}: key '{key}' appears twice");
                    map.Items[key] = ReadNode(parser, file, depth + 1);
                }
                return map;
            case SequenceStart:
                parser.MoveNext();
                var list = new ConfigList { Source = src };
                while (!parser.TryConsume<SequenceEnd>(out _)) list.Items.Add(ReadNode(parser, file, depth + 1));
                return list;
            case Scalar sc:
                parser.MoveNext();
                bool quoted = sc.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted or ScalarStyle.Literal or ScalarStyle.Folded;
                return quoted ? new ConfigScalar { Source = src, Value = sc.Value }
                    : new ConfigScalar { Source = src, Value = ConfigScalar.ParsePlain(sc.Value), PlainText = sc.Value };
            default:
                throw new ConfigException($"{src}: unexpected YAML {next.GetType().Name.ToLowerInvariant()}");
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
        var value = ReadYaml(text.Length == 0 ? "''" : text, $"override '{assignment}'") ?? new ConfigScalar { Source = "<command line>" };
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
        copy.ValidateKeys();
        copy.ValidateValues();
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
    /// <summary>How many interpolations may be followed from one value (the official configs follow one).</summary>
    public const int MaxInterpolationDepth = 8;
    /// <summary>The longest string an interpolation may produce.</summary>
    public const int MaxResolvedChars = 4096;

    [GeneratedRegex(@"\$\{([^}]*)\}")]
    private static partial Regex InterpolationPattern();

    /// <summary>Replaces every `${a.b.c}` by the value of key a.b.c. Runs after <see cref="ValidateKeys"/>, so a
    /// reference can only name a key of the schema (a leaf, never a section: a value holding its own section would
    /// expand forever). Each key is resolved once and written back, so chains cost their length; a chain longer
    /// than <see cref="MaxInterpolationDepth"/>, a cycle, or a result longer than <see cref="MaxResolvedChars"/>
    /// is refused.</summary>
    private void ResolveInterpolations()
    {
        foreach (var key in LeafKeys().ToList()) Resolve(key, new List<string>());
    }

    private ConfigNode Resolve(string path, List<string> chain)
    {
        var node = Node(path)!;
        if (node is ConfigList list)
        {
            for (int i = 0; i < list.Items.Count; i++)
                if (list.Items[i] is ConfigScalar { Value: string s } item && s.Contains("${"))
                    list.Items[i] = ResolveScalar(item, $"{path}[{i}]", chain);
            return list;
        }
        if (node is not ConfigScalar { Value: string text } scalar || !text.Contains("${")) return node;
        var resolved = ResolveScalar(scalar, path, chain);
        Set(path, resolved, path);
        return resolved;
    }

    private ConfigNode ResolveScalar(ConfigScalar scalar, string path, List<string> chain)
    {
        string text = (string)scalar.Value!;
        if (chain.Contains(path))
            throw new ConfigException($"{scalar.Source}: '{path}' interpolates itself (cycle {string.Join(" → ", chain.SkipWhile(p => p != path).Append(path))})");
        if (chain.Count >= MaxInterpolationDepth)
            throw new ConfigException($"{scalar.Source}: '{path}': interpolations nested more than {MaxInterpolationDepth} deep ({string.Join(" → ", chain)} → …)");
        chain.Add(path);
        try
        {
            var whole = InterpolationPattern().Match(text);
            if (whole.Success && whole.Index == 0 && whole.Length == text.Length)
            {
                // The whole value is one reference: it takes the referenced value's type (as OmegaConf does).
                var target = Resolve(Reference(whole.Groups[1].Value, scalar, path), chain).DeepClone();
                return target is ConfigScalar t ? new ConfigScalar { Source = scalar.Source, Value = t.Value } : target;
            }
            var sb = new StringBuilder();
            int at = 0;
            foreach (Match m in InterpolationPattern().Matches(text))
            {
                sb.Append(text, at, m.Index - at);
                var target = Resolve(Reference(m.Groups[1].Value, scalar, path), chain);
                sb.Append(target is ConfigScalar t ? t.ToString()
                    : throw new ConfigException($"{scalar.Source}: '{m.Value}' in '{path}' names a list, not a single value; only a whole value can interpolate a list"));
                at = m.Index + m.Length;
                if (sb.Length > MaxResolvedChars) break;
            }
            sb.Append(text, at, text.Length - at);
            if (sb.Length > MaxResolvedChars)
                throw new ConfigException($"{scalar.Source}: '{path}' interpolates to more than {MaxResolvedChars:N0} characters");
            return new ConfigScalar { Source = scalar.Source, Value = sb.ToString() };
        }
        finally { chain.RemoveAt(chain.Count - 1); }
    }

    /// <summary>The key a `${…}` names; it must be a key of the schema that this config sets.</summary>
    private string Reference(string reference, ConfigScalar from, string path)
    {
        reference = reference.Trim();
        if (ConfigSchema.IsSection(reference))
            throw new ConfigException($"{from.Source}: '{path}': interpolation '${{{reference}}}' names a section; only a key's value can be interpolated");
        if (!ConfigSchema.Keys.ContainsKey(reference))
            throw new ConfigException($"{from.Source}: '{path}': interpolation '${{{reference}}}' names a key that does not exist in the schema");
        if (Node(reference) == null)
            throw new ConfigException($"{from.Source}: '{path}': interpolation '${{{reference}}}' names a key that does not exist in this config");
        return reference;
    }

    // ---- validation ------------------------------------------------------------------------------------------
    /// <summary>Refuses keys the schema does not know (before interpolations are resolved).</summary>
    private void ValidateKeys()
    {
        var errors = new List<string>();
        void Visit(ConfigNode node, string path)
        {
            if (node is ConfigMap m && (path.Length == 0 || ConfigSchema.IsSection(path)) && !ConfigSchema.Keys.ContainsKey(path))
            {
                foreach (var (k, v) in m.Items) Visit(v, path.Length == 0 ? k : $"{path}.{k}");
                return;
            }
            if (!ConfigSchema.Keys.ContainsKey(path))
            {
                var hint = ConfigSchema.Suggest(path);
                errors.Add($"{node.Source}: unknown key '{path}'{(hint != null ? $" (did you mean '{hint}'?)" : "")}");
            }
        }
        Visit(Root, "");
        if (errors.Count > 0) throw new ConfigException(string.Join("\n", errors.Take(MaxErrorsListed)) + MoreErrors(errors.Count));
    }

    private const int MaxErrorsListed = 20;
    private static string MoreErrors(int count) => count > MaxErrorsListed ? $"\n… and {count - MaxErrorsListed} more" : "";

    /// <summary>Checks each value's type and range, then the relations between keys (<see cref="ConfigSchema"/>).</summary>
    private void ValidateValues()
    {
        var errors = new List<string>();
        foreach (var path in LeafKeys())
        {
            var node = Node(path)!;
            var spec = ConfigSchema.Specs[path];
            // A YAML 1.1 bool word (no, off, yes, on) given unquoted to a string key is that word: `mixed_precision: no`
            // and the override training.mixed_precision=no mean "no" (OmegaConf reads them as false, which accelerate
            // then refuses as an unknown mode). Keys typed bool still read the words as bools.
            if (spec.Type == ConfigType.String && node is ConfigScalar { Value: bool, PlainText: { } word } scalar)
                Set(path, node = new ConfigScalar { Source = scalar.Source, Value = word }, path);
            if (!Matches(node, spec.Type)) errors.Add($"{node.Source}: '{path}' must be {Describe(spec.Type)}, got {DescribeNode(node)}");
            else if (spec.Check(node) is { } problem) errors.Add($"{node.Source}: '{path}' {problem}");
        }
        if (errors.Count == 0)
            foreach (var relation in ConfigSchema.Relations)
                if (relation(this) is { } problem) errors.Add(problem);
        if (errors.Count > 0) throw new ConfigException(string.Join("\n", errors.Take(MaxErrorsListed)) + MoreErrors(errors.Count));
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
        return Node(path);
    }

    /// <summary>The node at <paramref name="path"/>, or null, without counting it as read.</summary>
    internal ConfigNode? Node(string path)
    {
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
        // A mapping where the schema has a value is a leaf too (refused by its type, never walked into).
        static IEnumerable<string> Walk(ConfigMap map, string prefix) =>
            map.Items.SelectMany(kv => kv.Value is ConfigMap m && !ConfigSchema.Keys.ContainsKey(prefix + kv.Key) ? Walk(m, prefix + kv.Key + ".") : [prefix + kv.Key]);
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
