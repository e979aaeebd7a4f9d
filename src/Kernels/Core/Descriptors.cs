namespace MaskBit.Kernels;

/// <summary>Row-major batched GEMM: C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b], with op(A) M×K and op(B) K×N.
/// A is stored M×K (K×M when TransA), B is stored K×N (N×K when TransB), C is M×N; all contiguous inside a batch
/// item. A batch stride of 0 broadcasts that operand over the batch.</summary>
public readonly record struct GemmDesc(int M, int N, int K, bool TransA = false, bool TransB = false,
    int Batch = 1, long StrideA = 0, long StrideB = 0, long StrideC = 0)
{
    public double Flops => 2.0 * M * N * K * Batch;
}

/// <summary>NCHW 2-D convolution with explicit (possibly asymmetric) zero padding. PadTop/PadLeft are given;
/// the bottom/right padding follows from the output size. Weight layout (Cout, Cin/Groups, KH, KW).</summary>
public readonly record struct Conv2dDesc(int N, int Cin, int H, int W, int Cout, int KH, int KW,
    int StrideH, int StrideW, int PadTop, int PadLeft, int OH, int OW, int Groups = 1)
{
    public int CinPerGroup => Cin / Groups;
    public int CoutPerGroup => Cout / Groups;
    public double Flops => 2.0 * N * Cout * OH * OW * CinPerGroup * KH * KW;

    /// <summary>Standard output size for given padding on both sides.</summary>
    public static int OutSize(int input, int kernel, int stride, int padBefore, int padAfter)
        => (input + padBefore + padAfter - kernel) / stride + 1;
}

/// <summary>GroupNorm over (N, C, HW) with G groups; optionally followed by SiLU in the same pass.</summary>
public readonly record struct GroupNormDesc(int N, int C, int HW, int Groups, float Eps, bool FuseSilu = false);

public enum UnaryOp
{
    Neg, Exp, Log, Sqrt, Rsqrt, Abs, Sign, Square, Relu, Sigmoid, Tanh, Silu, Gelu, LeakyRelu, Softplus,
    /// <summary>y = alpha·x</summary>
    Scale,
    /// <summary>y = x + alpha</summary>
    AddScalar,
    /// <summary>y = x^alpha</summary>
    PowScalar,
    /// <summary>y = max(x, alpha); the gradient passes where x ≥ alpha (as torch.clamp).</summary>
    ClampMin,
    /// <summary>y = min(x, alpha); the gradient passes where x ≤ alpha.</summary>
    ClampMax,
}

public enum BinaryOp { Add, Sub, Mul, Div, Max, Min, Greater, GreaterEqual, Equal }

/// <summary>Per-step scalars of AdamW, computed on the host in float64 as PyTorch does and rounded to float32:
/// p ← p·Decay; m ← m·Beta1 + OneMinusBeta1·g; v ← v·Beta2 + OneMinusBeta2·g·g;
/// p ← p + (−StepSize·m) / (sqrt(v)/Bc2Sqrt + Eps).</summary>
public readonly record struct AdamWScalars(float Decay, float Beta1, float OneMinusBeta1, float Beta2, float OneMinusBeta2,
    float StepSize, float Bc2Sqrt, float Eps);
