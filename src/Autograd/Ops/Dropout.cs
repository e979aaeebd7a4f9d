using MaskBit.Autograd.Nn;

namespace MaskBit.Autograd
{
    public static partial class F
    {
        /// <summary>
        /// Inverted dropout (torch.nn.functional.dropout): in training each element is zeroed with probability
        /// <paramref name="p"/> and the survivors scaled by 1/(1 − p); otherwise (or with p = 0) the input is returned
        /// as is. The keep mask is drawn on the host from <paramref name="generator"/>, one draw per element in
        /// row-major order, so a seeded, checkpointed generator reproduces a run exactly. The gradient is g·mask.
        /// </summary>
        public static Tensor Dropout(Tensor x, float p, bool training, Rng? generator)
        {
            if (p is < 0f or >= 1f) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must lie in [0, 1)");
            if (!training || p == 0f) return x;
            if (generator == null) throw new InvalidOperationException("dropout in training mode needs a random generator");
            var scaledKeep = new float[x.Numel];
            float scale = 1f / (1f - p);
            for (int i = 0; i < scaledKeep.Length; i++) scaledKeep[i] = generator.NextFloat() < p ? 0f : scale;
            // Mul records the backward g·mask; the mask itself needs no gradient.
            return x.Mul(Tensor.FromArray(scaledKeep, x.Shape, x.Device));
        }
    }
}

namespace MaskBit.Autograd.Nn
{
    /// <summary>torch.nn.Dropout: active in train mode only. Parameter-free, so registering it under the
    /// reference's Sequential index adds no state-dict key. <see cref="Generator"/> supplies the masks.</summary>
    public sealed class Dropout(float p) : Module
    {
        public float P { get; } = p is >= 0f and < 1f ? p : throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must lie in [0, 1)");
        public Rng? Generator { get; set; }

        public Tensor Forward(Tensor x) => F.Dropout(x, P, Training, Generator);
    }
}
