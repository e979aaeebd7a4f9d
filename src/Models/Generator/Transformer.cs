using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Generator;

// The BERT encoder of the MaskBit generator (reference: modeling/bert.py). Every LayerNorm has eps 1e-12;
// GELU is the exact erf form. Dropout sits where the reference's does (attention weights inside the
// MultiheadAttention, attention output, MLP `net.3`) and acts in train mode only.

public sealed class BertAttention : Module
{
    public const float LayerNormEps = 1e-12f;
    public MultiheadAttention Mha { get; }
    public Dropout Dropout { get; }
    public LayerNorm Norm { get; }
    public bool UsePrenorm { get; }

    public BertAttention(int dim, int heads, float dropout, bool usePrenorm, Random rng)
    {
        UsePrenorm = usePrenorm;
        Mha = Register("mha", new MultiheadAttention(dim, heads, dropout, rng: rng));
        Dropout = Register("dropout", new Dropout(dropout));
        Norm = Register("norm", new LayerNorm(dim, LayerNormEps));
    }

    public Tensor Forward(Tensor x) => UsePrenorm
        ? Dropout.Forward(Mha.Forward(Norm.Forward(x))).Add(x)
        : Norm.Forward(Dropout.Forward(Mha.Forward(x)).Add(x));
}

/// <summary>The MLP block: `net.0` Linear → GELU → `net.2` Linear → `net.3` Dropout (index 1 is the activation).</summary>
public sealed class BertFeedForward : Module
{
    public Linear Fc1 { get; }
    public Linear Fc2 { get; }
    public Dropout Dropout { get; }
    public LayerNorm Norm { get; }
    public bool UsePrenorm { get; }

    public BertFeedForward(int dim, int hidden, float dropout, bool usePrenorm, Random rng)
    {
        UsePrenorm = usePrenorm;
        var net = Register("net", new IndexedModules());
        Fc1 = net.Add(0, new Linear(dim, hidden, rng: rng));
        Fc2 = net.Add(2, new Linear(hidden, dim, rng: rng));
        Dropout = net.Add(3, new Dropout(dropout));
        Norm = Register("norm", new LayerNorm(dim, BertAttention.LayerNormEps));
    }

    private Tensor Mlp(Tensor x) => Dropout.Forward(Fc2.Forward(Fc1.Forward(x).Gelu()));

    public Tensor Forward(Tensor x) => UsePrenorm ? Mlp(Norm.Forward(x)).Add(x) : Norm.Forward(Mlp(x).Add(x));
}

/// <summary>torch.nn.Sequential children addressed by their index, for sequences with parameter-free members
/// (activations, dropout) whose indices must still be skipped in the state-dict keys.</summary>
public sealed class IndexedModules : Module
{
    public T Add<T>(int index, T module) where T : Module => Register(index.ToString(), module);
    public Tensor AddParameter(int index, Tensor value) => Parameter(index.ToString(), value);
}

/// <summary>One layer: `layers.L.0` attention block and `layers.L.1` MLP block.</summary>
public sealed class TransformerLayer : Module
{
    public BertAttention Attention { get; }
    public BertFeedForward FeedForward { get; }

    public TransformerLayer(int dim, int heads, int mlpDim, float dropout, bool usePrenorm, Random rng)
    {
        Attention = Register("0", new BertAttention(dim, heads, dropout, usePrenorm, rng));
        FeedForward = Register("1", new BertFeedForward(dim, mlpDim, dropout, usePrenorm, rng));
    }

    public Tensor Forward(Tensor x) => FeedForward.Forward(Attention.Forward(x));
}

public sealed class TransformerEncoder : Module
{
    public ModuleList<TransformerLayer> Layers { get; }

    /// <summary>Runs each layer as one checkpointed tape node (training.activation_checkpointing).</summary>
    public bool ActivationCheckpointing { get; set; }

    public TransformerEncoder(int dim, int depth, int heads, int mlpDim, float dropout, bool usePrenorm, Random rng)
    {
        Layers = Register("layers", new ModuleList<TransformerLayer>());
        for (int i = 0; i < depth; i++) Layers.Add(new TransformerLayer(dim, heads, mlpDim, dropout, usePrenorm, rng));
    }

    /// <summary>Runs all layers (without a tape releasing each layer's activations as it goes, see
    /// <see cref="TensorScope.Chain"/>); <paramref name="observe"/> receives (layer, "attn"|"ffn", activation) for
    /// inspection, and then every activation is kept.</summary>
    public Tensor Forward(Tensor x, Action<int, string, Tensor>? observe = null)
    {
        if (observe == null) return TensorScope.Chain(x, Layers.Select(l => (Func<Tensor, Tensor>)(h => ActivationCheckpointing ? Checkpoint.Run(l.Forward, h, l.Parameters()) : l.Forward(h))));
        for (int i = 0; i < Layers.Count; i++)
        {
            x = Layers[i].Attention.Forward(x);
            observe(i, "attn", x);
            x = Layers[i].FeedForward.Forward(x);
            observe(i, "ffn", x);
        }
        return x;
    }
}
