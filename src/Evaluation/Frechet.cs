using System.Numerics;

namespace MaskBit.Models.Metrics;

/// <summary>Mean and covariance of Inception features (float64; sigma row-major Dim×Dim).</summary>
public sealed class GaussianStatistics
{
    public int Dim { get; }
    public double[] Mu { get; }
    public double[] Sigma { get; }

    /// <summary>Optional F (r × Dim, row-major, r &lt; Dim) with Sigma = FᵀF: the centred feature rows scaled by
    /// 1/sqrt(N − 1) when there were fewer rows than dimensions. It lets <see cref="Frechet.Distance(GaussianStatistics, GaussianStatistics)"/>
    /// solve an r × r eigenproblem instead of Dim × Dim ones.</summary>
    public double[]? CovarianceFactor { get; init; }

    public GaussianStatistics(double[] mu, double[] sigma)
    {
        if (sigma.Length != mu.Length * mu.Length)
            throw new ArgumentException($"sigma has {sigma.Length} values, expected {mu.Length}² for mu of length {mu.Length}");
        Dim = mu.Length;
        Mu = mu;
        Sigma = sigma;
    }
}

/// <summary>Running float64 sums Σf and Σffᵀ over feature rows, turned into the mean and the unbiased covariance
/// (Σffᵀ − (Σf)(Σf)ᵀ/N)/(N − 1), as the reference's `get_covariance`. While there are fewer rows than
/// dimensions it also keeps the rows, for the covariance factor of <see cref="GaussianStatistics.CovarianceFactor"/>.</summary>
public sealed class FeatureMoments(int dim)
{
    private readonly double[] _sum = new double[dim];
    // Upper triangle (j ≥ i) of Σffᵀ only; the lower one is mirrored when the covariance is formed.
    private readonly double[] _sumOuter = new double[dim * dim];
    private List<double[]>? _rows = new();

    public int Dim { get; } = dim;
    public long Count { get; private set; }

    public void Add(ReadOnlySpan<double> row)
    {
        if (row.Length != Dim) throw new ArgumentException($"feature row has {row.Length} values, expected {Dim}");
        for (int i = 0; i < Dim; i++)
        {
            double fi = row[i];
            _sum[i] += fi;
            AddScaled(_sumOuter.AsSpan(i * Dim + i, Dim - i), row[i..], fi);
        }
        Count++;
        if (Count < Dim) _rows?.Add(row.ToArray());
        else _rows = null;
    }

    /// <summary>Adds the sums of <paramref name="other"/> (features of other images, e.g. another rank's share).</summary>
    public void Merge(FeatureMoments other)
    {
        if (other.Dim != Dim) throw new ArgumentException($"cannot merge feature moments of {other.Dim} and {Dim} dimensions");
        FeatureMoments.AddScaled(_sum, other._sum, 1);
        FeatureMoments.AddScaled(_sumOuter, other._sumOuter, 1);
        Count += other.Count;
        if (_rows != null && other._rows != null && Count < Dim) _rows.AddRange(other._rows);
        else _rows = null;
    }

    /// <summary>The running sums, for a resumable state: Σf (Dim), the upper triangle of Σffᵀ (Dim × Dim, row-major;
    /// the lower one unused) and, while there are fewer rows than dimensions, the rows themselves (else null).</summary>
    public (double[] Sum, double[] SumOuter, double[]? Rows) Sums() => (_sum, _sumOuter, _rows?.SelectMany(r => r).ToArray());

    /// <summary>Restores <see cref="Sums"/> of <paramref name="count"/> rows into an empty instance.</summary>
    public void RestoreSums(ReadOnlySpan<double> sum, ReadOnlySpan<double> sumOuter, long count, ReadOnlySpan<double> rows = default)
    {
        if (Count != 0) throw new InvalidOperationException("sums can only be restored into empty feature moments");
        if (sum.Length != Dim || sumOuter.Length != Dim * Dim || count < 0)
            throw new ArgumentException($"feature sums of {sum.Length} and {sumOuter.Length} values do not fit {Dim} dimensions");
        sum.CopyTo(_sum);
        sumOuter.CopyTo(_sumOuter);
        Count = count;
        _rows = null;
        if (count < Dim && rows.Length == count * Dim)
        {
            _rows = new();
            for (long r = 0; r < count; r++) _rows.Add(rows.Slice((int)(r * Dim), Dim).ToArray());
        }
    }

    public GaussianStatistics ToStatistics()
    {
        if (Count < 2) throw new InvalidOperationException($"a covariance needs at least 2 feature rows, got {Count}");
        var mu = new double[Dim];
        for (int i = 0; i < Dim; i++) mu[i] = _sum[i] / Count;
        var sigma = new double[Dim * Dim];
        for (int i = 0; i < Dim; i++)
            for (int j = i; j < Dim; j++)
                sigma[i * Dim + j] = sigma[j * Dim + i] = (_sumOuter[i * Dim + j] - _sum[i] * _sum[j] / Count) / (Count - 1);
        double[]? factor = null;
        if (_rows != null)
        {
            factor = new double[_rows.Count * Dim];
            double scale = 1 / Math.Sqrt(Count - 1);
            for (int r = 0; r < _rows.Count; r++)
                for (int j = 0; j < Dim; j++) factor[r * Dim + j] = (_rows[r][j] - mu[j]) * scale;
        }
        return new GaussianStatistics(mu, sigma) { CovarianceFactor = factor };
    }

    /// <summary>dst += scale·src.</summary>
    internal static void AddScaled(Span<double> dst, ReadOnlySpan<double> src, double scale)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var vs = new Vector<double>(scale);
            for (; i <= dst.Length - Vector<double>.Count; i += Vector<double>.Count)
                (new Vector<double>(dst[i..]) + vs * new Vector<double>(src[i..])).CopyTo(dst[i..]);
        }
        for (; i < dst.Length; i++) dst[i] += scale * src[i];
    }
}

public static class Frechet
{
    /// <summary>Fréchet distance between two Gaussians: ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr sqrtm(Σ1·Σ2).</summary>
    public static double Distance(ReadOnlySpan<double> mu1, ReadOnlySpan<double> sigma1, ReadOnlySpan<double> mu2, ReadOnlySpan<double> sigma2) =>
        MeanAndTraceTerms(mu1, sigma1, mu2, sigma2) - 2 * TraceSqrtmProduct(sigma1, sigma2, mu1.Length);

    /// <summary>The same distance; where either side has a <see cref="GaussianStatistics.CovarianceFactor"/> (few
    /// images), tr sqrtm(Σ1·Σ2) comes from the small eigenproblem of <see cref="TraceSqrtmProductFactored"/>.</summary>
    public static double Distance(GaussianStatistics a, GaussianStatistics b)
    {
        double terms = MeanAndTraceTerms(a.Mu, a.Sigma, b.Mu, b.Sigma);
        double crossTrace = a.CovarianceFactor is { } fa ? TraceSqrtmProductFactored(fa, b.Sigma, a.Dim)
            : b.CovarianceFactor is { } fb ? TraceSqrtmProductFactored(fb, a.Sigma, a.Dim)
            : TraceSqrtmProduct(a.Sigma, b.Sigma, a.Dim);
        return terms - 2 * crossTrace;
    }

    /// <summary>‖μ1 − μ2‖² + tr Σ1 + tr Σ2.</summary>
    private static double MeanAndTraceTerms(ReadOnlySpan<double> mu1, ReadOnlySpan<double> sigma1, ReadOnlySpan<double> mu2, ReadOnlySpan<double> sigma2)
    {
        int n = mu1.Length;
        if (mu2.Length != n || sigma1.Length != n * n || sigma2.Length != n * n)
            throw new ArgumentException($"mu1 ({mu1.Length}), mu2 ({mu2.Length}), sigma1 ({sigma1.Length}), sigma2 ({sigma2.Length}) do not describe the same dimension");
        double meanTerm = 0, traces = 0;
        for (int i = 0; i < n; i++)
        {
            double d = mu1[i] - mu2[i];
            meanTerm += d * d;
            traces += sigma1[i * n + i] + sigma2[i * n + i];
        }
        return meanTerm + traces;
    }

    /// <summary>tr sqrtm(FᵀF·S) for F (r × n) and symmetric PSD S (n × n): the nonzero eigenvalues of FᵀF·S are
    /// those of the symmetric PSD r × r matrix F·S·Fᵀ, so the trace is Σ sqrt(λ) over that (negative rounding
    /// noise counts as 0).</summary>
    public static double TraceSqrtmProductFactored(ReadOnlySpan<double> factor, ReadOnlySpan<double> s, int n)
    {
        int r = factor.Length / n;
        var fs = new double[r * n];
        for (int i = 0; i < r; i++)
        {
            var row = fs.AsSpan(i * n, n);
            for (int k = 0; k < n; k++) FeatureMoments.AddScaled(row, s.Slice(k * n, n), factor[i * n + k]);
        }
        var small = new double[r * r];
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++)
            {
                double dot = 0;
                for (int k = 0; k < n; k++) dot += fs[i * n + k] * factor[j * n + k];
                small[i * r + j] = dot;
            }
        for (int i = 0; i < r; i++)
            for (int j = 0; j < i; j++) small[i * r + j] = small[j * r + i] = (small[i * r + j] + small[j * r + i]) / 2;
        var (values, _) = SymmetricEigen.Decompose(small, r, computeVectors: false);
        double trace = 0;
        foreach (double v in values) trace += Math.Sqrt(Math.Max(v, 0));
        return trace;
    }

    /// <summary>tr sqrtm(A·B) for symmetric positive semi-definite A and B (n×n, row-major). A·B itself is not
    /// symmetric, but it is similar to the symmetric PSD sqrt(A)·B·sqrt(A), whose eigenvalues it shares; the trace
    /// of the principal square root is Σ sqrt(λ). Eigenvalues that rounding pushes below zero count as 0, which is
    /// what the reference gets from scipy's sqrtm by keeping the real part.</summary>
    public static double TraceSqrtmProduct(ReadOnlySpan<double> a, ReadOnlySpan<double> b, int n)
    {
        var sqrtA = SymmetricSqrt(a, n);
        var product = Multiply(Multiply(sqrtA, b, n), sqrtA, n);
        var (values, _) = SymmetricEigen.Decompose(product, n, computeVectors: false);
        double trace = 0;
        foreach (double v in values) trace += Math.Sqrt(Math.Max(v, 0));
        return trace;
    }

    /// <summary>The symmetric PSD square root V·diag(sqrt(max(λ, 0)))·Vᵀ of a symmetric matrix.</summary>
    public static double[] SymmetricSqrt(ReadOnlySpan<double> a, int n)
    {
        var (values, vectors) = SymmetricEigen.Decompose(a, n);
        var root = new double[n * n];
        for (int k = 0; k < n; k++)
        {
            double r = Math.Sqrt(Math.Max(values[k], 0));
            if (r == 0) continue;
            var v = vectors!.AsSpan(k * n, n);
            for (int i = 0; i < n; i++) FeatureMoments.AddScaled(root.AsSpan(i * n, n), v, r * v[i]);
        }
        return root;
    }

    private static double[] Multiply(ReadOnlySpan<double> x, ReadOnlySpan<double> y, int n)
    {
        var result = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            var row = result.AsSpan(i * n, n);
            for (int k = 0; k < n; k++) FeatureMoments.AddScaled(row, y.Slice(k * n, n), x[i * n + k]);
        }
        return result;
    }
}
