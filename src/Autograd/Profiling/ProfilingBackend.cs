using System.Diagnostics;
using MaskBit.Kernels;

namespace MaskBit.Autograd.Profiling;

/// <summary>Storage of a <see cref="ProfilingBackend"/>: the inner backend's storage, reporting the decorator as its
/// backend so that ops on tensors made from it go through the decorator.</summary>
internal sealed class ProfiledStorage(Storage inner, ProfilingBackend backend) : Storage
{
    public Storage Inner { get; } = inner;
    public override IBackend Backend => backend;
    public override DType DType => Inner.DType;
    public override long Length => Inner.Length;
    public override void Dispose() => Inner.Dispose();
}

/// <summary>
/// A decorator over any <see cref="IBackend"/> that times every call (waiting for the device after each, so
/// asynchronous devices report true per-kernel times) and reports it to a <see cref="Profiler"/> with its shapes
/// and, for GEMM, convolution and attention, its FLOPs. Results are those of the inner backend: buffers are
/// unwrapped and passed through unchanged.
/// Written out by hand rather than with DispatchProxy: the memory methods take spans, which cannot be boxed into
/// a proxy's object[] arguments, and every kernel's FLOP count needs its own descriptor anyway.
/// </summary>
public sealed class ProfilingBackend(IBackend inner, Profiler profiler) : IBackend, IModelOps
{
    public IBackend Inner { get; } = inner;
    public string Name => $"{Inner.Name} (profiled)";
    /// <summary>The model ops are profiled here too, forwarded to the inner backend's.</summary>
    public IModelOps ModelOps => this;

    private static Buf U(Buf b) => b.Storage is ProfiledStorage p ? new Buf(p.Inner, b.Offset) : b;
    private static Buf? U(Buf? b) => b is { } x ? U(x) : null;

    private Span K(string name, string args, double flops = 0) => new(this, name, args, flops, Stopwatch.GetTimestamp());

    private readonly struct Span(ProfilingBackend owner, string name, string args, double flops, long start) : IDisposable
    {
        public void Dispose()
        {
            owner.Inner.Synchronize();
            owner._profiler.AddKernel(name, start, Stopwatch.GetTimestamp(), args, flops);
        }
    }

    private readonly Profiler _profiler = profiler;

    private static string S(int[] a) => "[" + string.Join(",", a) + "]";

    // ---- memory ----------------------------------------------------------------------------------------------
    public Storage Allocate(long length, DType dtype = DType.Float32, bool zero = true)
    {
        using (K("Allocate", $"n={length} {dtype}{(zero ? " zeroed" : "")}")) return new ProfiledStorage(Inner.Allocate(length, dtype, zero), this);
    }
    public void Upload(ReadOnlySpan<float> src, Buf dst) { using (K("Upload", $"n={src.Length} f32")) Inner.Upload(src, U(dst)); }
    public void Upload(ReadOnlySpan<int> src, Buf dst) { using (K("Upload", $"n={src.Length} i32")) Inner.Upload(src, U(dst)); }
    public void Download(Buf src, Span<float> dst) { using (K("Download", $"n={dst.Length} f32")) Inner.Download(U(src), dst); }
    public void Download(Buf src, Span<int> dst) { using (K("Download", $"n={dst.Length} i32")) Inner.Download(U(src), dst); }
    public void Upload(ReadOnlySpan<ushort> src, Buf dst) { using (K("Upload", $"n={src.Length} 16-bit")) Inner.Upload(src, U(dst)); }
    public void Download(Buf src, Span<ushort> dst) { using (K("Download", $"n={dst.Length} 16-bit")) Inner.Download(U(src), dst); }
    public void Synchronize() => Inner.Synchronize();

    // ---- element-wise ----------------------------------------------------------------------------------------
    public void Fill(Buf y, long n, float value) { using (K("Fill", $"n={n}")) Inner.Fill(U(y), n, value); }
    public void Dropout(Buf x, Buf y, long n, DropoutMask mask) { using (K("Dropout", $"n={n}")) Inner.Dropout(U(x), U(y), n, mask); }
    public void Copy(Buf x, Buf y, long n) { using (K("Copy", $"n={n}")) Inner.Copy(U(x), U(y), n); }
    public void Convert(Buf x, Buf y, long n)
    {
        using (K("Convert", $"n={n} {x.Storage.DType.TorchName()}→{y.Storage.DType.TorchName()}")) Inner.Convert(U(x), U(y), n);
    }
    public void Unary(UnaryOp op, Buf x, Buf y, long n, float alpha = 0f)
    {
        using (K($"Unary.{op}", $"n={n}")) Inner.Unary(op, U(x), U(y), n, alpha);
    }
    public void UnaryBackward(UnaryOp op, Buf x, Buf y, Buf dy, Buf dx, long n, float alpha = 0f, bool accumulate = false)
    {
        using (K($"UnaryBackward.{op}", $"n={n}")) Inner.UnaryBackward(op, U(x), U(y), U(dy), U(dx), n, alpha, accumulate);
    }
    public void Binary(BinaryOp op, Buf a, int[] aStrides, Buf b, int[] bStrides, Buf y, int[] shape)
    {
        using (K($"Binary.{op}", $"shape={S(shape)} a strides={S(aStrides)} b strides={S(bStrides)}")) Inner.Binary(op, U(a), aStrides, U(b), bStrides, U(y), shape);
    }
    public void Where(Buf cond, Buf a, Buf b, Buf y, long n) { using (K("Where", $"n={n}")) Inner.Where(U(cond), U(a), U(b), U(y), n); }
    public void CopyStrided(Buf x, int[] xStrides, Buf y, int[] yStrides, int[] shape, bool accumulate = false)
    {
        using (K("CopyStrided", $"shape={S(shape)} x strides={S(xStrides)} y strides={S(yStrides)}")) Inner.CopyStrided(U(x), xStrides, U(y), yStrides, shape, accumulate);
    }
    public void ReduceSum(Buf x, Buf y, int outer, int mid, int inner, float scale = 1f, bool accumulate = false)
    {
        using (K("ReduceSum", $"(outer, mid, inner)=({outer},{mid},{inner})")) Inner.ReduceSum(U(x), U(y), outer, mid, inner, scale, accumulate);
    }
    public void ReduceMax(Buf x, Buf y, int outer, int mid, int inner)
    {
        using (K("ReduceMax", $"(outer, mid, inner)=({outer},{mid},{inner})")) Inner.ReduceMax(U(x), U(y), outer, mid, inner);
    }

    // ---- linear algebra and convolution ------------------------------------------------------------------------
    public void Gemm(in GemmDesc d, Buf a, Buf b, Buf c, float alpha = 1f, float beta = 0f)
    {
        using (K("Gemm", $"{d.Batch}×[{d.M}×{d.K}{(d.TransA ? "ᵀ" : "")}]·[{d.K}×{d.N}{(d.TransB ? "ᵀ" : "")}]", d.Flops)) Inner.Gemm(d, U(a), U(b), U(c), alpha, beta);
    }
    private static string Conv(in Conv2dDesc d) =>
        $"x[{d.N},{d.Cin},{d.H},{d.W}] w[{d.Cout},{d.CinPerGroup},{d.KH},{d.KW}] → [{d.N},{d.Cout},{d.OH},{d.OW}]";
    public void Conv2dForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y)
    {
        using (K("Conv2dForward", Conv(d), d.Flops)) Inner.Conv2dForward(d, U(x), U(w), U(bias), U(y));
    }
    public void Conv2dBackwardInput(in Conv2dDesc d, Buf dy, Buf w, Buf dx)
    {
        using (K("Conv2dBackwardInput", Conv(d), d.Flops)) Inner.Conv2dBackwardInput(d, U(dy), U(w), U(dx));
    }
    public void Conv2dBackwardWeight(in Conv2dDesc d, Buf x, Buf dy, Buf dw, Buf? dbias)
    {
        using (K("Conv2dBackwardWeight", Conv(d), d.Flops)) Inner.Conv2dBackwardWeight(d, U(x), U(dy), U(dw), U(dbias));
    }

    // ---- resampling --------------------------------------------------------------------------------------------
    public void AvgPool2x2Forward(int planes, int h, int w, Buf x, Buf y)
    {
        using (K("AvgPool2x2Forward", $"[{planes},{h},{w}]")) Inner.AvgPool2x2Forward(planes, h, w, U(x), U(y));
    }
    public void AvgPool2x2Backward(int planes, int h, int w, Buf dy, Buf dx)
    {
        using (K("AvgPool2x2Backward", $"[{planes},{h},{w}]")) Inner.AvgPool2x2Backward(planes, h, w, U(dy), U(dx));
    }
    public void AdaptiveMaxPoolForward(int planes, int h, int w, int oh, int ow, Buf x, Buf y, Buf argmax)
    {
        using (K("AdaptiveMaxPoolForward", $"[{planes},{h},{w}] → [{oh},{ow}]")) Inner.AdaptiveMaxPoolForward(planes, h, w, oh, ow, U(x), U(y), U(argmax));
    }
    public void AdaptiveMaxPoolBackward(int planes, int h, int w, int oh, int ow, Buf dy, Buf argmax, Buf dx)
    {
        using (K("AdaptiveMaxPoolBackward", $"[{planes},{h},{w}] → [{oh},{ow}]")) Inner.AdaptiveMaxPoolBackward(planes, h, w, oh, ow, U(dy), U(argmax), U(dx));
    }
    public void MaxPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf x, Buf y, Buf argmax)
    {
        using (K("MaxPool2dForward", $"[{planes},{h},{w}] k{kernel} s{stride} p{padding}"))
            Inner.MaxPool2dForward(planes, h, w, kernel, stride, padding, oh, ow, U(x), U(y), U(argmax));
    }
    public void MaxPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf dy, Buf argmax, Buf dx)
    {
        using (K("MaxPool2dBackward", $"[{planes},{h},{w}] k{kernel} s{stride} p{padding} → [{oh},{ow}]"))
            Inner.MaxPool2dBackward(planes, h, w, kernel, stride, padding, oh, ow, U(dy), U(argmax), U(dx));
    }
    public void AvgPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, bool countIncludePad, Buf x, Buf y)
    {
        using (K("AvgPool2dForward", $"[{planes},{h},{w}] k{kernel} s{stride} p{padding}"))
            Inner.AvgPool2dForward(planes, h, w, kernel, stride, padding, oh, ow, countIncludePad, U(x), U(y));
    }
    public void AvgPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, bool countIncludePad, Buf dy, Buf dx)
    {
        using (K("AvgPool2dBackward", $"[{planes},{h},{w}] k{kernel} s{stride} p{padding}"))
            Inner.AvgPool2dBackward(planes, h, w, kernel, stride, padding, oh, ow, countIncludePad, U(dy), U(dx));
    }
    public void UpsampleNearest2xForward(int planes, int h, int w, Buf x, Buf y)
    {
        using (K("UpsampleNearest2xForward", $"[{planes},{h},{w}]")) Inner.UpsampleNearest2xForward(planes, h, w, U(x), U(y));
    }
    public void UpsampleNearest2xBackward(int planes, int h, int w, Buf dy, Buf dx)
    {
        using (K("UpsampleNearest2xBackward", $"[{planes},{h},{w}]")) Inner.UpsampleNearest2xBackward(planes, h, w, U(dy), U(dx));
    }

    // ---- normalisation -----------------------------------------------------------------------------------------
    private static string Gn(in GroupNormDesc d) => $"[{d.N},{d.C},{d.HW}] groups={d.Groups}{(d.FuseSilu ? " +silu" : "")}";
    public void GroupNormForward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd)
    {
        using (K("GroupNormForward", Gn(d))) Inner.GroupNormForward(d, U(x), U(gamma), U(beta), U(y), U(mean), U(rstd));
    }
    public void GroupNormBackward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf mean, Buf rstd, Buf dy, Buf dx, Buf dgamma, Buf dbeta)
    {
        using (K("GroupNormBackward", Gn(d))) Inner.GroupNormBackward(d, U(x), U(gamma), U(beta), U(mean), U(rstd), U(dy), U(dx), U(dgamma), U(dbeta));
    }
    public void LayerNormForward(int rows, int cols, float eps, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd)
    {
        using (K("LayerNormForward", $"[{rows},{cols}]")) Inner.LayerNormForward(rows, cols, eps, U(x), U(gamma), U(beta), U(y), U(mean), U(rstd));
    }
    public void LayerNormBackward(int rows, int cols, Buf x, Buf gamma, Buf mean, Buf rstd, Buf dy, Buf dx, Buf dgamma, Buf dbeta)
    {
        using (K("LayerNormBackward", $"[{rows},{cols}]")) Inner.LayerNormBackward(rows, cols, U(x), U(gamma), U(mean), U(rstd), U(dy), U(dx), U(dgamma), U(dbeta));
    }

    // ---- softmax family ------------------------------------------------------------------------------------------
    public void SoftmaxForward(int rows, int cols, Buf x, Buf y, bool log)
    {
        using (K(log ? "LogSoftmaxForward" : "SoftmaxForward", $"[{rows},{cols}]")) Inner.SoftmaxForward(rows, cols, U(x), U(y), log);
    }
    public void SoftmaxBackward(int rows, int cols, Buf y, Buf dy, Buf dx, bool log)
    {
        using (K(log ? "LogSoftmaxBackward" : "SoftmaxBackward", $"[{rows},{cols}]")) Inner.SoftmaxBackward(rows, cols, U(y), U(dy), U(dx), log);
    }
    public void CrossEntropyForward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf loss, Buf lse)
    {
        using (K("CrossEntropyForward", $"[{rows},{cols}]")) Inner.CrossEntropyForward(rows, cols, U(logits), U(targets), labelSmoothing, U(loss), U(lse));
    }
    public void CrossEntropyBackward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf lse, Buf dloss, Buf dlogits)
    {
        using (K("CrossEntropyBackward", $"[{rows},{cols}]"))
            Inner.CrossEntropyBackward(rows, cols, U(logits), U(targets), labelSmoothing, U(lse), U(dloss), U(dlogits));
    }

    // ---- embedding -----------------------------------------------------------------------------------------------
    public void EmbeddingForward(int count, int dim, int rows, Buf weight, Buf indices, Buf y)
    {
        using (K("EmbeddingForward", $"{count}×{dim} of {rows}")) Inner.EmbeddingForward(count, dim, rows, U(weight), U(indices), U(y));
    }
    public void EmbeddingBackward(int count, int dim, int rows, Buf dy, Buf indices, Buf dweight)
    {
        using (K("EmbeddingBackward", $"{count}×{dim} of {rows}")) Inner.EmbeddingBackward(count, dim, rows, U(dy), U(indices), U(dweight));
    }
    public void TokenBits(int count, int bits, int maskToken, Buf tokens, Buf y)
    {
        using (K("TokenBits", $"{count}×{bits}")) Inner.ModelOps.TokenBits(count, bits, maskToken, U(tokens), U(y));
    }

    // ---- attention: the forward's two matmuls (q·kᵀ and p·v) count 4·BH·S²·D; the backward recomputes p and
    // takes four more (dv, dp, dq, dk), 2.5× the forward ---------------------------------------------------------
    private static double AttentionFlops(int bh, int seq, int headDim) => 4.0 * bh * seq * seq * headDim;
    public void AttentionForward(int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed, Buf q, Buf k, Buf v, Buf output, Buf lse)
    {
        using (K("AttentionForward", $"q,k,v[{batchHeads},{seq},{headDim}]", AttentionFlops(batchHeads, seq, headDim)))
            Inner.AttentionForward(batchHeads, seq, headDim, scale, dropout, seed, U(q), U(k), U(v), U(output), U(lse));
    }
    public void AttentionBackward(int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed, Buf q, Buf k, Buf v, Buf output, Buf lse,
        Buf dOutput, Buf dq, Buf dk, Buf dv)
    {
        using (K("AttentionBackward", $"q,k,v[{batchHeads},{seq},{headDim}]", 2.5 * AttentionFlops(batchHeads, seq, headDim)))
            Inner.AttentionBackward(batchHeads, seq, headDim, scale, dropout, seed, U(q), U(k), U(v), U(output), U(lse), U(dOutput), U(dq), U(dk), U(dv));
    }

    // ---- optimizer updates and lookup-free quantization ---------------------------------------------------------
    public void SumOfSquares(Buf x, long n, Buf y, bool accumulate)
    {
        using (K("SumOfSquares", $"n={n}")) Inner.SumOfSquares(U(x), n, U(y), accumulate);
    }

    public void AdamWUpdate(Buf param, Buf grad, Buf expAvg, Buf expAvgSq, long n, in AdamWScalars s)
    {
        using (K("AdamWUpdate", $"n={n}")) Inner.AdamWUpdate(U(param), U(grad), U(expAvg), U(expAvgSq), n, s);
    }
    public void EmaUpdate(Buf shadow, Buf param, long n, float oneMinusDecay)
    {
        using (K("EmaUpdate", $"n={n}")) Inner.EmaUpdate(U(shadow), U(param), n, oneMinusDecay);
    }
    public void LfqQuantize(int batch, int bits, int hw, Buf z, Buf zq, Buf indices, Buf commitmentSum)
    {
        using (K("LfqQuantize", $"z[{batch},{bits},{hw}]")) Inner.ModelOps.LfqQuantize(batch, bits, hw, U(z), U(zq), U(indices), U(commitmentSum));
    }
    public void LfqEntropyForward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf result)
    {
        using (K("LfqEntropyForward", $"z[{batch},{bits},{hw}] codes 2^{bits}", 2.0 * batch * hw * bits * (1L << bits)))
            Inner.ModelOps.LfqEntropyForward(batch, bits, hw, invTemperature, U(z), U(avgProbs), U(result));
    }
    public void LfqEntropyBackward(int batch, int bits, int hw, float invTemperature, Buf z, Buf avgProbs, Buf dResult, Buf dz)
    {
        using (K("LfqEntropyBackward", $"z[{batch},{bits},{hw}] codes 2^{bits}", 4.0 * batch * hw * bits * (1L << bits)))
            Inner.ModelOps.LfqEntropyBackward(batch, bits, hw, invTemperature, U(z), U(avgProbs), U(dResult), U(dz));
    }

    public void BitsToIndices(int count, int bits, Buf values, Buf indices)
    {
        using (K("BitsToIndices", $"{count}×{bits}")) Inner.ModelOps.BitsToIndices(count, bits, U(values), U(indices));
    }
    public void SplitTokenGroups(int count, int splits, int shift, Buf tokens, Buf groups)
    {
        using (K("SplitTokenGroups", $"{count}×{splits}")) Inner.ModelOps.SplitTokenGroups(count, splits, shift, U(tokens), U(groups));
    }
    public void CombineTokenGroups(int count, int splits, int shift, Buf groups, Buf tokens)
    {
        using (K("CombineTokenGroups", $"{count}×{splits}")) Inner.ModelOps.CombineTokenGroups(count, splits, shift, U(groups), U(tokens));
    }

    // ---- sampling --------------------------------------------------------------------------------------------
    public void RandomDraws(long count, ulong seed, long position, RandomDrawKind kind, Buf y)
    {
        using (K("RandomDraws", $"{kind}[{count}]")) Inner.ModelOps.RandomDraws(count, seed, position, kind, U(y));
    }

    public void MaskTokenGroups(int count, int perSample, int maskToken, ulong seed, long position, Buf groups, Buf thresholds, Buf masked, Buf mask)
    {
        using (K("MaskTokenGroups", $"{count}")) Inner.ModelOps.MaskTokenGroups(count, perSample, maskToken, seed, position, U(groups), U(thresholds), U(masked), U(mask));
    }
    public void SampleMaskedGroups(int groups, int classes, float noiseScale, float fade, Buf probabilities, Buf uniform, Buf gumbel,
        Buf mask, Buf tokens, Buf sampled, Buf predicted, Buf confidence)
    {
        using (K("SampleMaskedGroups", $"p[{groups},{classes}]"))
            Inner.ModelOps.SampleMaskedGroups(groups, classes, noiseScale, fade, U(probabilities), U(uniform), U(gumbel), U(mask), U(tokens),
                U(sampled), U(predicted), U(confidence));
    }
    public void RemaskLeastConfident(int batch, int perSample, float maskLen, int maskToken, Buf confidence, Buf predicted,
        Buf mask, Buf newMask, Buf tokens, Buf threshold, Buf counts)
    {
        using (K("RemaskLeastConfident", $"confidence[{batch},{perSample}]"))
            Inner.ModelOps.RemaskLeastConfident(batch, perSample, maskLen, maskToken, U(confidence), U(predicted), U(mask), U(newMask),
                U(tokens), U(threshold), U(counts));
    }

    // ---- classification statistics -----------------------------------------------------------------------------
    public void PredictionTally(int rows, int cols, Buf scores, Buf targets, Buf mask, Buf loss, Buf tally)
    {
        using (K("PredictionTally", $"scores[{rows},{cols}]")) Inner.ModelOps.PredictionTally(rows, cols, U(scores), U(targets), U(mask), U(loss), U(tally));
    }

    public void ArgExtremeRows(int rows, int cols, bool min, Buf scores, Buf indices)
    {
        using (K(min ? "ArgMinRows" : "ArgMaxRows", $"scores[{rows},{cols}]")) Inner.ModelOps.ArgExtremeRows(rows, cols, min, U(scores), U(indices));
    }

    /// <summary>The inner backend is not owned (it is usually a process-wide device).</summary>
    public void Dispose() { }
}
