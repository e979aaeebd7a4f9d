namespace MaskBit.Kernels;

/// <summary>
/// One compute device. Every op of the engine is a method here, taking buffers (<see cref="Buf"/>) and sizes;
/// kernels never allocate (scratch comes from the backend's pool) and never hand out raw host arrays, so the
/// CPU and the ILGPU implementation share one interface. Outputs are overwritten unless a parameter says
/// "accumulate". Shapes are validated by the autograd layer; kernels trust them.
/// </summary>
public interface IBackend : IDisposable
{
    string Name { get; }

    // ---- memory -------------------------------------------------------------------------------------------
    Storage Allocate(long length, DType dtype = DType.Float32, bool zero = true);
    void Upload(ReadOnlySpan<float> src, Buf dst);
    void Upload(ReadOnlySpan<int> src, Buf dst);
    void Download(Buf src, Span<float> dst);
    void Download(Buf src, Span<int> dst);
    /// <summary>The raw bits of a bfloat16/float16 storage (<see cref="HalfBits"/> converts them).</summary>
    void Upload(ReadOnlySpan<ushort> src, Buf dst);
    void Download(Buf src, Span<ushort> dst);
    /// <summary>Waits for queued work (no-op on the CPU).</summary>
    void Synchronize();

    // ---- element-wise (Elementwise/) ---------------------------------------------------------------------
    void Fill(Buf y, long n, float value);
    /// <summary>y = x for two storages of one dtype (any dtype).</summary>
    void Copy(Buf x, Buf y, long n);
    /// <summary>y = x converted to y's dtype: float32 → bfloat16/float16 rounds to nearest even (overflow gives ±∞,
    /// as torch's <c>.to()</c>), 16-bit → float32 is exact, bfloat16 ↔ float16 goes through float32. The dtypes are
    /// those of the two storages; equal dtypes copy.</summary>
    void Convert(Buf x, Buf y, long n);
    void Unary(UnaryOp op, Buf x, Buf y, long n, float alpha = 0f);
    /// <summary>dx (+)= dy · f'(x) for the unary op (y is f(x) where the derivative is cheaper from it).</summary>
    void UnaryBackward(UnaryOp op, Buf x, Buf y, Buf dy, Buf dx, long n, float alpha = 0f, bool accumulate = false);
    /// <summary>y = a ∘ b element-wise over <paramref name="shape"/> with per-operand element strides
    /// (stride 0 broadcasts). y is contiguous.</summary>
    void Binary(BinaryOp op, Buf a, int[] aStrides, Buf b, int[] bStrides, Buf y, int[] shape);
    /// <summary>y = x · factor(i) over n contiguous elements, the factors of <paramref name="mask"/>'s
    /// <see cref="DropoutMask.FlatKey"/> row (0 or 1/(1 − p)): dropout's forward, and its backward on the gradient
    /// with the same mask. n must fit in an int.</summary>
    void Dropout(Buf x, Buf y, long n, DropoutMask mask);
    /// <summary>y = cond ≠ 0 ? a : b, all contiguous, n elements.</summary>
    void Where(Buf cond, Buf a, Buf b, Buf y, long n);
    /// <summary>General strided copy: y[idx·yStrides] (+)= x[idx·xStrides] for every index of shape.
    /// Covers permute, slice, concat, expand.</summary>
    void CopyStrided(Buf x, int[] xStrides, Buf y, int[] yStrides, int[] shape, bool accumulate = false);
    /// <summary>y[o, i] (+)= scale · Σ_m x[o, m, i] over a contiguous (outer, mid, inner) view.</summary>
    void ReduceSum(Buf x, Buf y, int outer, int mid, int inner, float scale = 1f, bool accumulate = false);
    /// <summary>y[o, i] = max_m x[o, m, i].</summary>
    void ReduceMax(Buf x, Buf y, int outer, int mid, int inner);

    // ---- linear algebra (Gemm/) --------------------------------------------------------------------------
    /// <summary>C = alpha·op(A)·op(B) + beta·C (<see cref="GemmDesc"/>). A and B may each be float32, bfloat16 or
    /// float16 (read as float32, products accumulated in float32); C is float32.</summary>
    void Gemm(in GemmDesc d, Buf a, Buf b, Buf c, float alpha = 1f, float beta = 0f);

    // ---- convolution (Conv/) -----------------------------------------------------------------------------
    // x, w and dy may each be float32, bfloat16 or float16 (accumulated in float32); bias, y and the gradients
    // written are float32.
    void Conv2dForward(in Conv2dDesc d, Buf x, Buf w, Buf? bias, Buf y);
    /// <summary>dx = conv_transpose(dy, w) (overwritten).</summary>
    void Conv2dBackwardInput(in Conv2dDesc d, Buf dy, Buf w, Buf dx);
    /// <summary>dw = Σ dy ⋆ x (overwritten); dbias = Σ dy when given.</summary>
    void Conv2dBackwardWeight(in Conv2dDesc d, Buf x, Buf dy, Buf dw, Buf? dbias);

    // ---- resampling (Resample/) --------------------------------------------------------------------------
    /// <summary>2×2 average pool, stride 2, over planes (NC, H, W); odd trailing rows/columns are dropped.</summary>
    void AvgPool2x2Forward(int planes, int h, int w, Buf x, Buf y);
    void AvgPool2x2Backward(int planes, int h, int w, Buf dy, Buf dx);
    /// <summary>torch AdaptiveMaxPool2d: bin i covers [floor(i·in/out), ceil((i+1)·in/out)). argmax (Int32)
    /// holds the flat in-plane index of the first maximum.</summary>
    void AdaptiveMaxPoolForward(int planes, int h, int w, int oh, int ow, Buf x, Buf y, Buf argmax);
    /// <summary>dx (overwritten) = scatter-add of dy at argmax.</summary>
    void AdaptiveMaxPoolBackward(int planes, int h, int w, int oh, int ow, Buf dy, Buf argmax, Buf dx);
    /// <summary>torch max_pool2d with a square window (floor mode): output (oh, ow) over planes (NC, H, W), input
    /// position of output i is i·stride − padding + [0, kernel); padded positions never win (−∞). argmax (Int32)
    /// holds the flat in-plane index of the first maximum in row-major window order; a NaN wins.</summary>
    void MaxPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf x, Buf y, Buf argmax);
    /// <summary>dx (overwritten) = Σ dy over the outputs whose argmax is that input (the forward's geometry lets a
    /// device gather per input instead of scattering with float atomics, whose order is not deterministic).</summary>
    void MaxPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow, Buf dy, Buf argmax, Buf dx);
    /// <summary>torch avg_pool2d with a square window (floor mode): the window sum divided by kernel² when
    /// <paramref name="countIncludePad"/>, else by the number of window positions inside the input.</summary>
    void AvgPool2dForward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow,
        bool countIncludePad, Buf x, Buf y);
    /// <summary>dx (overwritten): each dy spread over its window with the forward's divisor.</summary>
    void AvgPool2dBackward(int planes, int h, int w, int kernel, int stride, int padding, int oh, int ow,
        bool countIncludePad, Buf dy, Buf dx);
    void UpsampleNearest2xForward(int planes, int h, int w, Buf x, Buf y);
    void UpsampleNearest2xBackward(int planes, int h, int w, Buf dy, Buf dx);

    // ---- normalisation (Norm/) ---------------------------------------------------------------------------
    /// <summary>y = [silu](GN(x)·γ + β); saves per-(n, group) mean and rstd.</summary>
    void GroupNormForward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd);
    /// <summary>dx overwritten; dgamma/dbeta overwritten.</summary>
    void GroupNormBackward(in GroupNormDesc d, Buf x, Buf gamma, Buf beta, Buf mean, Buf rstd, Buf dy,
        Buf dx, Buf dgamma, Buf dbeta);
    /// <summary>LayerNorm over the last axis of (rows, cols).</summary>
    void LayerNormForward(int rows, int cols, float eps, Buf x, Buf gamma, Buf beta, Buf y, Buf mean, Buf rstd);
    void LayerNormBackward(int rows, int cols, Buf x, Buf gamma, Buf mean, Buf rstd, Buf dy,
        Buf dx, Buf dgamma, Buf dbeta);

    // ---- softmax family (Softmax/) -----------------------------------------------------------------------
    /// <summary>Softmax (or log-softmax) over the last axis of (rows, cols).</summary>
    void SoftmaxForward(int rows, int cols, Buf x, Buf y, bool log);
    /// <summary>dx = backward of softmax / log-softmax given its output y.</summary>
    void SoftmaxBackward(int rows, int cols, Buf y, Buf dy, Buf dx, bool log);
    /// <summary>Per-row label-smoothed cross-entropy: loss[r] = −(1−ε)·logp[r, t_r] − ε/C·Σ_c logp[r, c].
    /// targets is Int32 and checked against [0, cols) (<see cref="IndexFault"/>); lse receives each row's log-sum-exp
    /// for the backward.</summary>
    void CrossEntropyForward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf loss, Buf lse);
    /// <summary>dlogits = dloss[r] · (softmax − smoothed one-hot) (overwritten).</summary>
    void CrossEntropyBackward(int rows, int cols, Buf logits, Buf targets, float labelSmoothing, Buf lse,
        Buf dloss, Buf dlogits);

    // ---- embedding (Embedding/) --------------------------------------------------------------------------
    /// <summary>y[i] = weight[idx[i]] for a (rows, dim) weight; indices are checked (<see cref="IndexFault"/>).</summary>
    void EmbeddingForward(int count, int dim, int rows, Buf weight, Buf indices, Buf y);
    /// <summary>dweight[idx[i]] += dy[i] (accumulates; the caller zeroes dweight). Out-of-range indices (already
    /// reported by the forward) add nothing.</summary>
    void EmbeddingBackward(int count, int dim, int rows, Buf dy, Buf indices, Buf dweight);

    // ---- attention (Attention/) --------------------------------------------------------------------------
    /// <summary>out = dropout(softmax(q·kᵀ·scale))·v for (batchHeads, seq, headDim) contiguous q, k, v; lse
    /// (batchHeads, seq) of the undropped scores is saved for the backward. No seq×seq matrix is kept: the
    /// dropout mask (probability <paramref name="dropout"/>, 0 = none) is the hash of <see cref="DropoutMask"/>
    /// over (seed, batch·head, row, column), regenerated by the backward.</summary>
    void AttentionForward(int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed,
        Buf q, Buf k, Buf v, Buf output, Buf lse);
    /// <summary>dq, dk, dv overwritten; dropout and seed as in the forward.</summary>
    void AttentionBackward(int batchHeads, int seq, int headDim, float scale, float dropout, ulong seed,
        Buf q, Buf k, Buf v, Buf output, Buf lse, Buf dOutput, Buf dq, Buf dk, Buf dv);

    // ---- optimizer updates (Optim/) ------------------------------------------------------------------------
    /// <summary>One AdamW step in place, in torch's single-tensor order (see <see cref="AdamWScalars"/>).</summary>
    void AdamWUpdate(Buf param, Buf grad, Buf expAvg, Buf expAvgSq, long n, in AdamWScalars s);
    /// <summary>y[0] = Σ x[i]² over n float32 values (plus y[0] when accumulating): the gradient clipping's squared
    /// norm, summed in an order that does not depend on the number of threads. Backends without a fused kernel square
    /// into a temporary and reduce it.</summary>
    void SumOfSquares(Buf x, long n, Buf y, bool accumulate)
    {
        using var squares = Allocate(n);
        var strides = new[] { 1 };
        var shape = new[] { checked((int)n) };
        Binary(BinaryOp.Mul, x, strides, x, strides, new Buf(squares, 0), shape);
        ReduceSum(new Buf(squares, 0), y, 1, checked((int)n), 1, 1f, accumulate);
    }
    /// <summary>shadow −= oneMinusDecay·(shadow − param), the EMA rule of the reference.</summary>
    void EmaUpdate(Buf shadow, Buf param, long n, float oneMinusDecay);

    // ---- model-specific fused ops -------------------------------------------------------------------------------
    /// <summary>The fused ops of the MaskBit models (LFQ, bit tokens, the sampler, the MLM tally), kept apart from the
    /// engine's ops so that a backend's core stays model-agnostic; CPU and ILGPU implement both.</summary>
    IModelOps ModelOps { get; }
}
