using MaskBit.Kernels;

namespace MaskBit.Autograd.Nn;

/// <summary>
/// Base of all layers. Children, parameters and buffers are registered under the names the reference
/// PyTorch module uses, so <see cref="StateDict"/> yields the reference's keys (e.g.
/// <c>encoder.down.0.res_blocks.1.conv2.weight</c>) in the reference's order: a module's own parameters,
/// then its own buffers, then each child in registration order.
/// </summary>
public abstract class Module
{
    private readonly List<(string Name, Module Module)> _children = new();
    private readonly List<(string Name, Tensor Tensor)> _parameters = new();
    private readonly List<(string Name, Tensor Tensor)> _buffers = new();

    /// <summary>Train mode (the default) or eval mode; see <see cref="Train"/>.</summary>
    public bool Training { get; private set; } = true;

    protected T Register<T>(string name, T module) where T : Module
    {
        CheckName(name);
        _children.Add((name, module));
        return module;
    }

    /// <summary>Registers a trainable parameter (a leaf that requires grad).</summary>
    protected Tensor Parameter(string name, Tensor value)
    {
        CheckName(name);
        var p = value.IsLeaf ? value : value.Detach();
        TensorScope.Untrack(p);
        p.RequiresGrad = true;
        p.Name = name;
        _parameters.Add((name, p));
        return p;
    }

    [ThreadStatic] private static DType? _weightDType;

    /// <summary>Within the returned scope the GEMM and convolution weights of the modules built on this thread
    /// (<see cref="Linear"/>, <see cref="Conv2d"/>, <see cref="MultiheadAttention"/>'s in-projection) are stored in
    /// <paramref name="dtype"/> (bfloat16 or float16; null: float32), as torch's <c>module.to(dtype)</c> but without a
    /// float32 copy of the model ever being held; a checkpoint loads into them converted. For 16-bit inference
    /// (<c>generate --precision bf16</c>), where those weights are nearly all of a model: the matmul and conv ops read
    /// 16-bit operands. Biases, norms and embeddings stay float32. Not for training, whose optimizer keeps float32
    /// master weights.</summary>
    public static IDisposable StoreWeightsIn(DType? dtype)
    {
        if (dtype is { } t && !t.Is16Bit()) throw new ArgumentException($"weights are stored in float32, bfloat16 or float16, not {t}");
        var previous = _weightDType;
        _weightDType = dtype;
        return new WeightsScope(previous);
    }

    private sealed class WeightsScope(DType? previous) : IDisposable
    {
        private bool _done;
        public void Dispose() { if (!_done) { _done = true; _weightDType = previous; } }
    }

    /// <summary>Registers a GEMM or convolution weight: a parameter stored in the type <see cref="StoreWeightsIn"/> names.
    /// <paramref name="value"/> is the float32 initialisation; it is released once converted (not even drawn when
    /// <see cref="Init.ShapesOnly"/> is open).</summary>
    protected Tensor WeightParameter(string name, Tensor value)
    {
        if (_weightDType is not { } dtype) return Parameter(name, value);
        Tensor stored;
        if (Init.IsShapesOnly) stored = Tensor.Empty(value.Shape, value.Device, dtype);
        else using (Tape.NoGrad()) stored = value.To(dtype);
        TensorScope.Release(value);
        return Parameter(name, stored);
    }

    /// <summary>Registers a persistent buffer (in the state dict, no gradient).</summary>
    protected Tensor Buffer(string name, Tensor value)
    {
        CheckName(name);
        TensorScope.Untrack(value);
        value.Name = name;
        _buffers.Add((name, value));
        return value;
    }

    private void CheckName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Contains('.')) throw new ArgumentException($"invalid member name '{name}'");
        if (_children.Any(c => c.Name == name) || _parameters.Any(p => p.Name == name) || _buffers.Any(b => b.Name == name))
            throw new ArgumentException($"'{name}' is registered twice in {GetType().Name}");
    }

    public IEnumerable<(string Name, Module Module)> NamedChildren() => _children;

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters(string prefix = "")
    {
        foreach (var (n, p) in _parameters) yield return (prefix + n, p);
        foreach (var (n, c) in _children)
            foreach (var x in c.NamedParameters(prefix + n + ".")) yield return x;
    }

    public IEnumerable<(string Name, Tensor Tensor)> NamedBuffers(string prefix = "")
    {
        foreach (var (n, b) in _buffers) yield return (prefix + n, b);
        foreach (var (n, c) in _children)
            foreach (var x in c.NamedBuffers(prefix + n + ".")) yield return x;
    }

    public IEnumerable<Tensor> Parameters() => NamedParameters().Select(p => p.Tensor);

    /// <summary>Parameters and buffers in PyTorch's state_dict order.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> StateDict(string prefix = "")
    {
        foreach (var (n, p) in _parameters) yield return (prefix + n, p);
        foreach (var (n, b) in _buffers) yield return (prefix + n, b);
        foreach (var (n, c) in _children)
            foreach (var x in c.StateDict(prefix + n + ".")) yield return x;
    }

    public long ParameterCount() => Parameters().Sum(p => p.Numel);

    /// <summary>Copies values into the registered tensors (in place, so references stay valid). Strict mode
    /// lists every missing key, unexpected key and shape mismatch in one error; otherwise those are returned.</summary>
    public IReadOnlyList<string> LoadStateDict<T>(IReadOnlyDictionary<string, T> values, bool strict = true) where T : IStateValue
    {
        var own = StateDict().ToList();
        var problems = new List<string>();
        var ownNames = new HashSet<string>(own.Select(o => o.Name));
        foreach (var (name, target) in own)
        {
            if (!values.TryGetValue(name, out var src)) { problems.Add($"missing key '{name}' {ShapeUtil.Format(target.Shape)}"); continue; }
            if (!src.Shape.AsSpan().SequenceEqual(target.Shape))
            { problems.Add($"shape mismatch for '{name}': checkpoint {ShapeUtil.Format(src.Shape)}, model {ShapeUtil.Format(target.Shape)}"); continue; }
            if (src.IsInteger != (target.DType == DType.Int32))
            { problems.Add($"dtype mismatch for '{name}': checkpoint {(src.IsInteger ? "integer" : "floating-point")}, model {target.DType}"); continue; }
            src.CopyTo(target);
        }
        foreach (var key in values.Keys) if (!ownNames.Contains(key)) problems.Add($"unexpected key '{key}'");
        if (strict && problems.Count > 0)
            throw new InvalidDataException($"state dict does not match {GetType().Name}:\n  " + string.Join("\n  ", problems));
        return problems;
    }

    /// <summary>Sets train (true) or eval (false) mode on this module and all children.</summary>
    public Module Train(bool on = true)
    {
        Training = on;
        foreach (var (_, c) in _children) c.Train(on);
        return this;
    }

    public Module Eval() => Train(false);

    public void ZeroGrad() { foreach (var p in Parameters()) p.ZeroGrad(); }

    /// <summary>Turns gradient tracking of all parameters on or off (as requires_grad_ on a module).</summary>
    public void RequiresGrad_(bool on) { foreach (var p in Parameters()) p.RequiresGrad = on; }
}

/// <summary>An indexed list of child modules, keyed "0", "1", … as torch.nn.ModuleList.</summary>
public sealed class ModuleList<T> : Module, IReadOnlyList<T> where T : Module
{
    private readonly List<T> _items = new();
    public ModuleList(IEnumerable<T>? items = null) { if (items != null) foreach (var m in items) Add(m); }
    public void Add(T module) { Register(_items.Count.ToString(), module); _items.Add(module); }
    public T this[int i] => _items[i];
    public int Count => _items.Count;
    public IEnumerator<T> GetEnumerator() => _items.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
