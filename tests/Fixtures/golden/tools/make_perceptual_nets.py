"""Makes the golden case `perceptual_nets`: the reference's other two perceptual losses, ConvNeXt-Small
(PerceptualLoss("convnext_s"), on logits and on features + logits) and LPIPS (create_perception_loss("lpips")),
with deterministic "formula" weights (the rule of formula_nets). Run from the reference checkout:

    cd maskbit && python3 <this file> <output folder>

Needs torch 1.13 + torchvision 0.14 (Debian python3-torch, python3-torchvision); downloads nothing: the
torchvision constructors are called with weights=None and the formula weights are loaded instead."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

FORMULA = ("Tensor number t (0-based position in state_dict() order, every entry counted), element k (0-based row-major "
           "flat index). With 64-bit integers h = (31*k*k + 17*k + 7919*t + 12345) mod 65521 and, in float64, "
           "v = (2.0*h) / 65521.0 - 1.0 (in [-1, 1)), each value is computed in float64 exactly as written (left to right) "
           "and then rounded to float32:\n  conv_or_linear_weight: v * sqrt(3.0 / fan_in) * gain, fan_in = numel / shape[0]\n"
           "  bias (conv / linear):  v * 0.02\n  ln_weight:             1.0 + v * 0.1\n  ln_bias:               v * 0.05\n"
           "  layer_scale:           0.1 + v * 0.05\n"
           "  fixed:                 not a formula; the value is stored in io.npz as lpips.fixed.<name> (LPIPS's "
           "scaling-layer constants; its linear heads are 1x1 convs with formula weights)")
RULES = {  # rule: (offset, factor, uses gain)
    "bias": (0.0, 0.02, False), "ln_weight": (1.0, 0.1, False), "ln_bias": (0.0, 0.05, False), "layer_scale": (0.1, 0.05, False),
}


def formula(t, shape, rule, gain):
    numel = int(np.prod(shape))
    k = np.arange(numel, dtype=np.int64)
    h = (31 * k * k + 17 * k + 7919 * t + 12345) % 65521
    v = (2.0 * h) / 65521.0 - 1.0
    if rule == "conv_or_linear_weight":
        return (v * math.sqrt(3.0 / (numel / shape[0])) * gain).reshape(shape)
    offset, factor, _ = RULES[rule]
    return (offset + v * factor).reshape(shape)


def rule_of(model, name):
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if leaf == "layer_scale":
        return "layer_scale"
    if isinstance(module, (torch.nn.LayerNorm,)):
        return "ln_weight" if leaf == "weight" else "ln_bias"
    if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
        return "conv_or_linear_weight" if leaf == "weight" else "bias"
    return "fixed"


def apply_formula(model, gain, fixed_ok=False):
    entries, state = [], model.state_dict()
    for t, (name, value) in enumerate(state.items()):
        rule = rule_of(model, name)
        if rule == "fixed" and not fixed_ok:
            raise ValueError(name)
        if rule != "fixed":
            value.copy_(torch.from_numpy(formula(t, tuple(value.shape), rule, gain)).float())
        entries.append({"t": t, "name": name, "shape": list(value.shape), "dtype": "float32", "rule": rule})
    model.load_state_dict(state)
    return {"network": type(model).__name__, "gain": gain, "formula": FORMULA, "entries": entries}


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    sys.path.insert(0, ".")
    from modeling.modules import perceptual_loss as perceptual_module
    from modeling.modules import lpips as lpips_module
    from modeling.modules.losses import create_perception_loss

    params = {}
    convnext_small = torchvision.models.convnext_small

    def formula_convnext(weights=None):
        model = convnext_small(weights=None)
        params["convnext_s"] = apply_formula(model, 1.0)
        return model
    perceptual_module.models.convnext_small = formula_convnext
    vgg16 = torchvision.models.vgg16
    lpips_module.models.vgg16 = lambda weights=None: vgg16(weights=None)

    io, f64 = {}, {}
    g = torch.Generator().manual_seed(1)
    xs = torch.linspace(0, 1, 64)
    smooth = (torch.sin(6 * xs)[None, :] * torch.cos(4 * xs)[:, None])
    net_input = torch.stack([torch.randn(3, 64, 64, generator=g), torch.stack([smooth, smooth.t(), smooth * 0.5])])
    io["convnext.input"] = net_input
    images = torch.rand(2, 3, 48, 48, generator=g)
    io["perceptual.input"] = images
    io["perceptual.target"] = (images + 0.2 * torch.randn(2, 3, 48, 48, generator=g)).clamp(0, 1)
    lp_in = torch.rand(2, 3, 32, 32, generator=g)
    io["lpips_loss.input"] = lp_in
    io["lpips_loss.target"] = (lp_in + 0.15 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)

    for dtype, store in ((torch.float32, io), (torch.float64, f64)):
        for on_logits, variant in ((True, "on_logits"), (False, "on_features_and_logits")):
            loss_module = create_perception_loss("convnext_s", on_logits).to(dtype)
            if on_logits:
                backbone = loss_module.model
                with torch.no_grad():
                    x = io["convnext.input"].to(dtype)
                    store["convnext.features"] = backbone.features(x)
                    store["convnext.logits"] = backbone(x)
            inp = io["perceptual.input"].to(dtype).clone().requires_grad_(True)
            loss = loss_module(inp, io["perceptual.target"].to(dtype))
            loss.backward()
            store[f"perceptual_convnext.{variant}.loss"] = loss.detach()
            store[f"perceptual_convnext.{variant}.grad_input"] = inp.grad
        lpips = create_perception_loss("lpips").to(dtype)
        if dtype == torch.float32:
            params["lpips"] = apply_formula(lpips, math.sqrt(2.0), fixed_ok=True)
            lpips_state = {k: v.clone() for k, v in lpips.state_dict().items()}
            for e in params["lpips"]["entries"]:
                if e["rule"] == "fixed":
                    io[f"lpips.fixed.{e['name']}"] = lpips_state[e["name"]]
        else:
            lpips.load_state_dict({k: v.double() for k, v in lpips_state.items()})
        inp = io["lpips_loss.input"].to(dtype).clone().requires_grad_(True)
        loss = lpips(inp, io["lpips_loss.target"].to(dtype)).mean()   # as VQGANLoss reduces it
        loss.backward()
        store["lpips_loss.loss"] = loss.detach()
        store["lpips_loss.grad_input"] = inp.grad

    check = {}
    for name, v64 in f64.items():
        a, b = io[name].double(), v64
        check[name] = {"max_rel": float((a - b).abs().max() / b.abs().max()), "l2_rel": float((a - b).norm() / b.norm())}
    for net, p in params.items():
        (out / f"{net}_params.json").write_text(json.dumps(p, indent=1))
    np.savez(out / "io.npz", **{k: v.detach().numpy().astype(np.float32) for k, v in io.items()})
    inputs = [k for k in io if k.endswith(("input", "target")) or k.startswith("lpips.fixed.")]
    case = {
        "kind": "perceptual_nets", "case": "perceptual_nets",
        "description": "ConvNeXt-Small (PerceptualLoss('convnext_s')) and LPIPS (create_perception_loss('lpips')) with formula weights",
        "produced_with": f"reference PyTorch implementation (PyTorch {torch.__version__}, torchvision {torchvision.__version__}, CPU)",
        "files": {"io": "io.npz", "convnext_s_params": "convnext_s_params.json", "lpips_params": "lpips_params.json"},
        "inputs": inputs, "outputs": [k for k in io if k not in inputs],
        "meta": {"formula": FORMULA, "convnext_s_gain": 1.0, "lpips_vgg_gain": math.sqrt(2.0)},
        "float64_check": check,
    }
    (out / "case.json").write_text(json.dumps(case, indent=1))
    for k, v in io.items():
        print(k, tuple(v.shape), float(v.detach().abs().max()))
    print(json.dumps(check, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
