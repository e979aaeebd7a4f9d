namespace MaskBit.Kernels.Cpu;

public sealed partial class CpuBackend
{
    // Placeholder: straightforward triple loop; replaced by the packed, blocked FMA kernel.
    public void Gemm(in GemmDesc d, Buf a, Buf b, Buf c, float alpha = 1f, float beta = 0f)
    {
        float[] A = Arr(a), B = Arr(b), C = Arr(c);
        for (int bt = 0; bt < d.Batch; bt++)
        {
            long ao = a.Offset + bt * d.StrideA, bo = b.Offset + bt * d.StrideB, co = c.Offset + bt * d.StrideC;
            for (int i = 0; i < d.M; i++)
                for (int j = 0; j < d.N; j++)
                {
                    float s = 0;
                    for (int k = 0; k < d.K; k++)
                        s += A[ao + (d.TransA ? (long)k * d.M + i : (long)i * d.K + k)] * B[bo + (d.TransB ? (long)j * d.K + k : (long)k * d.N + j)];
                    long ci = co + (long)i * d.N + j;
                    C[ci] = alpha * s + (beta == 0f ? 0f : beta * C[ci]);
                }
        }
    }
}
