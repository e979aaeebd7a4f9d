using MaskBit.Autograd;
using MaskBit.Autograd.Nn;
using MaskBit.Kernels;

namespace MaskBit.Models.Perceptual;

/// <summary>The FID InceptionV3 as the reference evaluator uses it (torch-fidelity's FeatureExtractorInceptionV3
/// with pytorch-fid's weights, pt_inception-2015-12-05-6726825d.pth; golden convention 23), in eval mode and
/// float32 (the reference runs float64). uint8 images → TF1-style bilinear resize to 299 (float64) →
/// (x − 128)/128 → stem → Mixed_5b … Mixed_7c → global average pool (2048) → fc (1008). Keys as the
/// checkpoint: <c>Conv2d_1a_3x3.conv.weight</c>, <c>Mixed_5b.branch1x1.bn.running_mean</c>, …, <c>fc</c>.</summary>
public sealed class InceptionV3 : Module
{
    public const int InputSize = 299;

    private readonly BasicConv2d _conv1a, _conv2a, _conv2b, _conv3b, _conv4a;
    private readonly Func<Tensor, Tensor>[] _mixed5, _mixed6, _mixed7;
    public PretrainedLinear Fc { get; }

    /// <summary>The pooled features of one batch (all (N, C), float32).</summary>
    public sealed record Features(Tensor Pool64, Tensor Pool192, Tensor Pool768, Tensor Pool2048, Tensor LogitsUnbiased, Tensor Logits);

    public InceptionV3()
    {
        _conv1a = Register("Conv2d_1a_3x3", new BasicConv2d(3, 32, 3, stride: 2));
        _conv2a = Register("Conv2d_2a_3x3", new BasicConv2d(32, 32, 3));
        _conv2b = Register("Conv2d_2b_3x3", new BasicConv2d(32, 64, 3, padding: 1));
        _conv3b = Register("Conv2d_3b_1x1", new BasicConv2d(64, 80, 1));
        _conv4a = Register("Conv2d_4a_3x3", new BasicConv2d(80, 192, 3));
        _mixed5 = new Func<Tensor, Tensor>[]
        {
            Register("Mixed_5b", new InceptionA(192, 32)).Forward,
            Register("Mixed_5c", new InceptionA(256, 64)).Forward,
            Register("Mixed_5d", new InceptionA(288, 64)).Forward,
        };
        _mixed6 = new Func<Tensor, Tensor>[]
        {
            Register("Mixed_6a", new InceptionB(288)).Forward,
            Register("Mixed_6b", new InceptionC(768, 128)).Forward,
            Register("Mixed_6c", new InceptionC(768, 160)).Forward,
            Register("Mixed_6d", new InceptionC(768, 160)).Forward,
            Register("Mixed_6e", new InceptionC(768, 192)).Forward,
        };
        _mixed7 = new Func<Tensor, Tensor>[]
        {
            Register("Mixed_7a", new InceptionD(768)).Forward,
            Register("Mixed_7b", new InceptionE(1280, maxPoolBranch: false)).Forward,
            Register("Mixed_7c", new InceptionE(2048, maxPoolBranch: true)).Forward,
        };
        Fc = Register("fc", new PretrainedLinear(2048, 1008));
        Eval();
        RequiresGrad_(false);
    }

    /// <summary>Features of uint8 images (N, 3, H, W): an Int32 tensor (or float32 holding whole numbers) with
    /// values 0…255. The evaluator uses <see cref="Features.Pool2048"/> (FID) and
    /// <see cref="Features.LogitsUnbiased"/> (Inception Score; fc without its bias).</summary>
    public Features Forward(Tensor imagesUint8)
    {
        if (imagesUint8.Rank != 4 || imagesUint8.Size(1) != 3)
            throw new ArgumentException($"InceptionV3 needs uint8 images (N, 3, H, W), got {imagesUint8}");
        int n = imagesUint8.Size(0), h = imagesUint8.Size(2), w = imagesUint8.Size(3);
        double[] pixels = imagesUint8.DType == DType.Int32
            ? imagesUint8.ToIntArray().Select(v => (double)v).ToArray()
            : imagesUint8.ToArray().Select(v => (double)v).ToArray();
        var resized = ResizeBilinearTensorflow1x(pixels, n * 3, h, w, InputSize, InputSize);
        var normalized = new float[resized.Length];
        for (int i = 0; i < resized.Length; i++) normalized[i] = (float)((resized[i] - 128) / 128);
        var x = Tensor.FromArray(normalized, new[] { n, 3, InputSize, InputSize }, imagesUint8.Device);

        x = _conv2b.Forward(_conv2a.Forward(_conv1a.Forward(x)));
        x = F.MaxPool2d(x, 3, 2);
        var pool64 = F.GlobalAvgPool2d(x);
        x = F.MaxPool2d(_conv4a.Forward(_conv3b.Forward(x)), 3, 2);
        var pool192 = F.GlobalAvgPool2d(x);
        foreach (var block in _mixed5.Concat(_mixed6)) x = block(x);
        var pool768 = F.GlobalAvgPool2d(x);
        foreach (var block in _mixed7) x = block(x);
        var pool2048 = F.GlobalAvgPool2d(x);
        var logitsUnbiased = Tensor.MatMul(pool2048, Fc.Weight, transB: true);
        var logits = logitsUnbiased.Add(Fc.Bias);
        return new Features(pool64, pool192, pool768, pool2048, logitsUnbiased, logits);
    }

    /// <summary>torch-fidelity's TF1.x bilinear resize (align_corners=False) of planes (P, H, W) in float64:
    /// source coordinate y·s with the scale s = in/out rounded to float32, lo = ⌊·⌋, hi = min(lo + 1, in − 1),
    /// lerp along the width on both rows, then along the height. Not torch's half-pixel convention.</summary>
    public static double[] ResizeBilinearTensorflow1x(ReadOnlySpan<double> x, int planes, int h, int w, int oh, int ow)
    {
        var (rowLo, rowHi, rowFrac) = Tf1Grid(h, oh);
        var (colLo, colHi, colFrac) = Tf1Grid(w, ow);
        var y = new double[planes * oh * ow];
        for (int p = 0; p < planes; p++)
        {
            var plane = x.Slice(p * h * w, h * w);
            for (int i = 0; i < oh; i++)
            {
                int top = rowLo[i] * w, bottom = rowHi[i] * w;
                for (int j = 0; j < ow; j++)
                {
                    double v00 = plane[top + colLo[j]], v01 = plane[top + colHi[j]];
                    double v10 = plane[bottom + colLo[j]], v11 = plane[bottom + colHi[j]];
                    double upper = v00 + (v01 - v00) * colFrac[j], lower = v10 + (v11 - v10) * colFrac[j];
                    y[(p * oh + i) * ow + j] = upper + (lower - upper) * rowFrac[i];
                }
            }
        }
        return y;
    }

    private static (int[] Lo, int[] Hi, double[] Frac) Tf1Grid(int inSize, int outSize)
    {
        double scale = (float)((double)inSize / outSize);
        var lo = new int[outSize];
        var hi = new int[outSize];
        var frac = new double[outSize];
        for (int i = 0; i < outSize; i++)
        {
            double source = i * scale;
            lo[i] = (int)source;
            hi[i] = Math.Min(lo[i] + 1, inSize - 1);
            frac[i] = source - lo[i];
        }
        return (lo, hi, frac);
    }
}

/// <summary>Conv (no bias, rectangular kernel and padding allowed) → BatchNorm (eps 1e-3, folded into the conv)
/// → ReLU; keys <c>conv.weight</c>, <c>bn.*</c>.</summary>
public sealed class BasicConv2d : Module
{
    public PretrainedConv2d Conv { get; }
    public BatchNorm2d Bn { get; }

    public BasicConv2d(int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0)
        : this(inChannels, outChannels, (kernel, kernel), stride, (padding, padding)) { }

    public BasicConv2d(int inChannels, int outChannels, (int H, int W) kernel, int stride, (int H, int W) padding)
    {
        Conv = Register("conv", new PretrainedConv2d(inChannels, outChannels, kernel, stride, padding));
        Bn = Register("bn", new BatchNorm2d(outChannels, eps: 1e-3f));
    }

    public Tensor Forward(Tensor x) => Conv.ForwardWithBatchNorm(x, Bn).Relu();
}

/// <summary>InceptionA (35×35): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg-pool 3 (count_include_pad=False)→1×1.</summary>
public sealed class InceptionA : Module
{
    private readonly BasicConv2d _b1, _b5a, _b5b, _b3a, _b3b, _b3c, _pool;

    public InceptionA(int inChannels, int poolFeatures)
    {
        _b1 = Register("branch1x1", new BasicConv2d(inChannels, 64, 1));
        _b5a = Register("branch5x5_1", new BasicConv2d(inChannels, 48, 1));
        _b5b = Register("branch5x5_2", new BasicConv2d(48, 64, 5, padding: 2));
        _b3a = Register("branch3x3dbl_1", new BasicConv2d(inChannels, 64, 1));
        _b3b = Register("branch3x3dbl_2", new BasicConv2d(64, 96, 3, padding: 1));
        _b3c = Register("branch3x3dbl_3", new BasicConv2d(96, 96, 3, padding: 1));
        _pool = Register("branch_pool", new BasicConv2d(inChannels, poolFeatures, 1));
    }

    public Tensor Forward(Tensor x) => Tensor.Cat(new[]
    {
        _b1.Forward(x),
        _b5b.Forward(_b5a.Forward(x)),
        _b3c.Forward(_b3b.Forward(_b3a.Forward(x))),
        _pool.Forward(F.AvgPool2d(x, 3, 1, 1, countIncludePad: false)),
    }, 1);
}

/// <summary>InceptionB (35 → 17): 3×3 stride 2 | 1×1→3×3→3×3 stride 2 | max-pool 3 stride 2.</summary>
public sealed class InceptionB : Module
{
    private readonly BasicConv2d _b3, _d1, _d2, _d3;

    public InceptionB(int inChannels)
    {
        _b3 = Register("branch3x3", new BasicConv2d(inChannels, 384, 3, stride: 2));
        _d1 = Register("branch3x3dbl_1", new BasicConv2d(inChannels, 64, 1));
        _d2 = Register("branch3x3dbl_2", new BasicConv2d(64, 96, 3, padding: 1));
        _d3 = Register("branch3x3dbl_3", new BasicConv2d(96, 96, 3, stride: 2));
    }

    public Tensor Forward(Tensor x) => Tensor.Cat(new[]
    {
        _b3.Forward(x), _d3.Forward(_d2.Forward(_d1.Forward(x))), F.MaxPool2d(x, 3, 2),
    }, 1);
}

/// <summary>InceptionC (17×17, factorised 7×7): 1×1 | 1×1→1×7→7×1 | 1×1→7×1→1×7→7×1→1×7 | avg-pool→1×1.</summary>
public sealed class InceptionC : Module
{
    private static readonly (int, int) Row = (1, 7), Column = (7, 1), RowPad = (0, 3), ColumnPad = (3, 0);
    private readonly BasicConv2d _b1, _pool;
    private readonly BasicConv2d[] _b7, _b7dbl;

    public InceptionC(int inChannels, int channels7x7)
    {
        int c7 = channels7x7;
        _b1 = Register("branch1x1", new BasicConv2d(inChannels, 192, 1));
        _b7 = new[]
        {
            Register("branch7x7_1", new BasicConv2d(inChannels, c7, 1)),
            Register("branch7x7_2", new BasicConv2d(c7, c7, Row, 1, RowPad)),
            Register("branch7x7_3", new BasicConv2d(c7, 192, Column, 1, ColumnPad)),
        };
        _b7dbl = new[]
        {
            Register("branch7x7dbl_1", new BasicConv2d(inChannels, c7, 1)),
            Register("branch7x7dbl_2", new BasicConv2d(c7, c7, Column, 1, ColumnPad)),
            Register("branch7x7dbl_3", new BasicConv2d(c7, c7, Row, 1, RowPad)),
            Register("branch7x7dbl_4", new BasicConv2d(c7, c7, Column, 1, ColumnPad)),
            Register("branch7x7dbl_5", new BasicConv2d(c7, 192, Row, 1, RowPad)),
        };
        _pool = Register("branch_pool", new BasicConv2d(inChannels, 192, 1));
    }

    public Tensor Forward(Tensor x) => Tensor.Cat(new[]
    {
        _b1.Forward(x),
        _b7.Aggregate(x, (h, conv) => conv.Forward(h)),
        _b7dbl.Aggregate(x, (h, conv) => conv.Forward(h)),
        _pool.Forward(F.AvgPool2d(x, 3, 1, 1, countIncludePad: false)),
    }, 1);
}

/// <summary>InceptionD (17 → 8): 1×1→3×3 stride 2 | 1×1→1×7→7×1→3×3 stride 2 | max-pool 3 stride 2.</summary>
public sealed class InceptionD : Module
{
    private readonly BasicConv2d[] _b3, _b7x3;

    public InceptionD(int inChannels)
    {
        _b3 = new[]
        {
            Register("branch3x3_1", new BasicConv2d(inChannels, 192, 1)),
            Register("branch3x3_2", new BasicConv2d(192, 320, 3, stride: 2)),
        };
        _b7x3 = new[]
        {
            Register("branch7x7x3_1", new BasicConv2d(inChannels, 192, 1)),
            Register("branch7x7x3_2", new BasicConv2d(192, 192, (1, 7), 1, (0, 3))),
            Register("branch7x7x3_3", new BasicConv2d(192, 192, (7, 1), 1, (3, 0))),
            Register("branch7x7x3_4", new BasicConv2d(192, 192, 3, stride: 2)),
        };
    }

    public Tensor Forward(Tensor x) => Tensor.Cat(new[]
    {
        _b3.Aggregate(x, (h, conv) => conv.Forward(h)),
        _b7x3.Aggregate(x, (h, conv) => conv.Forward(h)),
        F.MaxPool2d(x, 3, 2),
    }, 1);
}

/// <summary>InceptionE (8×8, expanded 3×3): 1×1 | 1×1→(1×3 ‖ 3×1) | 1×1→3×3→(1×3 ‖ 3×1) | pool→1×1. The pool
/// is an average (count_include_pad=False) in Mixed_7b (E_1) and a max pool in Mixed_7c (E_2), as in the TF
/// graph.</summary>
public sealed class InceptionE : Module
{
    private readonly bool _maxPoolBranch;
    private readonly BasicConv2d _b1, _b3, _b3a, _b3b, _d1, _d2, _d3a, _d3b, _pool;

    public InceptionE(int inChannels, bool maxPoolBranch)
    {
        _maxPoolBranch = maxPoolBranch;
        _b1 = Register("branch1x1", new BasicConv2d(inChannels, 320, 1));
        _b3 = Register("branch3x3_1", new BasicConv2d(inChannels, 384, 1));
        _b3a = Register("branch3x3_2a", new BasicConv2d(384, 384, (1, 3), 1, (0, 1)));
        _b3b = Register("branch3x3_2b", new BasicConv2d(384, 384, (3, 1), 1, (1, 0)));
        _d1 = Register("branch3x3dbl_1", new BasicConv2d(inChannels, 448, 1));
        _d2 = Register("branch3x3dbl_2", new BasicConv2d(448, 384, 3, padding: 1));
        _d3a = Register("branch3x3dbl_3a", new BasicConv2d(384, 384, (1, 3), 1, (0, 1)));
        _d3b = Register("branch3x3dbl_3b", new BasicConv2d(384, 384, (3, 1), 1, (1, 0)));
        _pool = Register("branch_pool", new BasicConv2d(inChannels, 192, 1));
    }

    public Tensor Forward(Tensor x)
    {
        var b3 = _b3.Forward(x);
        var d = _d2.Forward(_d1.Forward(x));
        var pooled = _maxPoolBranch ? F.MaxPool2d(x, 3, 1, 1) : F.AvgPool2d(x, 3, 1, 1, countIncludePad: false);
        return Tensor.Cat(new[]
        {
            _b1.Forward(x),
            _b3a.Forward(b3), _b3b.Forward(b3),
            _d3a.Forward(d), _d3b.Forward(d),
            _pool.Forward(pooled),
        }, 1);
    }
}
