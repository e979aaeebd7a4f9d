using MaskBit.Kernels;

namespace MaskBit.Autograd;

/// <summary>One recorded op: its inputs, the tensors its backward reads (<see cref="SavedTensors"/>) and a function
/// from the output's gradient to the inputs' gradients (null where an input needs none). Backward functions are
/// written with the same tensor ops, run under no-grad.</summary>
internal sealed class GradNode(string name, Tensor[] inputs, Tensor[] saved, Func<Tensor, Tensor?[]> backward)
{
    public string Name { get; } = name;
    public Tensor[] Inputs { get; } = inputs;
    public Tensor[] Saved { get; } = saved;
    public Func<Tensor, Tensor?[]> Backward { get; } = backward;
}

/// <summary>Sees the tape's ops as they happen (the profiler uses it to name spans of kernels): every op's name when
/// its forward finishes (grad mode or not), and each backward function while it runs.</summary>
public interface ITapeListener
{
    void OnForward(string op);
    /// <summary>Called before a backward function runs; the result is disposed after it returns.</summary>
    IDisposable? OnBackward(string op);
}

/// <summary>The reverse-mode tape: recording, no-grad scopes, and the backward pass.</summary>
public static class Tape
{
    [ThreadStatic] private static int _noGradDepth;

    /// <summary>The listener of this thread's ops, or null (the default: no cost beyond one check per op).</summary>
    [ThreadStatic] private static ITapeListener? _listener;
    public static ITapeListener? Listener { get => _listener; set => _listener = value; }

    public static bool IsGradEnabled => _noGradDepth == 0;

    /// <summary>Within the returned scope no op is recorded (as torch.no_grad()).</summary>
    public static IDisposable NoGrad() { _noGradDepth++; return new Scope(); }

    private sealed class Scope : IDisposable
    {
        private bool _done;
        public void Dispose() { if (!_done) { _done = true; _noGradDepth--; } }
    }

    /// <summary>Within the returned scope ops are recorded even inside a no-grad scope or a backward function (as
    /// torch.enable_grad()): a checkpointed block's backward re-runs its forward on a tape of its own.</summary>
    public static IDisposable EnableGrad()
    {
        int saved = _noGradDepth;
        _noGradDepth = 0;
        return new Reenable(saved);
    }

    private sealed class Reenable(int savedDepth) : IDisposable
    {
        private bool _done;
        public void Dispose() { if (!_done) { _done = true; _noGradDepth = savedDepth; } }
    }

    /// <summary>Attaches <paramref name="output"/> to the tape if grad mode is on and any input requires grad.
    /// <paramref name="saved"/> lists every tensor whose values <paramref name="backward"/> reads (torch's
    /// save_for_backward; shapes and flags read from a tensor do not count): the others may be released before the
    /// backward runs (<see cref="SavedTensors"/>), and a backward that reads one of them fails on its disposed storage.</summary>
    public static void Record(Tensor output, string name, Tensor[] inputs, Tensor[] saved, Func<Tensor, Tensor?[]> backward)
    {
        Listener?.OnForward(name);
        if (!IsGradEnabled) return;
        foreach (var t in inputs)
        {
            if (!t.RequiresGrad) continue;
            output.Node = new GradNode(name, inputs, saved, backward);
            output.RequiresGrad = true;
            SavedTensors.Hold(saved);
            return;
        }
    }

    /// <summary>Back-propagates from <paramref name="root"/> and accumulates into every reachable leaf's Grad. A leaf's
    /// Grad is written as soon as every op that uses it has run its backward, and the hook of
    /// <see cref="OnGradAccumulated"/> is told then, while the rest of the backward still runs.</summary>
    public static void Backward(Tensor root, Tensor? gradient = null)
    {
        var accumulated = _gradAccumulated;
        using var gradients = new Gradients();
        void LeafDone(Tensor leaf)
        {
            if (gradients.HandToLeaf(leaf)) accumulated?.Invoke(leaf);
        }
        Propagate(gradients, new[] { root }, new[] { gradient }, stopAt: null, LeafDone);
        // A leaf that is itself the root is used by no op.
        foreach (var leaf in gradients.Values.Keys.Where(t => t.IsLeaf).ToList()) LeafDone(leaf);
    }

    [ThreadStatic] private static Action<Tensor>? _gradAccumulated;

    /// <summary>Within the returned scope, every backward on this thread calls <paramref name="hook"/> with each leaf
    /// whose Grad has just received all of that backward's contribution, in the order the backward finishes them
    /// (torch's register_post_accumulate_grad_hook, on every leaf at once): data-parallel training starts a bucket's
    /// all-reduce there while the backward goes on, as DDP does.</summary>
    public static IDisposable OnGradAccumulated(Action<Tensor> hook)
    {
        var previous = _gradAccumulated;
        _gradAccumulated = hook;
        return new HookScope(previous);
    }

    private sealed class HookScope(Action<Tensor>? previous) : IDisposable
    {
        private bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _gradAccumulated = previous;
        }
    }

    /// <summary>The gradients of <paramref name="output"/> w.r.t. <paramref name="inputs"/> (as torch.autograd.grad),
    /// without touching any Grad field: used to take two losses' gradients w.r.t. one parameter in one step.
    /// An input that the output does not depend on gets a zero tensor.</summary>
    public static Tensor[] Grad(Tensor output, IReadOnlyList<Tensor> inputs, Tensor? gradient = null)
    {
        var wanted = new HashSet<Tensor>(inputs, ReferenceEqualityComparer.Instance);
        var result = new Tensor[inputs.Count];
        using (var gradients = new Gradients())
        {
            Propagate(gradients, new[] { output }, new[] { gradient }, wanted);
            for (int i = 0; i < inputs.Count; i++)
                if (gradients.Values.TryGetValue(inputs[i], out var g)) result[i] = gradients.Keep(g);
        }
        for (int i = 0; i < inputs.Count; i++) result[i] ??= Tensor.Zeros(inputs[i].Shape, inputs[i].Device);
        return result;
    }

    /// <summary>
    /// The gradients of one backward pass, by tensor. Every buffer the pass allocates belongs to its own scope and
    /// is counted by the entries that refer to it (an op's backward may pass its gradient on as is, or as a view):
    /// when a tensor's gradient has been handed to its inputs, or summed into a new one, and no other entry uses
    /// its buffer, the buffer goes back to the pool at once, so the pass holds the gradients in flight instead of
    /// every gradient it ever computed (as PyTorch frees them). What is kept or handed out survives the pass;
    /// buffers the pass did not allocate (a caller's seed, an activation passed through) are never released.
    /// </summary>
    private sealed class Gradients : IDisposable
    {
        public Dictionary<Tensor, Tensor> Values { get; } = new(ReferenceEqualityComparer.Instance);
        private readonly Dictionary<Storage, int> _users = new(ReferenceEqualityComparer.Instance);
        private readonly TensorScope _scope = TensorScope.Begin();

        public void Accumulate(Tensor t, Tensor g)
        {
            if (Values.TryGetValue(t, out var previous))
            {
                var sum = previous.AddNoGrad(g);
                Use(sum);
                Values[t] = sum;
                Drop(previous);
                Drop(g, counted: false);
            }
            else
            {
                Use(g);
                Values[t] = g;
            }
        }

        /// <summary>Forgets the gradient of <paramref name="t"/> once its op's backward has used it.</summary>
        public void Consumed(Tensor t)
        {
            if (Values.Remove(t, out var g)) Drop(g);
        }

        private void Use(Tensor g) => _users[g.Storage] = _users.GetValueOrDefault(g.Storage) + 1;

        private void Drop(Tensor g, bool counted = true)
        {
            int left = _users.GetValueOrDefault(g.Storage) - (counted ? 1 : 0);
            if (left > 0) { _users[g.Storage] = left; return; }
            _users.Remove(g.Storage);
            _scope.ReleaseOwned(g.Storage);
        }

        /// <summary>Gives <paramref name="leaf"/> this pass's gradient: a leaf owns its gradient beyond any scope of
        /// the step, in a buffer of its own (no two leaves or later ops alias one), so the result is handed over when
        /// nothing else refers to its buffer, else copied; a second backward adds into the leaf's own buffer (a fresh
        /// sum would leave the old one to the finaliser). False when the pass computed none for it.</summary>
        public bool HandToLeaf(Tensor leaf)
        {
            if (!Values.TryGetValue(leaf, out var g)) return false;
            if (leaf.Grad == null && Disown(g))
            {
                Values.Remove(leaf);
                _users.Remove(g.Storage);
                leaf.Grad = g;
                return true;
            }
            if (leaf.Grad != null) leaf.Grad.Add_(g);
            else using (TensorScope.Outside()) leaf.Grad = g.CloneNoGrad();
            Consumed(leaf);
            return true;
        }

        /// <summary>Moves <paramref name="g"/> to the enclosing scope (it outlives the pass).</summary>
        public Tensor Keep(Tensor g) => _scope.Keep(g);

        /// <summary>Hands <paramref name="g"/> out of every scope if the pass allocated its whole buffer and no other
        /// entry refers to it.</summary>
        public bool Disown(Tensor g) =>
            _users.GetValueOrDefault(g.Storage) == 1 && g.Offset == 0 && g.Numel == g.Storage.Length && _scope.Disown(g.Storage);

        public void Dispose() => _scope.Dispose();
    }

    /// <summary>Runs the backward functions from the roots; with <paramref name="leafDone"/>, each leaf is handed over
    /// as soon as the last op that uses it has run its backward (counted over the ops on the tape).</summary>
    private static void Propagate(Gradients grads, Tensor[] roots, Tensor?[] seeds, HashSet<Tensor>? stopAt, Action<Tensor>? leafDone = null)
    {
        var order = TopologicalOrder(roots, stopAt);
        // Towards given inputs only the ops on a path to one of them run (as torch.autograd.grad): the adaptive GAN
        // weight's two gradients w.r.t. the decoder's last conv then cost that conv's weight gradient each, not
        // a backward through the whole tokenizer.
        var leading = stopAt == null ? null : LeadingTo(order, stopAt);
        var usesLeft = leafDone == null ? null : LeafUses(order);
        using var _ = NoGrad();
        for (int i = 0; i < roots.Length; i++)
        {
            var r = roots[i];
            if (!r.RequiresGrad) throw new InvalidOperationException($"backward: {r} does not require grad (nothing on the tape leads to it)");
            var seed = seeds[i];
            if (seed == null)
            {
                if (r.Numel != 1) throw new InvalidOperationException($"backward: a gradient is needed for non-scalar {r}");
                seed = Tensor.Full(r.Shape, 1f, r.Device);
            }
            else ShapeUtil.RequireSame(seed.Shape, r.Shape, "backward seed");
            grads.Accumulate(r, seed);
        }
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var t = order[i];
            if (t.Node == null) continue;
            if (grads.Values.TryGetValue(t, out var g) && (stopAt == null || !stopAt.Contains(t)) && (leading == null || leading.Contains(t)))
            {
                Tensor?[] inputGrads;
                using (Listener?.OnBackward(t.Node.Name))
                using (NeedingGradients(leading))
                    inputGrads = t.Node.Backward(g);
                for (int k = 0; k < t.Node.Inputs.Length; k++)
                {
                    var input = t.Node.Inputs[k];
                    var ig = inputGrads[k];
                    if (ig == null || !input.RequiresGrad || (leading != null && !leading.Contains(input))) continue;
                    if (!ig.Shape.AsSpan().SequenceEqual(input.Shape))
                        throw new InvalidOperationException($"backward of {t.Node.Name}: gradient {ShapeUtil.Format(ig.Shape)} for input {ShapeUtil.Format(input.Shape)}");
                    grads.Accumulate(input, ig);
                }
                grads.Consumed(t);
                // A full backward runs each node once (torch frees its saved tensors then, unless retain_graph);
                // Grad leaves them for the backward that follows it.
                if (stopAt == null) SavedTensors.Drop(t.Node.Saved);
            }
            if (usesLeft == null) continue;
            foreach (var input in t.Node.Inputs)
            {
                if (!usesLeft.TryGetValue(input, out int left)) continue;
                if (left > 1) { usesLeft[input] = left - 1; continue; }
                usesLeft.Remove(input);
                leafDone!(input);
            }
        }
    }

    /// <summary>How many times each leaf that requires grad is an input of an op of <paramref name="order"/>.</summary>
    private static Dictionary<Tensor, int> LeafUses(List<Tensor> order)
    {
        var uses = new Dictionary<Tensor, int>(ReferenceEqualityComparer.Instance);
        foreach (var t in order)
            if (t.Node != null)
                foreach (var input in t.Node.Inputs)
                    if (input.IsLeaf && input.RequiresGrad) uses[input] = uses.GetValueOrDefault(input) + 1;
        return uses;
    }

    /// <summary>The tensors of <paramref name="order"/> (inputs before outputs) from which recorded ops lead to a
    /// wanted tensor.</summary>
    private static HashSet<Tensor> LeadingTo(List<Tensor> order, HashSet<Tensor> wanted)
    {
        var leading = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var t in order)
            if (wanted.Contains(t) || (t.Node != null && t.Node.Inputs.Any(leading.Contains))) leading.Add(t);
        return leading;
    }

    /// <summary>The tensors a running <see cref="Grad"/> wants gradients for (through); null in a full backward.</summary>
    [ThreadStatic] private static HashSet<Tensor>? _leading;

    private static Restore NeedingGradients(HashSet<Tensor>? leading)
    {
        var previous = _leading;
        _leading = leading;
        return new Restore(previous);
    }

    private readonly struct Restore(HashSet<Tensor>? previous) : IDisposable
    {
        public void Dispose() => _leading = previous;
    }

    /// <summary>Whether the running backward needs the gradient of <paramref name="input"/> (torch's
    /// needs_input_grad): it requires grad and, inside <see cref="Grad"/>, leads to a wanted tensor. Backward
    /// functions whose input gradients cost a kernel each (conv, matmul) skip the ones not needed.</summary>
    public static bool NeedsGrad(Tensor input) => input.RequiresGrad && (_leading == null || _leading.Contains(input));

    /// <summary>Tensors reachable from the roots through recorded nodes, inputs before outputs.</summary>
    private static List<Tensor> TopologicalOrder(Tensor[] roots, HashSet<Tensor>? stopAt)
    {
        var order = new List<Tensor>();
        var visited = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor t, bool expanded)>();
        foreach (var r in roots) stack.Push((r, false));
        while (stack.Count > 0)
        {
            var (t, expanded) = stack.Pop();
            if (expanded) { order.Add(t); continue; }
            if (!visited.Add(t)) continue;
            stack.Push((t, true));
            if (t.Node == null || (stopAt != null && stopAt.Contains(t))) continue;
            foreach (var input in t.Node.Inputs)
                if (input.RequiresGrad && !visited.Contains(input)) stack.Push((input, false));
        }
        return order;
    }
}
