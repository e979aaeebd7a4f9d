namespace MaskBit.Autograd;

/// <summary>
/// Activation checkpointing (torch.utils.checkpoint.checkpoint): a block runs its forward without a tape, so its
/// intermediate activations are released as soon as its output exists, and one tape node stands for the whole
/// block. That node's backward runs the forward again on a tape of its own, from the saved input, and
/// back-propagates through it; the recomputed activations are released when it returns. Memory then holds each
/// checkpointed block's input instead of all its activations, for the price of a second forward.
/// Random draws (dropout masks) made in the first forward are replayed in the recomputation, so the gradients equal
/// the ones without checkpointing, and the recomputation runs under the forward's autocast type. The block must otherwise be a pure function of its input and
/// <c>parameters</c>: state it updates in train mode (BatchNorm's running statistics) would be updated twice.
/// </summary>
public static class Checkpoint
{
    /// <summary><paramref name="block"/>(<paramref name="input"/>), checkpointed when the tape records it: with
    /// grad mode on and the input or one of <paramref name="parameters"/> (all the tensors it reads that may want a
    /// gradient) requiring grad. Otherwise the block just runs.</summary>
    public static Tensor Run(Func<Tensor, Tensor> block, Tensor input, IEnumerable<Tensor> parameters)
    {
        if (!Tape.IsGradEnabled) return block(input);
        var trainable = parameters.Where(p => p.RequiresGrad).ToArray();
        if (!input.RequiresGrad && trainable.Length == 0) return block(input);

        var draws = new List<(Rng Source, ulong Value)>();
        var precision = Autocast.DType;   // the recomputation runs in the forward's precision, as torch's checkpoint does
        Tensor output;
        using (var scope = TensorScope.Begin())
        using (Tape.NoGrad())
        using (Rng.Record(draws))
            output = scope.Keep(block(input));

        Tensor[] inputs = [input, .. trainable];
        Tape.Record(output, "checkpoint", inputs, [input], gradOutput =>
        {
            // Only the gradients the running backward asks for (all of them in a full backward).
            bool[] needed = inputs.Select(Tape.NeedsGrad).ToArray();
            var replayed = input.Detach().RequiresGrad_(needed[0]);
            var wanted = new List<Tensor>();
            for (int i = 0; i < inputs.Length; i++)
                if (needed[i]) wanted.Add(i == 0 ? replayed : inputs[i]);
            var grads = new Tensor?[inputs.Length];
            if (wanted.Count == 0) return grads;

            using var scope = TensorScope.Begin();
            Tensor recomputed;
            using (Tape.EnableGrad())
            using (Autocast.Enable(precision))
            using (Rng.Replay(draws))
                recomputed = block(replayed);
            if (!recomputed.RequiresGrad) return grads;
            var wantedGrads = Tape.Grad(recomputed, wanted, gradOutput);
            for (int i = 0, k = 0; i < inputs.Length; i++)
                if (needed[i]) grads[i] = scope.Keep(wantedGrads[k++]);
            return grads;
        });
        return output;
    }
}
