namespace MaskBit.Models.Metrics;

/// <summary>A batch of images, NCHW float32 in [0, 1] (row-major, contiguous).</summary>
public readonly record struct ImageBatch(float[] Data, int N, int C, int H, int W)
{
    public int ImageSize => C * H * W;
    public ReadOnlySpan<float> Image(int i) => Data.AsSpan(i * ImageSize, ImageSize);

    public static ImageBatch FromTensor(Autograd.Tensor images) => FromTensor(images, buffer: null);

    /// <summary>The images of a float32 tensor, downloaded into <paramref name="buffer"/> when it has their length
    /// (else into a new array): a stream of batches reuses one buffer instead of leaving a large array behind per
    /// batch. The batch is valid until the buffer is reused.</summary>
    public static ImageBatch FromTensor(Autograd.Tensor images, float[]? buffer)
    {
        if (images.Rank != 4) throw new ArgumentException($"expected NCHW images, got {images}");
        if (images.DType != Kernels.DType.Float32 || buffer?.Length != images.Numel) buffer = images.ToArray();
        else images.Device.Download(images.Buf, buffer);
        return new ImageBatch(buffer, images.Shape[0], images.Shape[1], images.Shape[2], images.Shape[3]);
    }

    /// <summary>`(img·255).to(uint8)`: the product in float32, then truncation (not rounding). Values outside
    /// [0, 1] are clamped (the reference's cast is undefined there).</summary>
    public byte[] ToUInt8()
    {
        var bytes = new byte[Data.Length];
        ToUInt8(bytes);
        return bytes;
    }

    /// <summary><see cref="ToUInt8()"/> into <paramref name="destination"/> (<see cref="Data"/>'s length).</summary>
    public void ToUInt8(Span<byte> destination)
    {
        if (destination.Length != Data.Length) throw new ArgumentException($"{destination.Length} bytes for {Data.Length} values", nameof(destination));
        for (int i = 0; i < destination.Length; i++) destination[i] = (byte)Math.Clamp(MathF.Truncate(Data[i] * 255f), 0f, 255f);
    }
}

/// <summary>Per-image reconstruction metrics of the reference evaluator, in float64 (data range 1).</summary>
public static class ImageQuality
{
    public static double MeanAbsoluteError(ReadOnlySpan<float> real, ReadOnlySpan<float> fake)
    {
        double sum = 0;
        for (int i = 0; i < real.Length; i++) sum += Math.Abs((double)fake[i] - real[i]);
        return sum / real.Length;
    }

    public static double MeanSquaredError(ReadOnlySpan<float> real, ReadOnlySpan<float> fake)
    {
        double sum = 0;
        for (int i = 0; i < real.Length; i++)
        {
            double d = (double)fake[i] - real[i];
            sum += d * d;
        }
        return sum / real.Length;
    }

    /// <summary>10·log10(1/(mse + 1e-10)) of one image.</summary>
    public static double Psnr(ReadOnlySpan<float> real, ReadOnlySpan<float> fake) =>
        10 * Math.Log10(1 / (MeanSquaredError(real, fake) + 1e-10));
}

/// <summary>SSIM as the reference computes it: an 11×11 Gaussian window (σ 1.5) applied depthwise to both images
/// reflect-padded by 5, C1 = 0.01², C2 = 0.03², the SSIM map averaged over (C, H, W) of each image.</summary>
public sealed class Ssim
{
    private const int KernelSize = 11, Pad = KernelSize / 2;
    private const double Sigma = 1.5, C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;

    // The 2-D window is the outer product of this 1-D one, so it is applied as two 1-D passes.
    private static readonly double[] Taps = GaussianTaps();

    private static double[] GaussianTaps()
    {
        var taps = new double[KernelSize];
        double sum = 0;
        for (int i = 0; i < KernelSize; i++) sum += taps[i] = Math.Exp(-0.5 * Math.Pow((i - Pad) / Sigma, 2));
        for (int i = 0; i < KernelSize; i++) taps[i] /= sum;
        return taps;
    }

    private const int Moments = 5; // x, y, x², y², x·y
    private double[] _padded = [], _rows = [];

    /// <summary>Mean SSIM of one CHW image pair (x = fake, y = real, the reference's pred and target).</summary>
    public double Compute(ReadOnlySpan<float> real, ReadOnlySpan<float> fake, int channels, int height, int width)
    {
        if (height <= Pad || width <= Pad) throw new ArgumentException($"SSIM's reflect padding of {Pad} needs images larger than {Pad}×{Pad}, got {height}×{width}");
        int ph = height + 2 * Pad, pw = width + 2 * Pad, plane = height * width;
        if (_padded.Length < Moments * ph * pw) _padded = new double[Moments * ph * pw];
        if (_rows.Length < Moments * ph * width) _rows = new double[Moments * ph * width];
        Span<double> mean = stackalloc double[Moments];
        double total = 0;
        for (int ch = 0; ch < channels; ch++)
        {
            var x = fake.Slice(ch * plane, plane);
            var y = real.Slice(ch * plane, plane);
            for (int r = 0; r < ph; r++)
            {
                int sr = Reflect(r - Pad, height);
                for (int col = 0; col < pw; col++)
                {
                    int src = sr * width + Reflect(col - Pad, width), dst = r * pw + col;
                    double xv = x[src], yv = y[src];
                    _padded[dst] = xv;
                    _padded[ph * pw + dst] = yv;
                    _padded[2 * ph * pw + dst] = xv * xv;
                    _padded[3 * ph * pw + dst] = yv * yv;
                    _padded[4 * ph * pw + dst] = xv * yv;
                }
            }
            // Horizontal pass: (ph, pw) → (ph, width) for every moment.
            for (int m = 0; m < Moments; m++)
                for (int r = 0; r < ph; r++)
                    for (int col = 0; col < width; col++)
                    {
                        double acc = 0;
                        int src = m * ph * pw + r * pw + col;
                        for (int k = 0; k < KernelSize; k++) acc += Taps[k] * _padded[src + k];
                        _rows[m * ph * width + r * width + col] = acc;
                    }
            // Vertical pass and the SSIM map.
            for (int r = 0; r < height; r++)
                for (int col = 0; col < width; col++)
                {
                    for (int m = 0; m < Moments; m++)
                    {
                        double acc = 0;
                        int src = m * ph * width + r * width + col;
                        for (int k = 0; k < KernelSize; k++) acc += Taps[k] * _rows[src + k * width];
                        mean[m] = acc;
                    }
                    double muX2 = mean[0] * mean[0], muY2 = mean[1] * mean[1], muXY = mean[0] * mean[1];
                    double varX = mean[2] - muX2, varY = mean[3] - muY2, covXY = mean[4] - muXY;
                    total += (2 * muXY + C1) * (2 * covXY + C2) / ((muX2 + muY2 + C1) * (varX + varY + C2));
                }
        }
        return total / (channels * plane);
    }

    /// <summary>Index of `reflect` padding (edge not repeated), for offsets less than n away from [0, n).</summary>
    private static int Reflect(int i, int n) => i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
}
