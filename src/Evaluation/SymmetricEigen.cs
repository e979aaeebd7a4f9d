using System.Numerics;

namespace MaskBit.Models.Metrics;

/// <summary>Eigen-decomposition of a real symmetric matrix in float64: Householder reduction to tridiagonal form,
/// then the implicit QL algorithm (the EISPACK tred2 / tql2 pair). Cyclic Jacobi is simpler but was measured at
/// ~21 s for n = 512 here (and O(n³) per sweep), far too slow for 2048-d FID statistics; this is a few times n³
/// flops in all. Matrices are row-major n×n.</summary>
public static class SymmetricEigen
{
    private const int MaxQlIterations = 100;

    /// <summary>Eigenvalues (ascending) of the symmetric matrix <paramref name="matrix"/> and, when
    /// <paramref name="computeVectors"/>, the eigenvectors as the rows of an n×n row-major array:
    /// matrix = Σ_k values[k] · v_k v_kᵀ with v_k = vectors[k·n .. k·n+n]. The input is not modified; only its
    /// symmetric part is used.</summary>
    public static (double[] Values, double[]? Vectors) Decompose(ReadOnlySpan<double> matrix, int n, bool computeVectors = true)
    {
        if (matrix.Length != n * n) throw new ArgumentException($"expected {n}×{n} = {n * n} values, got {matrix.Length}", nameof(matrix));
        // w holds EISPACK's V column-major (w[c·n + r] = V[r][c]), so that the inner loops, which walk columns of
        // V, run over contiguous memory, and the final eigenvectors (columns of V) come out as rows.
        var w = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                w[i * n + j] = 0.5 * (matrix[i * n + j] + matrix[j * n + i]);
        var d = new double[n];
        var e = new double[n];
        Tridiagonalize(w, d, e, n, computeVectors);
        DiagonalizeTridiagonal(computeVectors ? w : null, d, e, n);

        var order = Enumerable.Range(0, n).OrderBy(k => d[k]).ToArray();
        var values = order.Select(k => d[k]).ToArray();
        if (!computeVectors) return (values, null);
        var vectors = new double[n * n];
        for (int k = 0; k < n; k++) w.AsSpan(order[k] * n, n).CopyTo(vectors.AsSpan(k * n, n));
        return (values, vectors);
    }

    /// <summary>Householder reduction (tred2): on return d is the diagonal, e[1..] the sub-diagonal of the
    /// tridiagonal form, and w (when accumulating) the orthogonal transformation.</summary>
    private static void Tridiagonalize(double[] w, double[] d, double[] e, int n, bool accumulate)
    {
        for (int j = 0; j < n; j++) d[j] = w[j * n + n - 1];
        for (int i = n - 1; i > 0; i--)
        {
            double scale = 0, h = 0;
            for (int k = 0; k < i; k++) scale += Math.Abs(d[k]);
            if (scale == 0)
            {
                e[i] = d[i - 1];
                for (int j = 0; j < i; j++)
                {
                    d[j] = w[j * n + i - 1];
                    w[j * n + i] = 0;
                    w[i * n + j] = 0;
                }
            }
            else
            {
                // The Householder vector of row i, scaled against under/overflow.
                for (int k = 0; k < i; k++)
                {
                    d[k] /= scale;
                    h += d[k] * d[k];
                }
                double f = d[i - 1];
                double g = f > 0 ? -Math.Sqrt(h) : Math.Sqrt(h);
                e[i] = scale * g;
                h -= f * g;
                d[i - 1] = f - g;
                Array.Clear(e, 0, i);

                // e = A·u / h over the leading i×i block, then the symmetric rank-2 update A −= u·qᵀ + q·uᵀ.
                for (int j = 0; j < i; j++)
                {
                    f = d[j];
                    w[i * n + j] = f;
                    g = e[j] + w[j * n + j] * f;
                    var column = w.AsSpan(j * n, i);
                    for (int k = j + 1; k < i; k++)
                    {
                        g += column[k] * d[k];
                        e[k] += column[k] * f;
                    }
                    e[j] = g;
                }
                f = 0;
                for (int j = 0; j < i; j++)
                {
                    e[j] /= h;
                    f += e[j] * d[j];
                }
                double hh = f / (h + h);
                for (int j = 0; j < i; j++) e[j] -= hh * d[j];
                for (int j = 0; j < i; j++)
                {
                    f = d[j];
                    g = e[j];
                    var column = w.AsSpan(j * n, i);
                    for (int k = j; k < i; k++) column[k] -= f * e[k] + g * d[k];
                    d[j] = w[j * n + i - 1];
                    w[j * n + i] = 0;
                }
            }
            d[i] = h;
        }

        if (!accumulate)
        {
            for (int j = 0; j < n; j++) d[j] = w[j * n + j];
            e[0] = 0;
            return;
        }

        // Accumulate the transformations.
        for (int i = 0; i < n - 1; i++)
        {
            w[i * n + n - 1] = w[i * n + i];
            w[i * n + i] = 1;
            double h = d[i + 1];
            var next = w.AsSpan((i + 1) * n, i + 1);
            if (h != 0)
            {
                for (int k = 0; k <= i; k++) d[k] = next[k] / h;
                for (int j = 0; j <= i; j++)
                {
                    var column = w.AsSpan(j * n, i + 1);
                    double g = 0;
                    for (int k = 0; k <= i; k++) g += next[k] * column[k];
                    for (int k = 0; k <= i; k++) column[k] -= g * d[k];
                }
            }
            next.Clear();
        }
        for (int j = 0; j < n; j++)
        {
            d[j] = w[j * n + n - 1];
            w[j * n + n - 1] = 0;
        }
        w[(n - 1) * n + n - 1] = 1;
        e[0] = 0;
    }

    /// <summary>Implicit QL with shifts (tql2) on the tridiagonal (d, e); rotations are applied to the rows of
    /// <paramref name="w"/> when given. On return d holds the eigenvalues.</summary>
    private static void DiagonalizeTridiagonal(double[]? w, double[] d, double[] e, int n)
    {
        for (int i = 1; i < n; i++) e[i - 1] = e[i];
        e[n - 1] = 0;
        double shiftSum = 0, tst1 = 0;
        double eps = Math.Pow(2, -52);
        for (int l = 0; l < n; l++)
        {
            // Find the first negligible sub-diagonal element at or after l.
            tst1 = Math.Max(tst1, Math.Abs(d[l]) + Math.Abs(e[l]));
            int m = l;
            while (m < n - 1 && Math.Abs(e[m]) > eps * tst1) m++;

            if (m > l)
            {
                for (int iter = 0; ; iter++)
                {
                    if (iter == MaxQlIterations) throw new InvalidOperationException($"QL eigen-iteration did not converge for eigenvalue {l}");
                    // Wilkinson-type shift from the leading 2×2 block.
                    double g = d[l];
                    double p = (d[l + 1] - g) / (2 * e[l]);
                    double r = Hypot(p, 1);
                    if (p < 0) r = -r;
                    d[l] = e[l] / (p + r);
                    d[l + 1] = e[l] * (p + r);
                    double dl1 = d[l + 1];
                    double h = g - d[l];
                    for (int i = l + 2; i < n; i++) d[i] -= h;
                    shiftSum += h;

                    // Chase the bulge from m back to l with Givens rotations.
                    p = d[m];
                    double c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
                    double el1 = e[l + 1];
                    for (int i = m - 1; i >= l; i--)
                    {
                        c3 = c2;
                        c2 = c;
                        s2 = s;
                        g = c * e[i];
                        h = c * p;
                        r = Hypot(p, e[i]);
                        e[i + 1] = s * r;
                        s = e[i] / r;
                        c = p / r;
                        p = c * d[i] - s * g;
                        d[i + 1] = h + s * (c * g + s * d[i]);
                        if (w != null) RotateRows(w.AsSpan((i + 1) * n, n), w.AsSpan(i * n, n), c, s);
                    }
                    p = -s * s2 * c3 * el1 * e[l] / dl1;
                    e[l] = s * p;
                    d[l] = c * p;
                    if (!(Math.Abs(e[l]) > eps * tst1)) break;
                }
            }
            d[l] += shiftSum;
            e[l] = 0;
        }
    }

    private static double Hypot(double a, double b)
    {
        double x = Math.Abs(a), y = Math.Abs(b);
        if (x < y) (x, y) = (y, x);
        if (x == 0) return 0;
        double t = y / x;
        return x * Math.Sqrt(1 + t * t);
    }

    /// <summary>(hi, lo) ← (s·lo + c·hi, c·lo − s·hi) element-wise: the rotation of EISPACK's columns i+1, i.</summary>
    private static void RotateRows(Span<double> hi, Span<double> lo, double c, double s)
    {
        int k = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var vc = new Vector<double>(c);
            var vs = new Vector<double>(s);
            for (; k <= hi.Length - Vector<double>.Count; k += Vector<double>.Count)
            {
                var h = new Vector<double>(hi[k..]);
                var l = new Vector<double>(lo[k..]);
                (vs * l + vc * h).CopyTo(hi[k..]);
                (vc * l - vs * h).CopyTo(lo[k..]);
            }
        }
        for (; k < hi.Length; k++)
        {
            double h = hi[k], l = lo[k];
            hi[k] = s * l + c * h;
            lo[k] = c * l - s * h;
        }
    }
}
