using MaskBit.Autograd;

namespace MaskBit.Tests.Support;

/// <summary>
/// Finite-difference gradient checks against a float64 reference. A test supplies the op under test (float32
/// tensors, our forward and backward) and a plain float64 implementation of the same forward; the checker
/// compares the forward values and compares our analytic gradients of sum(y·R) with central differences of
/// the float64 reference.
/// </summary>
public static class GradCheck
{
    /// <param name="inputs">input values (float64, also rounded to float32 for our op) and shapes.</param>
    /// <param name="op">our op on float32 tensors.</param>
    /// <param name="reference">the float64 forward; returns the output values (any layout matching op's).</param>
    public static void Check(
        IReadOnlyList<(double[] Values, int[] Shape)> inputs,
        Func<Tensor[], Tensor> op,
        Func<double[][], double[]> reference,
        double forwardTol = 1e-5, double gradTol = 1e-3, double h = 1e-4, int seed = 7, bool[]? differentiable = null)
    {
        // Inputs are rounded to float32 first so that both sides see identical values.
        var xs = inputs.Select(i => i.Values.Select(v => (double)(float)v).ToArray()).ToArray();
        var tensors = xs.Select((x, k) => Tensor.FromArray(x.Select(v => (float)v).ToArray(), inputs[k].Shape)
            .RequiresGrad_(differentiable == null || differentiable[k])).ToArray();
        var y = op(tensors);
        var yRef = reference(xs);
        Assert.That(y.Numel, Is.EqualTo(yRef.Length), "output size");
        double fwdErr = Compare.ScaledError(y.ToArray().Select(v => (double)v).ToArray(), yRef);
        Assert.That(fwdErr, Is.LessThanOrEqualTo(forwardTol), $"forward scaled error {fwdErr:E2}");

        var rng = new Random(seed);
        var r = Enumerable.Range(0, yRef.Length).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        y.Mul(Tensor.FromArray(r.Select(v => (float)v).ToArray(), y.Shape)).Sum().Backward();

        for (int k = 0; k < xs.Length; k++)
        {
            if (differentiable != null && !differentiable[k]) continue;
            var numeric = new double[xs[k].Length];
            for (int i = 0; i < xs[k].Length; i++)
            {
                double keep = xs[k][i];
                xs[k][i] = keep + h; double fp = Dot(reference(xs), r);
                xs[k][i] = keep - h; double fm = Dot(reference(xs), r);
                xs[k][i] = keep;
                numeric[i] = (fp - fm) / (2 * h);
            }
            var analytic = tensors[k].Grad?.ToArray().Select(v => (double)v).ToArray() ?? new double[xs[k].Length];
            double err = Compare.ScaledError(analytic, numeric);
            Assert.That(err, Is.LessThanOrEqualTo(gradTol), $"gradient of input {k}: scaled error {err:E2}");
        }
    }

    private static double Dot(double[] a, double[] b) { double s = 0; for (int i = 0; i < a.Length; i++) s += a[i] * b[i]; return s; }

    public static double[] RandomValues(Random rng, int n, double scale = 1.0) =>
        Enumerable.Range(0, n).Select(_ => (rng.NextDouble() * 2 - 1) * scale).ToArray();
}
