using System.Numerics;

namespace MaskBit.Models.Metrics;

/// <summary>Eigen-decomposition of a real symmetric matrix by cyclic Jacobi rotations, in float64. Jacobi is slow
/// (O(n³) per sweep, a handful of sweeps) but simple and accurate to a few ulps of ‖A‖, which is what the FID trace
/// needs; matrices are row-major n×n.</summary>
public static class SymmetricEigen
{
    private const int MaxSweeps = 100;

    /// <summary>Eigenvalues of the symmetric matrix <paramref name="matrix"/> (unsorted) and, when
    /// <paramref name="computeVectors"/>, the eigenvectors as the rows of an n×n row-major array:
    /// matrix = Σ_k values[k] · v_k v_kᵀ with v_k = vectors[k·n .. k·n+n]. The input is not modified; only its
    /// symmetric part is used.</summary>
    public static (double[] Values, double[]? Vectors) Decompose(ReadOnlySpan<double> matrix, int n, bool computeVectors = true)
    {
        if (matrix.Length != n * n) throw new ArgumentException($"expected {n}×{n} = {n * n} values, got {matrix.Length}", nameof(matrix));
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                a[i * n + j] = 0.5 * (matrix[i * n + j] + matrix[j * n + i]);
        double[]? vt = null;
        if (computeVectors)
        {
            vt = new double[n * n];
            for (int i = 0; i < n; i++) vt[i * n + i] = 1.0;
        }

        double frobenius2 = 0;
        foreach (double x in a) frobenius2 += x * x;
        // Off-diagonal mass this small leaves eigenvalue errors far below float64 rounding of ‖A‖.
        double stop2 = frobenius2 * 1e-30;

        for (int sweep = 0; ; sweep++)
        {
            double off2 = 0;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++) off2 += a[p * n + q] * a[p * n + q];
            if (off2 <= stop2 || off2 == 0) break;
            if (sweep == MaxSweeps) throw new InvalidOperationException($"Jacobi eigen-solver did not converge in {MaxSweeps} sweeps (off-diagonal² {off2:E3})");

            for (int p = 0; p < n - 1; p++)
                for (int q = p + 1; q < n; q++)
                    Rotate(a, vt, n, p, q);
        }

        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = a[i * n + i];
        return (values, vt);
    }

    /// <summary>A ← JᵀAJ with the Givens rotation J in the (p, q) plane that zeroes A[p,q]; Vᵀ ← JᵀVᵀ.</summary>
    private static void Rotate(double[] a, double[]? vt, int n, int p, int q)
    {
        double apq = a[p * n + q];
        if (apq == 0) return;
        double app = a[p * n + p], aqq = a[q * n + q];
        double theta = (aqq - app) / (2 * apq);
        // The smaller root of t² + 2θt − 1 = 0 (rotation angle ≤ π/4), written to avoid overflow for huge θ.
        double t = double.IsInfinity(theta * theta)
            ? 0.5 / theta
            : Math.CopySign(1.0, theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
        double c = 1 / Math.Sqrt(t * t + 1), s = t * c;

        RotateRows(a.AsSpan(p * n, n), a.AsSpan(q * n, n), c, s);
        // Rows p and q are now those of JᵀA; symmetry gives columns p and q of JᵀAJ off the 2×2 block.
        for (int k = 0; k < n; k++)
        {
            a[k * n + p] = a[p * n + k];
            a[k * n + q] = a[q * n + k];
        }
        a[p * n + p] = app - t * apq;
        a[q * n + q] = aqq + t * apq;
        a[p * n + q] = a[q * n + p] = 0;

        if (vt != null) RotateRows(vt.AsSpan(p * n, n), vt.AsSpan(q * n, n), c, s);
    }

    /// <summary>(x, y) ← (c·x − s·y, s·x + c·y) element-wise.</summary>
    private static void RotateRows(Span<double> x, Span<double> y, double c, double s)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var vc = new Vector<double>(c);
            var vs = new Vector<double>(s);
            for (; i <= x.Length - Vector<double>.Count; i += Vector<double>.Count)
            {
                var xv = new Vector<double>(x[i..]);
                var yv = new Vector<double>(y[i..]);
                (vc * xv - vs * yv).CopyTo(x[i..]);
                (vs * xv + vc * yv).CopyTo(y[i..]);
            }
        }
        for (; i < x.Length; i++)
        {
            double xi = x[i], yi = y[i];
            x[i] = c * xi - s * yi;
            y[i] = s * xi + c * yi;
        }
    }
}
