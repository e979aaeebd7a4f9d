using MaskBit.Autograd;
using MaskBit.Autograd.Nn;

namespace MaskBit.Models.Training;

/// <summary>experiment.log_grad_norm_every's values: per parameter with a gradient, ‖g‖₂ / numel (the reference's
/// log_grad_norm divides the norm by the element count) as <c>grad_norm/&lt;parameter name&gt;</c>, computed on the
/// device and downloaded in one transfer.</summary>
public static class GradientNorms
{
    public static Dictionary<string, double> PerParameter(Module module)
    {
        var withGradients = module.NamedParameters().Where(p => p.Tensor.Grad != null).ToList();
        if (withGradients.Count == 0) return new Dictionary<string, double>();
        float[] norms;
        using (Tape.NoGrad())
        using (TensorScope.Begin())
            norms = Tensor.Items(withGradients.Select(p => p.Tensor.Grad!.Square().Sum().Sqrt()).ToList());
        return withGradients.Select((p, i) => (p.Name, Norm: (double)norms[i] / p.Tensor.Numel))
            .ToDictionary(x => "grad_norm/" + x.Name, x => x.Norm);
    }
}
