using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

// The building blocks of the original Taming VQGAN encoder and decoder (reference:
// modeling/taming/taming_autoencoder.py). Unlike the VQGAN+ blocks, convolutions use torch's symmetric padding
// with biases, the residual shortcut reads the block input, and the 16×16 stages carry spatial self-attention.
// GroupNorm is GroupNorm(32, C, eps 1e-6); where swish follows it the fused GroupNorm+SiLU kernel is used.

/// <summary>Taming's ResnetBlock (no timestep embedding, dropout 0): norm1 → swish → conv1 → norm2 → swish →
/// conv2, plus the input (through the 1×1 `nin_shortcut` when channels change).</summary>
public sealed class TamingResnetBlock : Module
{
    public const float NormEps = 1e-6f;
    public GroupNorm Norm1 { get; }
    public Conv2d Conv1 { get; }
    public GroupNorm Norm2 { get; }
    public Conv2d Conv2 { get; }
    public Conv2d? NinShortcut { get; }

    public TamingResnetBlock(int inChannels, int outChannels, Random rng)
    {
        Norm1 = Register("norm1", new GroupNorm(32, inChannels, NormEps));
        Conv1 = Register("conv1", new Conv2d(inChannels, outChannels, 3, padding: 1, rng: rng));
        Norm2 = Register("norm2", new GroupNorm(32, outChannels, NormEps));
        Conv2 = Register("conv2", new Conv2d(outChannels, outChannels, 3, padding: 1, rng: rng));
        if (inChannels != outChannels) NinShortcut = Register("nin_shortcut", new Conv2d(inChannels, outChannels, 1, rng: rng));
    }

    public Tensor Forward(Tensor x)
    {
        var h = Conv1.Forward(Norm1.ForwardSilu(x));
        h = Conv2.Forward(Norm2.ForwardSilu(h));
        return (NinShortcut?.Forward(x) ?? x).Add(h);
    }
}

/// <summary>Taming's AttnBlock: single-head self-attention over the H·W positions of a feature map, with 1×1
/// conv projections q, k, v, proj_out (scale 1/√C) and a residual connection.</summary>
public sealed class TamingAttnBlock : Module
{
    public GroupNorm Norm { get; }
    public Conv2d Q { get; }
    public Conv2d K { get; }
    public Conv2d V { get; }
    public Conv2d ProjOut { get; }

    public TamingAttnBlock(int channels, Random rng)
    {
        Norm = Register("norm", new GroupNorm(32, channels, TamingResnetBlock.NormEps));
        Q = Register("q", new Conv2d(channels, channels, 1, rng: rng));
        K = Register("k", new Conv2d(channels, channels, 1, rng: rng));
        V = Register("v", new Conv2d(channels, channels, 1, rng: rng));
        ProjOut = Register("proj_out", new Conv2d(channels, channels, 1, rng: rng));
    }

    public Tensor Forward(Tensor x)
    {
        int b = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        var normed = Norm.Forward(x);
        // (B, C, H, W) → (B, H·W, C): one token per position; the fused kernel's default scale is 1/√C.
        Tensor Tokens(Conv2d projection) => projection.Forward(normed).Reshape(b, c, h * w).Transpose(1, 2);
        var attended = F.ScaledDotProductAttention(Tokens(Q), Tokens(K), Tokens(V));
        return x.Add(ProjOut.Forward(attended.Transpose(1, 2).Reshape(b, c, h, w)));
    }
}

/// <summary>One resolution level: `block` (residual blocks), `attn` (one attention block after each residual
/// block at the attention resolutions, else empty) and the level's resampler (`downsample` / `upsample`).</summary>
public sealed class TamingLevel : Module
{
    public ModuleList<TamingResnetBlock> Block { get; }
    public ModuleList<TamingAttnBlock> Attn { get; }
    public TamingResample? Resample { get; }

    public TamingLevel(int inChannels, int outChannels, int numBlocks, bool attention, TamingResample.Direction? resample, Random rng)
    {
        Block = Register("block", new ModuleList<TamingResnetBlock>());
        Attn = Register("attn", new ModuleList<TamingAttnBlock>());
        for (int i = 0; i < numBlocks; i++)
        {
            Block.Add(new TamingResnetBlock(inChannels, outChannels, rng));
            inChannels = outChannels;
            if (attention) Attn.Add(new TamingAttnBlock(outChannels, rng));
        }
        if (resample is { } direction)
            Resample = Register(direction == TamingResample.Direction.Down ? "downsample" : "upsample", new TamingResample(outChannels, direction, rng));
    }

    public Tensor Forward(Tensor h)
    {
        for (int i = 0; i < Block.Count; i++)
        {
            h = Block[i].Forward(h);
            if (Attn.Count > 0) h = Attn[i].Forward(h);
        }
        return Resample?.Forward(h) ?? h;
    }
}

/// <summary>Taming's Downsample (zero pad right/bottom by one, 3×3 stride-2 conv) or Upsample (nearest ×2, 3×3
/// conv); both keep the conv as `conv`.</summary>
public sealed class TamingResample : Module
{
    public enum Direction { Down, Up }

    /// <summary>torch pads (0, 1, 0, 1) before the unpadded stride-2 conv: one extra column right, one row below.</summary>
    private static readonly Padding2d DownPadding = new(0, 1, 0, 1);

    public Direction Kind { get; }
    public Conv2d Conv { get; }

    public TamingResample(int channels, Direction kind, Random rng)
    {
        Kind = kind;
        Conv = Register("conv", kind == Direction.Down
            ? new Conv2d(channels, channels, 3, stride: 2, rng: rng)
            : new Conv2d(channels, channels, 3, padding: 1, rng: rng));
    }

    public Tensor Forward(Tensor x) => Kind == Direction.Down
        ? F.Conv2d(x, Conv.Weight, Conv.Bias, Conv.Stride, DownPadding)
        : Conv.Forward(F.UpsampleNearest2x(x));
}

/// <summary>`mid`: block_1 → attn_1 → block_2 at the lowest resolution.</summary>
public sealed class TamingMid : Module
{
    public TamingResnetBlock Block1 { get; }
    public TamingAttnBlock Attn1 { get; }
    public TamingResnetBlock Block2 { get; }

    public TamingMid(int channels, Random rng)
    {
        Block1 = Register("block_1", new TamingResnetBlock(channels, channels, rng));
        Attn1 = Register("attn_1", new TamingAttnBlock(channels, rng));
        Block2 = Register("block_2", new TamingResnetBlock(channels, channels, rng));
    }

    public Tensor Forward(Tensor x) => Block2.Forward(Attn1.Forward(Block1.Forward(x)));
}

public sealed class TamingEncoder : Module
{
    public Conv2d ConvIn { get; }
    public ModuleList<TamingLevel> Down { get; }
    public TamingMid Mid { get; }
    public GroupNorm NormOut { get; }
    public Conv2d ConvOut { get; }

    public TamingEncoder(TamingConfig c, Random rng)
    {
        ConvIn = Register("conv_in", new Conv2d(c.InChannels, c.Ch, 3, padding: 1, rng: rng));
        Down = Register("down", new ModuleList<TamingLevel>());
        int levels = c.ChMult.Length, resolution = c.Resolution, blockIn = c.Ch;
        for (int level = 0; level < levels; level++)
        {
            int blockOut = c.Ch * c.ChMult[level];
            bool last = level == levels - 1;
            Down.Add(new TamingLevel(blockIn, blockOut, c.NumResBlocks, c.AttnResolutions.Contains(resolution),
                last ? null : TamingResample.Direction.Down, rng));
            blockIn = blockOut;
            if (!last) resolution /= 2;
        }
        Mid = Register("mid", new TamingMid(blockIn, rng));
        NormOut = Register("norm_out", new GroupNorm(32, blockIn, TamingResnetBlock.NormEps));
        ConvOut = Register("conv_out", new Conv2d(blockIn, c.ZChannels, 3, padding: 1, rng: rng));
    }

    public Tensor Forward(Tensor x)
    {
        var h = ConvIn.Forward(x);
        foreach (var level in Down) h = level.Forward(h);
        return ConvOut.Forward(NormOut.ForwardSilu(Mid.Forward(h)));
    }
}

/// <summary>The decoder. `up` is indexed by resolution level (`up.0` is the full-resolution level), so it runs in
/// reverse index order; each level has one residual block more than the encoder's.</summary>
public sealed class TamingDecoder : Module
{
    public Conv2d ConvIn { get; }
    public TamingMid Mid { get; }
    public ModuleList<TamingLevel> Up { get; }
    public GroupNorm NormOut { get; }
    public Conv2d ConvOut { get; }

    public TamingDecoder(TamingConfig c, Random rng)
    {
        int levels = c.ChMult.Length;
        int blockIn = c.Ch * c.ChMult[levels - 1];
        int resolution = c.Resolution >> (levels - 1);
        ConvIn = Register("conv_in", new Conv2d(c.ZChannels, blockIn, 3, padding: 1, rng: rng));
        Mid = Register("mid", new TamingMid(blockIn, rng));
        // Built in run order (lowest resolution first), stored by level.
        var byLevel = new TamingLevel[levels];
        for (int level = levels - 1; level >= 0; level--)
        {
            int blockOut = c.Ch * c.ChMult[level];
            byLevel[level] = new TamingLevel(blockIn, blockOut, c.NumResBlocks + 1, c.AttnResolutions.Contains(resolution),
                level == 0 ? null : TamingResample.Direction.Up, rng);
            blockIn = blockOut;
            if (level != 0) resolution *= 2;
        }
        Up = Register("up", new ModuleList<TamingLevel>(byLevel));
        NormOut = Register("norm_out", new GroupNorm(32, blockIn, TamingResnetBlock.NormEps));
        ConvOut = Register("conv_out", new Conv2d(blockIn, c.OutChannels, 3, padding: 1, rng: rng));
    }

    public Tensor Forward(Tensor z)
    {
        var h = Mid.Forward(ConvIn.Forward(z));
        for (int level = Up.Count - 1; level >= 0; level--) h = Up[level].Forward(h);
        return ConvOut.Forward(NormOut.ForwardSilu(h));
    }
}
