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
    public static void Release(Tensor tensor)
    {
        Untrack(tensor);
        tensor.Storage.Dispose();
    }

    /// <summary>Runs <paramref name="layers"/> one after another on <paramref name="x"/>. Without a tape nothing refers
    /// back to a layer's intermediates, so each layer then runs in its own scope and the previous layer's output is
    /// released once the next one exists: a no-grad forward holds one layer's activations instead of the whole
    /// network's (the 12-bit generator's guided step: ~130 MB instead of ~3 GB). With a tape it is a plain loop.
    /// The input itself is the caller's and is never released.</summary>
    public static Tensor Chain(Tensor x, IEnumerable<Func<Tensor, Tensor>> layers)
    {
        bool releaseAsYouGo = !Tape.IsGradEnabled;
        var input = x;
        foreach (var layer in layers)
        {
            if (!releaseAsYouGo) { x = layer(x); continue; }
            Tensor y;
            using (var scope = Begin()) y = scope.Keep(layer(x));
            if (!ReferenceEquals(x, input) && !ReferenceEquals(x.Storage, y.Storage)) Release(x);
            x = y;
        }
        return x;
    }

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
