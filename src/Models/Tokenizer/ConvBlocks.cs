using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Tokenizer;

// The building blocks of the VQGAN+ encoder and decoder (reference: modeling/modules/autoencoder.py).
// Convolutions use TF-style SAME padding; GroupNorm is GroupNorm(32, C, eps 1e-6) and is always followed by
// SiLU here, so the fused GroupNorm+SiLU kernel is used.

/// <summary>A stage that runs on a feature map; the decoder passes z_quantized as well (unused, as in the reference).</summary>
public abstract class Stage : Module
{
    public abstract Tensor Forward(Tensor x);

    /// <summary><see cref="Forward"/>, as one checkpointed tape node when <paramref name="checkpointed"/>
    /// (<see cref="Checkpoint"/>).</summary>
    public Tensor Forward(Tensor x, bool checkpointed) => checkpointed ? Checkpoint.Run(Forward, x, Parameters()) : Forward(x);

    /// <summary>The blocks in order; without a tape each block's activations are released as it finishes
    /// (<see cref="TensorScope.Chain"/>).</summary>
    protected static Tensor RunBlocks(IEnumerable<ResidualBlock> blocks, Tensor x) =>
        TensorScope.Chain(x, blocks.Select(b => (Func<Tensor, Tensor>)b.Forward));
}

public sealed class ResidualBlock : Module
{
    public const float NormEps = 1e-6f;
    public int InChannels { get; }
    public int OutChannels { get; }
    public GroupNorm Norm1 { get; }
    public Conv2d Conv1 { get; }
    public GroupNorm Norm2 { get; }
    public Conv2d Conv2 { get; }
    /// <summary>1×1 conv applied to the output of conv2 (not to the block input) when channels change.</summary>
    public Conv2d? NinShortcut { get; }

    public ResidualBlock(int inChannels, int outChannels, Random rng)
    {
        InChannels = inChannels; OutChannels = outChannels;
        Norm1 = Register("norm1", new GroupNorm(32, inChannels, NormEps));
        Conv1 = Register("conv1", Conv2d.SamePadded(inChannels, outChannels, 3, bias: false, rng: rng));
        Norm2 = Register("norm2", new GroupNorm(32, outChannels, NormEps));
        Conv2 = Register("conv2", Conv2d.SamePadded(outChannels, outChannels, 3, bias: false, rng: rng));
        if (inChannels != outChannels) NinShortcut = Register("nin_shortcut", Conv2d.SamePadded(outChannels, outChannels, 1, bias: false, rng: rng));
    }

    public Tensor Forward(Tensor x)
    {
        var h = Conv1.Forward(Norm1.ForwardSilu(x));
        h = Conv2.Forward(Norm2.ForwardSilu(h));
        // Reference quirk: with a channel change the block input is discarded and the shortcut reads conv2's output.
        return h.Add(NinShortcut != null ? NinShortcut.Forward(h) : x);
    }
}

/// <summary>res_blocks only.</summary>
public sealed class ResidualStage : Stage
{
    public ModuleList<ResidualBlock> ResBlocks { get; }

    public ResidualStage(int inChannels, int outChannels, int numResBlocks, Random rng)
    {
        ResBlocks = Register("res_blocks", new ModuleList<ResidualBlock>());
        for (int i = 0; i < numResBlocks; i++) { ResBlocks.Add(new ResidualBlock(inChannels, outChannels, rng)); inChannels = outChannels; }
    }

    public override Tensor Forward(Tensor x)
    {
        x = RunBlocks(ResBlocks, x);
        return x;
    }
}

/// <summary>res_blocks, then a stride-2 3×3 `down_conv` or a 2×2 average pool.</summary>
public sealed class DownsamplingStage : Stage
{
    public ModuleList<ResidualBlock> ResBlocks { get; }
    public Conv2d? DownConv { get; }

    public DownsamplingStage(int inChannels, int outChannels, int numResBlocks, bool sampleWithConv, Random rng)
    {
        ResBlocks = Register("res_blocks", new ModuleList<ResidualBlock>());
        for (int i = 0; i < numResBlocks; i++) { ResBlocks.Add(new ResidualBlock(inChannels, outChannels, rng)); inChannels = outChannels; }
        if (sampleWithConv) DownConv = Register("down_conv", Conv2d.SamePadded(inChannels, inChannels, 3, stride: 2, rng: rng));
    }

    public override Tensor Forward(Tensor x)
    {
        x = RunBlocks(ResBlocks, x);
        return DownConv != null ? DownConv.Forward(x) : F.AvgPool2d2x2(x);
    }
}

/// <summary>res_blocks, nearest ×2, then a 3×3 `upsample_conv`.</summary>
public sealed class UpsamplingStage : Stage
{
    public ModuleList<ResidualBlock> ResBlocks { get; }
    public Conv2d UpsampleConv { get; }

    public UpsamplingStage(int inChannels, int outChannels, int numResBlocks, Random rng)
    {
        ResBlocks = Register("res_blocks", new ModuleList<ResidualBlock>());
        for (int i = 0; i < numResBlocks; i++) { ResBlocks.Add(new ResidualBlock(inChannels, outChannels, rng)); inChannels = outChannels; }
        UpsampleConv = Register("upsample_conv", Conv2d.SamePadded(outChannels, outChannels, 3, rng: rng));
    }

    public override Tensor Forward(Tensor x)
    {
        x = RunBlocks(ResBlocks, x);
        return UpsampleConv.Forward(F.UpsampleNearest2x(x));
    }
}
