namespace MaskBit.Autograd.Nn;

/// <summary>torch.nn.Embedding: weight (num, dim) drawn from N(0, 1) as torch does.</summary>
public sealed class Embedding : Module
{
    public Tensor Weight { get; }

    public Embedding(int num, int dim, Random? rng = null) =>
        Weight = Parameter("weight", Init.Normal(new[] { num, dim }, 1f, rng ?? Random.Shared));

    /// <summary>Rows of the table for Int32 indices of any shape: indices.Shape + (dim).</summary>
    public Tensor Forward(Tensor indices) => F.Embedding(indices, Weight);
}
