using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels;

namespace MaskBit.Models.Generator;

/// <summary>Generator settings, derived from a config as the reference's train_maskbit.py does.</summary>
public sealed record GeneratorConfig(string ModelClass, int ImageSize, int InputStride, int CodebookSize, int Splits,
    int HiddenDim, int Depth, int Heads, int MlpDim, float Dropout, int NumClasses, bool UsePrenorm)
{
    public int SeqLen => (ImageSize / InputStride) * (ImageSize / InputStride);
    public int Bits => (int)Math.Round(Math.Log2(CodebookSize));
    public int Shift => Bits / Splits;
    public int EffectiveCodebookSize => 1 << Shift;
    public int MaskToken => EffectiveCodebookSize;
    public int DropLabel => NumClasses;

}

/// <summary>
/// The masked-token generators of the reference (modeling/bert.py): <c>LFQBert</c> (embedding-free: each token
/// group enters as its ±1 bits, a masked group as zeros, through one linear projection) and the VQ <c>Bert</c>
/// (summed per-split token embeddings, tied output projection plus a per-position bias). Both append the class
/// token after the image tokens and return logits (B, seq_len, splits, 2^(bits/splits)).
/// </summary>
public sealed class MaskedGenerator : Module
{
    public GeneratorConfig Config { get; }
    public bool IsLfq => Config.ModelClass == "lfq_bert";
    public Embedding ClassEmb { get; }
    public Linear? InputProj { get; }
    public ModuleList<Embedding>? TokEmbList { get; }
    public Tensor PosEmb { get; }
    public LayerNorm FirstLayerNorm { get; }
    public Dropout FirstLayerDropout { get; }
    public TransformerEncoder Transformer { get; }
    public LayerNorm? NormAfterTransformer { get; }
    public Linear LastLinear { get; }
    public LayerNorm LastNorm { get; }
    public Linear? PredictionLayer { get; }
    public IReadOnlyList<Tensor> OutputBias { get; } = Array.Empty<Tensor>();

    public MaskedGenerator(GeneratorConfig config, int seed = 0)
    {
        Config = config;
        var rng = new Random(seed);
        int h = config.HiddenDim, c = config.EffectiveCodebookSize;
        PosEmb = Parameter("pos_emb", TruncNormal_(Tensor.Empty(new[] { 1, config.SeqLen + 1, h }), rng));
        if (IsLfq) Buffer("bits_to_indices", Tensor.FromInts(Enumerable.Range(0, config.Shift).Select(k => 1 << k).ToArray(), config.Shift));
        ClassEmb = Register("class_emb", new Embedding(config.NumClasses + 1, h, rng));
        if (IsLfq) InputProj = Register("input_proj", new Linear(config.Bits, h, rng: rng));
        else
        {
            TokEmbList = Register("tok_emb_list", new ModuleList<Embedding>());
            for (int i = 0; i < config.Splits; i++) TokEmbList.Add(new Embedding(c + 1, h, rng));
        }
        var first = Register("first_layer", new IndexedModules());
        FirstLayerNorm = first.Add(0, new LayerNorm(h, BertAttention.LayerNormEps));
        FirstLayerDropout = first.Add(1, new Dropout(config.Dropout));
        Transformer = Register("transformer", new TransformerEncoder(h, config.Depth, config.Heads, config.MlpDim, config.Dropout, config.UsePrenorm, rng));
        if (config.UsePrenorm) NormAfterTransformer = Register("norm_after_transformer", new LayerNorm(h, BertAttention.LayerNormEps));
        var last = Register("last_layer", new IndexedModules());
        LastLinear = last.Add(0, new Linear(h, h, rng: rng));
        LastNorm = last.Add(2, new LayerNorm(h, BertAttention.LayerNormEps));
        if (IsLfq) PredictionLayer = Register("prediction_layer", new Linear(h, config.Splits * c, rng: rng));
        else
        {
            var biases = Register("bias", new IndexedModules());
            OutputBias = Enumerable.Range(0, config.Splits).Select(i => biases.AddParameter(i, Tensor.Zeros(config.SeqLen, c))).ToList();
        }
        InitWeights(rng);
        DropoutGenerator = new Rng((ulong)seed);
    }

    /// <summary>The generator drawing every dropout mask of a training forward (a trainer hands in its own,
    /// checkpointed one). Only used in train mode with dropout &gt; 0.</summary>
    public Rng DropoutGenerator
    {
        get => FirstLayerDropout.Generator!;
        set
        {
            FirstLayerDropout.Generator = value;
            foreach (var layer in Transformer.Layers)
                layer.Attention.Mha.Generator = layer.Attention.Dropout.Generator = layer.FeedForward.Dropout.Generator = value;
        }
    }

    /// <summary>The reference's init: trunc-normal(0.02) for linear and embedding weights, zero biases, LN (1, 0).</summary>
    private void InitWeights(Random rng)
    {
        if (Init.IsShapesOnly) return;
        foreach (var (name, p) in NamedParameters())
        {
            if (name.EndsWith(".weight") && p.Rank == 2) TruncNormal_(p, rng);
            else if (name.EndsWith(".weight") && p.Rank == 1) p.Fill_(1f);   // LayerNorm
            else if (name.EndsWith(".bias")) p.Fill_(0f);
        }
    }

    /// <summary>The reference's trunc_normal_(std=0.02) with torch's default absolute bounds ±2.</summary>
    private static Tensor TruncNormal_(Tensor t, Random rng) => Init.TruncNormal_(t, 0.02f, -2f, 2f, rng);

    /// <summary>LFQBert input: each group's bits least significant first as ±1, a masked group as zeros, groups
    /// concatenated group-major: (B, n, splits) Int32 → (B, n, bits), on the tokens' device.</summary>
    public Tensor PreprocessTokens(Tensor tokens) => F.TokenBits(tokens, Config.Shift, Config.MaskToken);

    /// <summary>Logits (B, seq_len, splits, C) for tokens (B, seq_len, splits) Int32 and labels (B) Int32.
    /// Labels where <paramref name="dropLabelMask"/> is true are replaced by the drop label (in place, as the
    /// reference does); a null mask drops every label (the unconditional pass). The labels make one round trip
    /// to the host; callers that hold them there use the overload that takes them as a list.</summary>
    public Tensor Forward(Tensor tokens, Tensor classLabels, bool[]? dropLabelMask, Action<string, Tensor>? observe = null)
    {
        var labels = DropAndCheck(classLabels.ToIntArray(), dropLabelMask);
        classLabels.CopyFromInts_(labels);
        return ForwardEffective(tokens, classLabels, observe);
    }

    /// <summary><see cref="Forward(Tensor, Tensor, bool[], Action{string, Tensor})"/> with the labels on the host:
    /// checked and dropped there, then uploaded once.</summary>
    public Tensor Forward(Tensor tokens, IReadOnlyList<int> classLabels, bool[]? dropLabelMask, Action<string, Tensor>? observe = null) =>
        ForwardEffective(tokens, EffectiveLabels(classLabels, dropLabelMask, tokens.Device), observe);

    /// <summary>The labels as the model reads them (dropped ones replaced by the drop label, the others checked),
    /// uploaded once to <paramref name="device"/>: for callers that run many forwards on the same labels (the
    /// sampler's steps), with <see cref="ForwardEffective"/>.</summary>
    public Tensor EffectiveLabels(IReadOnlyList<int> classLabels, bool[]? dropLabelMask, IBackend device) =>
        Tensor.FromInts(EffectiveLabels(classLabels, dropLabelMask), new[] { classLabels.Count }, device);

    /// <summary>The labels as the model reads them, on the host (for callers that upload them with other data).</summary>
    public int[] EffectiveLabels(IReadOnlyList<int> classLabels, bool[]? dropLabelMask) => DropAndCheck(classLabels.ToArray(), dropLabelMask);

    /// <summary>The labels with the dropped ones replaced by the drop label (in place), the others checked.</summary>
    private int[] DropAndCheck(int[] labels, bool[]? dropLabelMask)
    {
        for (int i = 0; i < labels.Length; i++)
            if (dropLabelMask == null || dropLabelMask[i]) labels[i] = Config.DropLabel;
            else if (labels[i] < 0 || labels[i] >= Config.NumClasses) throw new ArgumentException($"class label {labels[i]} outside 0…{Config.NumClasses - 1}");
        return labels;
    }

    /// <summary>Logits for tokens and labels from <see cref="EffectiveLabels"/> (used as they are).</summary>
    public Tensor ForwardEffective(Tensor tokens, Tensor classLabels, Action<string, Tensor>? observe = null)
    {
        int b = tokens.Shape[0], n = tokens.Shape[1];
        if (n != Config.SeqLen || tokens.Shape[2] != Config.Splits)
            throw new ArgumentException($"generator expects tokens (B, {Config.SeqLen}, {Config.Splits}), got {ShapeUtil.Format(tokens.Shape)}");
        if (classLabels.Numel != b) throw new ArgumentException($"generator expects {b} class labels, got {ShapeUtil.Format(classLabels.Shape)}");

        var cls = ClassEmb.Forward(classLabels.Reshape(b, 1));
        Tensor tok;
        if (IsLfq) tok = InputProj!.Forward(PreprocessTokens(tokens));
        else
        {
            tok = TokEmbList![0].Forward(tokens.Narrow(2, 0, 1).Squeeze(2));
            for (int i = 1; i < Config.Splits; i++) tok = tok.Add(TokEmbList[i].Forward(tokens.Narrow(2, i, 1).Squeeze(2)));
        }
        var x = Tensor.Cat(new[] { tok, cls }, 1).Add(PosEmb);
        observe?.Invoke("embeddings", x);
        x = FirstLayerDropout.Forward(FirstLayerNorm.Forward(x));
        observe?.Invoke("first_layer", x);
        x = Transformer.Forward(x, observe == null ? null : (l, what, a) => observe($"layer{l}.{what}", a));
        if (NormAfterTransformer != null) { x = NormAfterTransformer.Forward(x); observe?.Invoke("norm_after_transformer", x); }
        x = LastNorm.Forward(LastLinear.Forward(x).Gelu());
        observe?.Invoke("last_layer", x);
        int c = Config.EffectiveCodebookSize;
        if (IsLfq)
        {
            // The class token's logits are dropped: cut them before the projection when the logits are the wider
            // of the two (12-bit: 4096 vs 1024 values per token), after it otherwise.
            if (Config.Splits * c > Config.HiddenDim) return PredictionLayer!.Forward(x.Narrow(1, 0, n)).Reshape(b, n, Config.Splits, c);
            return PredictionLayer!.Forward(x).Reshape(b, n + 1, Config.Splits, c).Narrow(1, 0, n);
        }
        var xs = x.Narrow(1, 0, n);
        var perSplit = new List<Tensor>();
        for (int i = 0; i < Config.Splits; i++)
        {
            // Tied output projection: the first C rows of the split's embedding table.
            var table = TokEmbList![i].Weight.Narrow(0, 0, c);
            perSplit.Add(Tensor.MatMul(xs, table, transB: true).Add(OutputBias[i]));
        }
        return Tensor.Stack(perSplit, 2);
    }
}
