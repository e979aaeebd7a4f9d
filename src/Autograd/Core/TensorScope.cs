using MaskBit.Kernels;

namespace MaskBit.Autograd;

/// <summary>
/// Deterministic release of intermediate tensors (as TorchSharp's dispose scopes). Every storage allocated
/// while a scope is open belongs to it and goes back to its device's pool when the scope ends, so a training step
/// wrapped in a scope reuses the previous step's buffers instead of touching fresh pages. Tensors that must
/// outlive the scope are handed out with <see cref="Keep"/>; parameters, gradients of leaves and optimizer
/// state are never owned by a scope. Reading a released tensor throws (its storage is disposed).
/// </summary>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? _current;
    [ThreadStatic] private static int _suspended;

    private readonly TensorScope? _outer;
    private readonly HashSet<Storage> _owned = new(ReferenceEqualityComparer.Instance);
    private bool _disposed;

    private TensorScope(TensorScope? outer) => _outer = outer;

    /// <summary>Opens a scope nested in the current one.</summary>
    public static TensorScope Begin() => _current = new TensorScope(_current);

    /// <summary>Within the returned region allocations belong to no scope (for state that lives on).</summary>
    public static IDisposable Outside() { _suspended++; return new Resume(); }

    private sealed class Resume : IDisposable
    {
        private bool _done;
        public void Dispose() { if (!_done) { _done = true; _suspended--; } }
    }

    internal static void Track(Storage storage)
    {
        if (_suspended == 0) _current?._owned.Add(storage);
    }

    /// <summary>Removes a tensor's storage from every open scope (it will be released by the GC or by the
    /// caller). Used for parameters and buffers registered on modules.</summary>
    public static void Untrack(Tensor tensor)
    {
        for (var s = _current; s != null; s = s._outer) s._owned.Remove(tensor.Storage);
    }

    /// <summary>Releases a tensor's storage now instead of when its scope ends, for a value nothing reads again
    /// (a no-grad forward's previous layer output). Views on the same storage are released with it.</summary>
    public static void Release(Tensor tensor) => Release(tensor.Storage);

    internal static void Release(Storage storage)
    {
        for (var s = _current; s != null; s = s._outer) s._owned.Remove(storage);
        storage.Dispose();
    }

    /// <summary>Runs <paramref name="layers"/> one after another on <paramref name="x"/>, each in a scope of its own,
    /// and releases what a layer made as soon as nothing can read it (a layer must return all it makes for later
    /// use). Without a tape nothing refers back to a layer's intermediates, so they are released when the layer
    /// returns, and the previous layer's output once the next one exists: a no-grad forward holds one layer's
    /// activations instead of the whole network's (the 12-bit generator's guided step: ~130 MB instead of ~3 GB).
    /// With a tape, what no backward function reads (<see cref="SavedTensors"/>) is released then, and the rest when
    /// the backward functions that read it have run. The input itself is the caller's and is never released.</summary>
    public static Tensor Chain(Tensor x, IEnumerable<Func<Tensor, Tensor>> layers)
    {
        var input = x;
        foreach (var layer in layers)
        {
            if (_retainActivations > 0) { x = layer(x); continue; }
            Tensor y;
            using (var scope = Begin())
            {
                y = scope.Keep(layer(x));
                scope.ReleaseUnread();
            }
            if (!ReferenceEquals(x, input) && !ReferenceEquals(x.Storage, y.Storage)) SavedTensors.ReleaseWhenUnread(x.Storage);
            x = y;
        }
        return x;
    }

    [ThreadStatic] private static int _retainActivations;

    /// <summary>Within the returned scope <see cref="Chain"/> releases nothing early: every activation lives until
    /// its scope ends (as before save-for-backward). For inspecting activations, and for showing that releasing them
    /// changes no gradient.</summary>
    public static IDisposable RetainActivations() { _retainActivations++; return new EndRetain(); }

    private sealed class EndRetain : IDisposable
    {
        private bool _done;
        public void Dispose() { if (!_done) { _done = true; _retainActivations--; } }
    }

    /// <summary>Hands each storage of this scope on to <see cref="SavedTensors.ReleaseWhenUnread"/>: released now when no
    /// backward function reads it, else moved to the enclosing scope (which releases it at its end should the
    /// backward never run) until the last reader has run.</summary>
    private void ReleaseUnread()
    {
        var owned = _owned.ToList();
        _owned.Clear();
        foreach (var storage in owned)
            if (!SavedTensors.ReleaseWhenUnread(storage)) _outer?._owned.Add(storage);
    }

    /// <summary>Bytes of the storages this scope owns (what a step has allocated and not yet released).</summary>
    public long OwnedBytes => _owned.Sum(s => s.Length * s.DType.ElementSize());

    /// <summary>Moves a tensor out of this scope into the enclosing one (or to none) and returns it.</summary>
    public Tensor Keep(Tensor tensor)
    {
        if (_owned.Remove(tensor.Storage)) _outer?._owned.Add(tensor.Storage);
        return tensor;
    }

    public int OwnedCount => _owned.Count;

    /// <summary>Releases <paramref name="storage"/> now if this scope owns it (a backward's intermediate
    /// gradient once it has been used); true if it did.</summary>
    internal bool ReleaseOwned(Storage storage)
    {
        if (!_owned.Remove(storage)) return false;
        storage.Dispose();
        return true;
    }

    /// <summary>Hands <paramref name="storage"/> out of every scope if this scope owns it (a leaf's gradient that
    /// lives on); true if it did.</summary>
    internal bool Disown(Storage storage) => _owned.Remove(storage);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!ReferenceEquals(_current, this)) throw new InvalidOperationException("tensor scopes must be disposed innermost first");
        _current = _outer;
        foreach (var s in _owned) s.Dispose();
        _owned.Clear();
    }
}
