using MaskBit.Kernels;

namespace MaskBit.Autograd;

/// <summary>
/// Mixed precision as torch.autocast means it. Inside <see cref="Enable"/>(BFloat16 or Float16) the ops that
/// gain from 16 bits — matmul/linear, conv2d and attention — round their operands to that type and accumulate in
/// float32 (the kernels compute in float32 registers), and keep the operands their backward needs as 16-bit copies
/// (half the memory of float32 ones); their backward runs in the same precision, gradients of the output rounded
/// to 16 bits as torch's 16-bit backward kernels see them. Every other op (norms, softmax, losses, the LFQ entropy,
/// the optimizer) runs in float32 as before, and parameters stay float32 (the master weights).
/// </summary>
public static class Autocast
{
    [ThreadStatic] private static DType? _dtype;

    /// <summary>The 16-bit type of the open autocast region on this thread, or null (float32 throughout).</summary>
    public static DType? DType => _dtype;

    /// <summary>Runs the 16-bit ops in <paramref name="dtype"/> (BFloat16 or Float16; null turns autocast off) until the
    /// returned scope is disposed. Scopes nest.</summary>
    public static IDisposable Enable(DType? dtype)
    {
        if (dtype is { } t && !t.Is16Bit()) throw new ArgumentException($"autocast needs bfloat16 or float16, got {t}");
        var previous = _dtype;
        _dtype = dtype;
        return new Scope(previous);
    }

    private sealed class Scope(DType? previous) : IDisposable
    {
        private bool _done;
        public void Dispose() { if (!_done) { _done = true; _dtype = previous; } }
    }

    /// <summary>The autocast type a precision setting names: no|fp32|float32 → null, bf16|bfloat16, fp16|float16
    /// (the reference's <c>training.mixed_precision</c> values and torch's dtype names). Throws a one-line error naming
    /// <paramref name="setting"/> otherwise.</summary>
    public static DType? Parse(string? precision, string setting) => precision?.Trim().ToLowerInvariant() switch
    {
        null or "" or "no" or "fp32" or "float32" => null,
        "bf16" or "bfloat16" => Kernels.DType.BFloat16,
        "fp16" or "float16" => Kernels.DType.Float16,
        _ => throw new ArgumentException($"{setting}: '{precision}' is not a precision (expected no, bf16 or fp16)"),
    };

    /// <summary>The name <see cref="Parse"/> reads back: no, bf16 or fp16.</summary>
    public static string Name(DType? dtype) => dtype switch
    {
        null => "no",
        Kernels.DType.BFloat16 => "bf16",
        Kernels.DType.Float16 => "fp16",
        _ => throw new ArgumentException($"{dtype} is not an autocast type"),
    };

    /// <summary>What a 16-bit op uses and keeps of an operand: its copy in <paramref name="dtype"/> when that is a
    /// 16-bit type and the operand is float32, else the operand itself (already 16-bit, or autocast off).</summary>
    internal static Tensor Lower(Tensor x, DType? dtype) =>
        dtype is { } t && x.DType == Kernels.DType.Float32 ? x.To(t) : x;
}

/// <summary>The operands of one kernel call, as temporaries released when the call is done (a scope would keep them to
/// the end of the step): 16-bit copies for the kernels that read 16-bit operands (GEMM, conv), float32 views for
/// those that read float32 only (attention), where a 16-bit tensor costs one widening pass.</summary>
internal sealed class KernelOperands : IDisposable
{
    private readonly List<Tensor> _temporaries = new();

    public Buf Of(Tensor x)
    {
        if (x.DType == DType.Float32) return x.Buf;
        var wide = x.To(DType.Float32);
        _temporaries.Add(wide);
        return wide.Buf;
    }

    /// <summary><paramref name="x"/> in <paramref name="dtype"/> (when that is a 16-bit type and x is float32): how a
    /// 16-bit op's backward reads the incoming gradient.</summary>
    public Buf Lowered(Tensor x, DType? dtype)
    {
        var lowered = Autocast.Lower(x, dtype);
        if (!ReferenceEquals(lowered, x)) _temporaries.Add(lowered);
        return lowered.Buf;
    }

    /// <summary><see cref="Lowered"/> as a float32 buffer, for the kernels that read float32 only.</summary>
    public Buf Rounded(Tensor x, DType? dtype)
    {
        var lowered = Autocast.Lower(x, dtype);
        if (!ReferenceEquals(lowered, x)) _temporaries.Add(lowered);
        return Of(lowered);
    }

    public void Dispose()
    {
        foreach (var t in _temporaries) TensorScope.Release(t);
        _temporaries.Clear();
    }
}
