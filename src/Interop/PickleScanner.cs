using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace MaskBit.Models.Interop;

/// <summary>
/// A dry run of a pickle that executes nothing: it walks every opcode with a shadow stack and memo, and
/// <list type="bullet">
/// <item>refuses any global (GLOBAL, STACK_GLOBAL, INST) outside the allow-list — Razorvine.Pickle has no hook for
/// this and silently turns unknown globals into ClassDicts;</item>
/// <item>refuses opcodes a checkpoint has no use for (extension codes, out-of-band buffers);</item>
/// <item>checks every length against the bytes that are there, so the real unpickler never reads past the end;</item>
/// <item>finds where the pickle ends (the legacy torch format is several pickles in a row);</item>
/// <item>records the string keys of every OrderedDict in file order (Razorvine stores dicts in a Hashtable and
/// even reverses each SETITEMS batch).</item>
/// </list>
/// Problems are thrown as <see cref="FormatProblem"/>.
/// </summary>
internal sealed class PickleScanner
{
    /// <summary>A value produced by a constructor call (REDUCE and friends) on an allowed global.</summary>
    private sealed record Global(string Name);

    private sealed class ShadowDict
    {
        public readonly List<string> Keys = new();
        private readonly HashSet<string> _seen = new(StringComparer.Ordinal);
        public void Add(object key) { if (key is string s && _seen.Add(s)) Keys.Add(s); }
    }

    private static readonly object Mark = new();
    private static readonly object Opaque = new();
    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    private readonly byte[] _data;
    private readonly IReadOnlySet<string> _allowedGlobals;
    private readonly string _orderedDictGlobal;
    private readonly List<object> _stack = new();
    private readonly Dictionary<int, object> _memo = new();
    private readonly List<ShadowDict> _orderedDicts = new();
    private int _pos;

    private PickleScanner(byte[] data, int start, IReadOnlySet<string> allowedGlobals, string orderedDictGlobal)
    {
        _data = data; _pos = start; _allowedGlobals = allowedGlobals; _orderedDictGlobal = orderedDictGlobal;
    }

    /// <summary>Scans the pickle that starts at <paramref name="start"/>. Returns the offset just past its STOP and,
    /// for each OrderedDict the pickle constructs (in construction order), its string keys in insertion order.</summary>
    public static (int End, List<List<string>> OrderedDictKeys) Scan(byte[] data, int start, IReadOnlySet<string> allowedGlobals, string orderedDictGlobal)
    {
        var scanner = new PickleScanner(data, start, allowedGlobals, orderedDictGlobal);
        int end = scanner.Run();
        return (end, scanner._orderedDicts.Select(d => d.Keys).ToList());
    }

    private int Run()
    {
        while (true)
        {
            if (_pos >= _data.Length) throw new FormatProblem("pickle ends without a STOP opcode (truncated?)");
            int at = _pos;
            byte op = _data[_pos++];
            switch (op)
            {
                case (byte)'(': _stack.Add(Mark); break;
                case (byte)'.':
                    PopValue();
                    return _pos;
                case (byte)'0': Pop(); break;
                case (byte)'1': PopToMark(); break;
                case (byte)'2': Push(PeekValue()); break;
                case (byte)'F' or (byte)'I' or (byte)'L':
                    // Text-form numbers: a state dict has no big ones, and Razorvine parses long digit strings in
                    // quadratic time, so the length is capped.
                    if (ReadLine().Length > MaxNumberTextChars) throw new FormatProblem($"number at byte {at} is longer than {MaxNumberTextChars} characters");
                    Push(Opaque); break;
                case (byte)'S' or (byte)'V' or (byte)'P':
                    // Text-form strings; a text persistent id is refused later by persistentLoad.
                    ReadLine(); Push(Opaque); break;
                case (byte)'J': Take(4); Push(Opaque); break;
                case (byte)'K': Take(1); Push(Opaque); break;
                case (byte)'M': Take(2); Push(Opaque); break;
                case (byte)'G': Take(8); Push(Opaque); break;
                case 0x8a: TakeLong(Take(1)[0], at); Push(Opaque); break;               // LONG1
                case 0x8b: TakeLong(ReadLength32(), at); Push(Opaque); break;           // LONG4
                case (byte)'T': Push(Encoding.Latin1.GetString(Take(ReadLength32()))); break;   // BINSTRING
                case (byte)'U': Push(Encoding.Latin1.GetString(Take(Take(1)[0]))); break;      // SHORT_BINSTRING
                case (byte)'B': Take(ReadLength32()); Push(Opaque); break;              // BINBYTES
                case (byte)'C': Take(Take(1)[0]); Push(Opaque); break;                  // SHORT_BINBYTES
                case 0x8e or 0x96: Take(ReadLength64()); Push(Opaque); break;            // BINBYTES8, BYTEARRAY8
                case (byte)'X': Push(Utf8(Take(ReadLength32()))); break;                // BINUNICODE
                case 0x8c: Push(Utf8(Take(Take(1)[0]))); break;                         // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(Take(ReadLength64()))); break;                     // BINUNICODE8
                case (byte)'N' or 0x88 or 0x89: Push(Opaque); break;                    // None, True, False
                case (byte)'Q': PopValue(); Push(Opaque); break;                        // BINPERSID
                case (byte)'R' or 0x81:                                                 // REDUCE, NEWOBJ
                    PopValue(); Push(Construct(PopValue())); break;
                case 0x92: PopValue(); PopValue(); Push(Construct(PopValue())); break;  // NEWOBJ_EX
                case (byte)'b': PopValue(); PeekValue(); break;                         // BUILD
                case (byte)'c': { string module = Utf8(ReadLine()); string name = Utf8(ReadLine()); Push(Resolve(module, name)); break; }
                case 0x93:                                                              // STACK_GLOBAL
                {
                    var name = PopValue() as string ?? throw new FormatProblem($"STACK_GLOBAL at byte {at} takes a non-string name");
                    var module = PopValue() as string ?? throw new FormatProblem($"STACK_GLOBAL at byte {at} takes a non-string module");
                    Push(Resolve(module, name));
                    break;
                }
                case (byte)'i':                                                         // INST
                {
                    string module = Utf8(ReadLine()); string name = Utf8(ReadLine());
                    var global = Resolve(module, name);
                    PopToMark();
                    Push(Construct(global));
                    break;
                }
                case (byte)'o':                                                         // OBJ
                {
                    var items = PopToMark();
                    if (items.Count == 0) throw new FormatProblem($"OBJ at byte {at} has no class");
                    Push(Construct(items[0]));
                    break;
                }
                case (byte)'}': Push(new ShadowDict()); break;
                case (byte)'d': { var dict = new ShadowDict(); AddPairs(dict, PopToMark(), at); Push(dict); break; }
                case (byte)'s': { PopValue(); var key = PopValue(); AsDict(PeekValue(), at).Add(key); break; }
                case (byte)'u': { var items = PopToMark(); AddPairs(AsDict(PeekValue(), at), items, at); break; }
                case (byte)']' or (byte)')' or 0x8f: Push(Opaque); break;               // empty list, tuple, set
                case (byte)'l' or (byte)'t' or 0x91: PopToMark(); Push(Opaque); break;  // LIST, TUPLE, FROZENSET
                case 0x85: PopValue(); Push(Opaque); break;
                case 0x86: PopValue(); PopValue(); Push(Opaque); break;
                case 0x87: PopValue(); PopValue(); PopValue(); Push(Opaque); break;
                case (byte)'a': PopValue(); PeekValue(); break;                         // APPEND
                case (byte)'e' or 0x90: PopToMark(); PeekValue(); break;                // APPENDS, ADDITEMS
                case (byte)'g': Push(MemoGet(ParseInt(ReadLine(), at), at)); break;
                case (byte)'h': Push(MemoGet(Take(1)[0], at)); break;
                case (byte)'j': Push(MemoGet(BinaryPrimitives.ReadInt32LittleEndian(Take(4)), at)); break;
                case (byte)'p': _memo[ParseInt(ReadLine(), at)] = PeekValue(); break;
                case (byte)'q': _memo[Take(1)[0]] = PeekValue(); break;
                case (byte)'r': _memo[BinaryPrimitives.ReadInt32LittleEndian(Take(4))] = PeekValue(); break;
                case 0x94: _memo[_memo.Count] = PeekValue(); break;                     // MEMOIZE
                case 0x80:                                                              // PROTO
                    if (Take(1)[0] > 5) throw new FormatProblem($"unsupported pickle protocol {_data[_pos - 1]}");
                    break;
                case 0x95: Take(8); break;                                              // FRAME
                default:
                    throw new FormatProblem($"unsupported pickle opcode 0x{op:x2} at byte {at}");
            }
        }
    }

    private Global Resolve(string module, string name)
    {
        // Razorvine looks constructors up by exactly this key, so an allowed key always reaches our constructor.
        string key = module + "." + name;
        if (!_allowedGlobals.Contains(key)) throw new FormatProblem($"refusing global '{key}' (not a tensor, storage or OrderedDict)");
        return new Global(key);
    }

    private object Construct(object callable)
    {
        if (callable is not Global g) throw new FormatProblem("pickle calls an object that is not an allowed global");
        if (g.Name != _orderedDictGlobal) return Opaque;
        var dict = new ShadowDict();
        _orderedDicts.Add(dict);
        return dict;
    }

    private static ShadowDict AsDict(object target, int at) =>
        target as ShadowDict ?? throw new FormatProblem($"SETITEM(S) at byte {at} targets something that is not a dict");

    private static void AddPairs(ShadowDict dict, List<object> items, int at)
    {
        if (items.Count % 2 != 0) throw new FormatProblem($"dict items at byte {at} are not key/value pairs");
        for (int i = 0; i < items.Count; i += 2) dict.Add(items[i]);
    }

    private object MemoGet(int index, int at) =>
        _memo.TryGetValue(index, out var v) ? v : throw new FormatProblem($"memo entry {index} read at byte {at} was never stored");

    private void Push(object value) => _stack.Add(value);

    private object Pop()
    {
        if (_stack.Count == 0) throw new FormatProblem($"pickle stack underflow at byte {_pos - 1}");
        var v = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return v;
    }

    private object PopValue()
    {
        var v = Pop();
        return v == Mark ? throw new FormatProblem($"pickle uses a MARK as a value at byte {_pos - 1}") : v;
    }

    private object PeekValue()
    {
        if (_stack.Count == 0 || _stack[^1] == Mark) throw new FormatProblem($"pickle stack has no value at byte {_pos - 1}");
        return _stack[^1];
    }

    private List<object> PopToMark()
    {
        int mark = _stack.LastIndexOf(Mark);
        if (mark < 0) throw new FormatProblem($"pickle has no MARK for the opcode at byte {_pos - 1}");
        var items = _stack.GetRange(mark + 1, _stack.Count - mark - 1);
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private ReadOnlySpan<byte> Take(long count)
    {
        if (count < 0 || count > _data.Length - _pos) throw new FormatProblem($"pickle is truncated: {count} bytes wanted at byte {_pos}, {_data.Length - _pos} left");
        var span = _data.AsSpan(_pos, (int)count);
        _pos += (int)count;
        return span;
    }

    /// <summary>The longest LONG1/LONG4 operand: sizes and offsets fit 8 bytes; the legacy format's magic number
    /// takes 10.</summary>
    public const int MaxLongBytes = 16;
    /// <summary>The longest text-form number (INT, LONG, FLOAT opcodes).</summary>
    public const int MaxNumberTextChars = 64;

    private void TakeLong(long count, int at)
    {
        if (count > MaxLongBytes) throw new FormatProblem($"integer at byte {at} is {count:N0} bytes long; a checkpoint's integers fit in {MaxLongBytes}");
        Take(count);
    }

    private int ReadLength32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));
    private long ReadLength64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    private ReadOnlySpan<byte> ReadLine()
    {
        int nl = Array.IndexOf(_data, (byte)'\n', _pos);
        if (nl < 0) throw new FormatProblem($"pickle is truncated: unterminated text argument at byte {_pos}");
        var line = _data.AsSpan(_pos, nl - _pos);
        _pos = nl + 1;
        return line;
    }

    private static int ParseInt(ReadOnlySpan<byte> text, int at) =>
        int.TryParse(Encoding.ASCII.GetString(text), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v
            : throw new FormatProblem($"bad memo index at byte {at}");

    private static string Utf8(ReadOnlySpan<byte> bytes)
    {
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException) { throw new FormatProblem("pickle holds a string that is not valid UTF-8"); }
    }
}
