using MaskBit.Kernels;

namespace MaskBit.Models.Benchmarks;

/// <summary>Single-kernel workloads at the shapes the models run (the generator's linear layers and attention,
/// the tokenizer's convs and norms, the LFQ quantizer), on buffers allocated and filled outside the timing.</summary>
public static class KernelWorkloads
{
    public static IEnumerable<Workload> Build()
    {
        // ---- GEMM: squares, then the generator's linear layers (x·Wᵀ forward, g·W input grad, gᵀ·x weight grad).
        foreach (int n in new[] { 256, 512, 1024, 2048 })
            yield return Gemm($"gemm_square_{n}", new GemmDesc(n, n, n), [[$"gemm_square_{n}"]]);
        foreach (var (layer, inF, outF) in new[] { ("qkv", 1024, 3072), ("attn_out", 1024, 1024), ("mlp_up", 1024, 4096), ("mlp_down", 4096, 1024) })
        {
            const int tokens = 514; // batch 2 × (256 tokens + 1 class token)
            yield return Gemm($"linear_{layer}_T{tokens}_fwd", new GemmDesc(tokens, outF, inF, TransB: true), [[$"linear_{layer}_T{tokens}_fwd"]]);
            yield return Gemm($"linear_{layer}_T{tokens}_dgrad", new GemmDesc(tokens, inF, outF), []);
            yield return Gemm($"linear_{layer}_T{tokens}_wgrad", new GemmDesc(outF, inF, tokens, TransA: true), []);
            yield return LinearForwardBackward(layer, 2056, inF, outF);
        }
        const int bh = 32, seq = 257, hd = 64; // batch 2 × 16 heads
        yield return Gemm("bmm_attn_qk_b2", new GemmDesc(seq, seq, hd, TransB: true, Batch: bh, StrideA: seq * hd, StrideB: seq * hd, StrideC: seq * seq), [["bmm_attn_qk_b2"]]);
        yield return Gemm("bmm_attn_av_b2", new GemmDesc(seq, hd, seq, Batch: bh, StrideA: seq * seq, StrideB: seq * hd, StrideC: seq * hd), [["bmm_attn_av_b2"]]);

        // ---- conv3x3, SAME padding 1, stride 1, batch 1 (the tokenizer's ResidualBlock convs).
        foreach (var (c, hw) in new[] { (128, 128), (128, 64), (256, 64), (512, 16) })
        {
            var d = new Conv2dDesc(1, c, hw, hw, c, 3, 3, 1, 1, 1, 1, hw, hw);
            string peer = $"conv3x3_{c}x{hw}";
            yield return new Workload($"{peer}_fwd", "conv", $"x[1,{c},{hw},{hw}] k3 s1 p1", d.Flops, 0,
                [[$"{peer}_fwd"], [$"{peer}_pad1_fwd"]], be => ConvForward(be, d));
            yield return new Workload($"{peer}_fb", "conv", $"x[1,{c},{hw},{hw}] k3 s1 p1", 3 * d.Flops, 0,
                [[$"{peer}_fb"]], be => ConvForwardBackward(be, d));
        }

        // ---- the same at batch 32 on the small tokenizer's maps (configs/fashion_mnist_tokenizer.yaml: 32 channels at
        // 32², 64 at 16² and 8²), where most of its step's conv time goes. The peer has no batched conv rows.
        foreach (var (c, hw) in new[] { (32, 32), (64, 16), (64, 8) })
        {
            const int batch = 32;
            var d = new Conv2dDesc(batch, c, hw, hw, c, 3, 3, 1, 1, 1, 1, hw, hw);
            string name = $"conv3x3_{c}x{hw}_b{batch}";
            yield return new Workload($"{name}_fwd", "conv", $"x[{batch},{c},{hw},{hw}] k3 s1 p1", d.Flops, 0, [], be => ConvForward(be, d));
            yield return new Workload($"{name}_fb", "conv", $"x[{batch},{c},{hw},{hw}] k3 s1 p1", 3 * d.Flops, 0, [], be => ConvForwardBackward(be, d));
        }

        // ---- attention core (no projections): 2 × 16 heads, seq 257, head dim 64. The peer has no fused op in
        // torch 1.13; its two bmm's (no softmax) are the closest forward bar.
        double attnFlops = 2.0 * 2 * bh * seq * seq * hd;
        yield return new Workload("attention_b2_fwd", "attention", $"q,k,v[{bh},{seq},{hd}]", attnFlops, 0,
            [["bmm_attn_qk_b2", "bmm_attn_av_b2"]], be => Attention(be, bh, seq, hd, backward: false));
        yield return new Workload("attention_b2_fb", "attention", $"q,k,v[{bh},{seq},{hd}]", 3 * attnFlops, 0,
            [], be => Attention(be, bh, seq, hd, backward: true));

        // ---- GroupNorm(32) + SiLU at 128ch@256² (memory-bound: bytes = compulsory traffic, as the peer counts).
        var gn = new GroupNormDesc(1, 128, 256 * 256, 32, 1e-6f, FuseSilu: true);
        double elems = (double)gn.N * gn.C * gn.HW;
        yield return new Workload("groupnorm_silu_128x256_fwd", "norm", "[1,128,256,256] groups=32", 0, 2 * 4 * elems,
            [["groupnorm_silu_128x256_fwd"]], be => GroupNorm(be, gn, backward: false));
        yield return new Workload("groupnorm_silu_128x256_fb", "norm", "[1,128,256,256] groups=32", 0, 5 * 4 * elems,
            [["groupnorm_silu_128x256_fb"]], be => GroupNorm(be, gn, backward: true));

        // ---- LFQ quantizer in train mode: binarize + indices + commitment, and the entropy terms over all 2^K codes
        // (streamed; the peer materialises N×2^K). FLOPs as the peer counts them (its einsum), for comparability.
        foreach (int bits in new[] { 12, 18 })
        {
            const int batch = 8, hw = 16 * 16;
            double einsum = 2.0 * batch * hw * bits * (1 << bits);
            yield return new Workload($"lfq{bits}_b8_fwd", "lfq", $"z[{batch},{bits},16,16] codebook 2^{bits}", einsum, 0,
                [[$"lfq{bits}_b8_fwd"]], be => Lfq(be, batch, bits, hw, backward: false));
            yield return new Workload($"lfq{bits}_b8_fb", "lfq", $"z[{batch},{bits},16,16] codebook 2^{bits}", 2 * einsum, 0,
                [[$"lfq{bits}_b8_fb"]], be => Lfq(be, batch, bits, hw, backward: true));
        }
    }

    private static PreparedWorkload Lfq(IBackend be, int batch, int bits, int hw, bool backward)
    {
        long len = (long)batch * bits * hw;
        Storage z = Random(be, len), zq = be.Allocate(len), idx = be.Allocate(batch * hw, DType.Int32), sum = be.Allocate(1);
        Storage avg = be.Allocate(1L << bits), result = be.Allocate(2), dResult = Random(be, 2), dz = be.Allocate(len);
        const float invTemperature = 100f;
        return new PreparedWorkload(() =>
        {
            be.ModelOps.LfqQuantize(batch, bits, hw, new Buf(z, 0), new Buf(zq, 0), new Buf(idx, 0), new Buf(sum, 0));
            be.ModelOps.LfqEntropyForward(batch, bits, hw, invTemperature, new Buf(z, 0), new Buf(avg, 0), new Buf(result, 0));
            if (backward)
                be.ModelOps.LfqEntropyBackward(batch, bits, hw, invTemperature, new Buf(z, 0), new Buf(avg, 0), new Buf(dResult, 0), new Buf(dz, 0));
        }, [z, zq, idx, sum, avg, result, dResult, dz]);
    }

    private static Workload Gemm(string name, GemmDesc d, string[][] peer)
    {
        string shape = $"{d.Batch}×[{d.M}×{d.K}{(d.TransA ? "ᵀ" : "")}]·[{d.K}×{d.N}{(d.TransB ? "ᵀ" : "")}]";
        if (d.Batch == 1) shape = shape[2..];
        return new Workload(name, "gemm", shape, d.Flops, 0, peer, be =>
        {
            Storage a = Random(be, Span(d.Batch, d.StrideA, (long)d.M * d.K)), b = Random(be, Span(d.Batch, d.StrideB, (long)d.K * d.N));
            Storage c = be.Allocate(Span(d.Batch, d.StrideC, (long)d.M * d.N));
            return new PreparedWorkload(() => be.Gemm(d, new Buf(a, 0), new Buf(b, 0), new Buf(c, 0)), [a, b, c]);
        });
    }

    /// <summary>nn.Linear forward + backward without bias: y = x·Wᵀ, dx = g·W, dW = gᵀ·x.</summary>
    private static Workload LinearForwardBackward(string layer, int tokens, int inF, int outF)
    {
        var fwd = new GemmDesc(tokens, outF, inF, TransB: true);
        var dgrad = new GemmDesc(tokens, inF, outF);
        var wgrad = new GemmDesc(outF, inF, tokens, TransA: true);
        return new Workload($"linear_{layer}_T{tokens}_fb", "gemm", $"x[{tokens},{inF}]·W[{outF},{inF}]ᵀ fwd+bwd",
            3 * fwd.Flops, 0, [[$"linear_{layer}_T{tokens}_fb"]], be =>
            {
                Storage x = Random(be, (long)tokens * inF), w = Random(be, (long)outF * inF), g = Random(be, (long)tokens * outF);
                Storage y = be.Allocate((long)tokens * outF), dx = be.Allocate((long)tokens * inF), dw = be.Allocate((long)outF * inF);
                return new PreparedWorkload(() =>
                {
                    be.Gemm(fwd, new Buf(x, 0), new Buf(w, 0), new Buf(y, 0));
                    be.Gemm(dgrad, new Buf(g, 0), new Buf(w, 0), new Buf(dx, 0));
                    be.Gemm(wgrad, new Buf(g, 0), new Buf(x, 0), new Buf(dw, 0));
                }, [x, w, g, y, dx, dw]);
            });
    }

    private static PreparedWorkload ConvForward(IBackend be, Conv2dDesc d)
    {
        Storage x = Random(be, (long)d.N * d.Cin * d.H * d.W), w = Random(be, (long)d.Cout * d.CinPerGroup * d.KH * d.KW, 0.05f);
        Storage y = be.Allocate((long)d.N * d.Cout * d.OH * d.OW);
        return new PreparedWorkload(() => be.Conv2dForward(d, new Buf(x, 0), new Buf(w, 0), null, new Buf(y, 0)), [x, w, y]);
    }

    private static PreparedWorkload ConvForwardBackward(IBackend be, Conv2dDesc d)
    {
        long xLen = (long)d.N * d.Cin * d.H * d.W, wLen = (long)d.Cout * d.CinPerGroup * d.KH * d.KW, yLen = (long)d.N * d.Cout * d.OH * d.OW;
        Storage x = Random(be, xLen), w = Random(be, wLen, 0.05f), dy = Random(be, yLen);
        Storage y = be.Allocate(yLen), dx = be.Allocate(xLen), dw = be.Allocate(wLen);
        return new PreparedWorkload(() =>
        {
            be.Conv2dForward(d, new Buf(x, 0), new Buf(w, 0), null, new Buf(y, 0));
            be.Conv2dBackwardInput(d, new Buf(dy, 0), new Buf(w, 0), new Buf(dx, 0));
            be.Conv2dBackwardWeight(d, new Buf(x, 0), new Buf(dy, 0), new Buf(dw, 0), null);
        }, [x, w, dy, y, dx, dw]);
    }

    private static PreparedWorkload Attention(IBackend be, int bh, int seq, int hd, bool backward)
    {
        long len = (long)bh * seq * hd;
        float scale = 1f / MathF.Sqrt(hd);
        Storage q = Random(be, len), k = Random(be, len), v = Random(be, len), dOut = Random(be, len);
        Storage o = be.Allocate(len), lse = be.Allocate((long)bh * seq), dq = be.Allocate(len), dk = be.Allocate(len), dv = be.Allocate(len);
        return new PreparedWorkload(() =>
        {
            be.AttentionForward(bh, seq, hd, scale, 0f, 0, new Buf(q, 0), new Buf(k, 0), new Buf(v, 0), new Buf(o, 0), new Buf(lse, 0));
            if (backward)
                be.AttentionBackward(bh, seq, hd, scale, 0f, 0, new Buf(q, 0), new Buf(k, 0), new Buf(v, 0), new Buf(o, 0),
                    new Buf(lse, 0), new Buf(dOut, 0), new Buf(dq, 0), new Buf(dk, 0), new Buf(dv, 0));
        }, [q, k, v, dOut, o, lse, dq, dk, dv]);
    }

    private static PreparedWorkload GroupNorm(IBackend be, GroupNormDesc d, bool backward)
    {
        long len = (long)d.N * d.C * d.HW, stats = (long)d.N * d.Groups;
        Storage x = Random(be, len), gamma = Random(be, d.C), beta = Random(be, d.C), dy = Random(be, len);
        Storage y = be.Allocate(len), mean = be.Allocate(stats), rstd = be.Allocate(stats);
        Storage dx = be.Allocate(len), dgamma = be.Allocate(d.C), dbeta = be.Allocate(d.C);
        return new PreparedWorkload(() =>
        {
            be.GroupNormForward(d, new Buf(x, 0), new Buf(gamma, 0), new Buf(beta, 0), new Buf(y, 0), new Buf(mean, 0), new Buf(rstd, 0));
            if (backward)
                be.GroupNormBackward(d, new Buf(x, 0), new Buf(gamma, 0), new Buf(beta, 0), new Buf(mean, 0), new Buf(rstd, 0),
                    new Buf(dy, 0), new Buf(dx, 0), new Buf(dgamma, 0), new Buf(dbeta, 0));
        }, [x, gamma, beta, dy, y, mean, rstd, dx, dgamma, dbeta]);
    }

    /// <summary>Elements spanned by a batch of items of itemLength at the given stride (stride 0 = one shared item).</summary>
    private static long Span(int batch, long stride, long itemLength) => (batch - 1) * stride + itemLength;

    private static Storage Random(IBackend be, long length, float amplitude = 1f)
    {
        var rng = new Random(unchecked((int)length));
        var data = new float[length];
        for (long i = 0; i < length; i++) data[i] = amplitude * (float)(rng.NextDouble() * 2 - 1);
        var s = be.Allocate(length, zero: false);
        be.Upload(data, new Buf(s, 0));
        return s;
    }
}
