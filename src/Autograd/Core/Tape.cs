namespace MaskBit.Autograd;

/// <summary>One recorded op: its inputs and a function from the output's gradient to the inputs' gradients
/// (null where an input needs none). Backward functions are written with the same tensor ops, run under no-grad.</summary>
internal sealed class GradNode(string name, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
{
    public string Name { get; } = name;
    public Tensor[] Inputs { get; } = inputs;
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

    /// <summary>Attaches <paramref name="output"/> to the tape if grad mode is on and any input requires grad.</summary>
    public static void Record(Tensor output, string name, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
    {
        Listener?.OnForward(name);
        if (!IsGradEnabled) return;
        foreach (var t in inputs)
        {
            if (!t.RequiresGrad) continue;
            output.Node = new GradNode(name, inputs, backward);
            output.RequiresGrad = true;
            return;
        }
    }

    /// <summary>Back-propagates from <paramref name="root"/> and accumulates into every reachable leaf's Grad. A leaf's
    /// Grad is written as soon as every op that uses it has run its backward, and the hook of
    /// <see cref="OnGradAccumulated"/> is told then, while the rest of the backward still runs.</summary>
    public static void Backward(Tensor root, Tensor? gradient = null)
    {
        var accumulated = _gradAccumulated;
        Propagate(new[] { root }, new[] { gradient }, stopAt: null, leafDone: (leaf, g) =>
        {
            using (TensorScope.Outside())   // leaf gradients outlive any scope of the step
            {
                // Grads are stored as fresh tensors so that no two leaves (or later ops) alias one buffer; a second
                // backward adds into the leaf's own buffer (a fresh sum would leave the old one to the finaliser).
                if (leaf.Grad == null) leaf.Grad = g.CloneNoGrad();
                else leaf.Grad.Add_(g);
            }
            accumulated?.Invoke(leaf);
        });
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
        var grads = Propagate(new[] { output }, new[] { gradient }, wanted, leafDone: null);
        var result = new Tensor[inputs.Count];
        for (int i = 0; i < inputs.Count; i++)
            result[i] = grads.TryGetValue(inputs[i], out var g) ? g : Tensor.Zeros(inputs[i].Shape, inputs[i].Device);
        return result;
    }

    /// <summary>Runs the backward functions from the roots; with <paramref name="leafDone"/>, each leaf's gradient is
    /// handed over as soon as the last op that uses the leaf has run its backward (counted over the ops on the tape).</summary>
    private static Dictionary<Tensor, Tensor> Propagate(Tensor[] roots, Tensor?[] seeds, HashSet<Tensor>? stopAt, Action<Tensor, Tensor>? leafDone)
    {
        var order = TopologicalOrder(roots, stopAt);
        // Towards given inputs only the ops on a path to one of them run (as torch.autograd.grad): the adaptive GAN
        // weight's two gradients w.r.t. the decoder's last conv then cost that conv's weight gradient each, not
        // a backward through the whole tokenizer.
        var leading = stopAt == null ? null : LeadingTo(order, stopAt);
        var usesLeft = leafDone == null ? null : LeafUses(order);
        var grads = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
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
            Accumulate(grads, r, seed);
        }
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var t = order[i];
            if (t.Node == null) continue;
            if (grads.TryGetValue(t, out var g) && (stopAt == null || !stopAt.Contains(t)) && (leading == null || leading.Contains(t)))
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
                    Accumulate(grads, input, ig);
                }
            }
            if (usesLeft == null) continue;
            foreach (var input in t.Node.Inputs)
            {
                if (!usesLeft.TryGetValue(input, out int left)) continue;
                if (left > 1) { usesLeft[input] = left - 1; continue; }
                usesLeft.Remove(input);
                if (grads.TryGetValue(input, out var leafGrad)) leafDone!(input, leafGrad);
            }
        }
        // A leaf that is itself a root is used by no op.
        if (leafDone != null)
            foreach (var r in roots)
                if (r.IsLeaf && grads.TryGetValue(r, out var rootGrad)) leafDone(r, rootGrad);
        return grads;
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

    private static void Accumulate(Dictionary<Tensor, Tensor> grads, Tensor t, Tensor g)
    {
        grads[t] = grads.TryGetValue(t, out var prev) ? prev.AddNoGrad(g) : g;
    }

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
