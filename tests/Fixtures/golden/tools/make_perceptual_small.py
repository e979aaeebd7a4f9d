"""Makes the golden case `perceptual_small`: the three perceptual networks of the reference and VQGANLoss's ResNet-50
path at small input sizes, for test devices (the other perceptual cases work at 224x224 and run on the CPU only). The reference's PerceptualLoss resizes to a fixed 224; here that one call is redirected to RESIZE x RESIZE
(torch.nn.functional.interpolate with size=224 is wrapped), which keeps every layer of ResNet-50 and ConvNeXt-Small
(their last stage works on a 1x1 map). Formula weights as formula_nets / perceptual_nets. Run from the reference
checkout:

    cd maskbit && python3 <this file> <output folder>

Needs torch 1.13 + torchvision 0.14 (Debian python3-torch, python3-torchvision) and pyyaml; downloads nothing."""
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_perceptual_nets import apply_formula  # noqa: E402
from make_tokenizer_training import Config, formula_state, install_stand_ins  # noqa: E402

RESIZE = 32
RUN = "gen_s1500_rn50_adaptive"


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    sys.path.insert(0, ".")
    install_stand_ins()
    from modeling.modules import perceptual_loss as perceptual_module
    from modeling.modules import lpips as lpips_module
    from modeling.modules.losses import VQGANLoss, create_perception_loss

    interpolate = torch.nn.functional.interpolate

    def small_interpolate(x, size=None, **kwargs):
        return interpolate(x, size=RESIZE if size == 224 else size, **kwargs)
    torch.nn.functional.interpolate = small_interpolate

    golden = HERE.parent
    resnet50 = torchvision.models.resnet50
    perceptual_module.models.resnet50 = lambda weights=None: _loaded(resnet50(weights=None), golden / "formula_nets" / "resnet50_params.json")
    convnext_small = torchvision.models.convnext_small
    convnext_entries = json.loads((golden / "perceptual_nets" / "convnext_s_params.json").read_text())["entries"]

    def formula_convnext(weights=None):
        model = convnext_small(weights=None)
        assert apply_formula(model, 1.0)["entries"] == convnext_entries, "perceptual_nets' ConvNeXt layout changed"
        return model
    perceptual_module.models.convnext_small = formula_convnext
    vgg16 = torchvision.models.vgg16
    lpips_module.models.vgg16 = lambda weights=None: vgg16(weights=None)
    lpips_entries = json.loads((golden / "perceptual_nets" / "lpips_params.json").read_text())["entries"]

    io, f64 = {}, {}
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 40, 40, generator=g)
    io["perceptual.input"] = images
    io["perceptual.target"] = (images + 0.2 * torch.randn(2, 3, 40, 40, generator=g)).clamp(0, 1)
    lp_in = torch.rand(2, 3, 16, 16, generator=g)
    io["lpips_loss.input"] = lp_in
    io["lpips_loss.target"] = (lp_in + 0.15 * torch.randn(2, 3, 16, 16, generator=g)).clamp(0, 1)

    # VQGANLoss's generator objective of vqgan_loss's run gen_s1500_rn50_adaptive, on that case's inputs and module.
    vq = golden / "vqgan_loss"
    vq_io = np.load(vq / "io.npz")
    for name in ("inputs", "features", "last_layer.weight", "last_layer.bias", "extra.commitment_loss", "extra.per_sample_entropy",
                 "extra.avg_entropy", "extra.entropy_loss", "extra.quantizer_loss"):
        io[name] = torch.from_numpy(vq_io[name])
    vq_run = next(r for r in json.loads((vq / "case.json").read_text())["meta"]["runs"] if r["name"] == RUN)
    config = Config(yaml.safe_load((vq / "config.yaml").read_text()))
    config["losses"].update(vq_run["overrides"])
    vq_state = torch.load(vq / "model.bin")

    for dtype, store in ((torch.float32, io), (torch.float64, f64)):
        for net in ("resnet50", "convnext_s"):
            for on_logits, variant in ((True, "on_logits"), (False, "on_features_and_logits")):
                loss_module = create_perception_loss(net, on_logits).to(dtype)
                inp = io["perceptual.input"].to(dtype).clone().requires_grad_(True)
                loss = loss_module(inp, io["perceptual.target"].to(dtype))
                loss.backward()
                store[f"perceptual_{net}.{variant}.loss"] = loss.detach()
                store[f"perceptual_{net}.{variant}.grad_input"] = inp.grad

        lpips = create_perception_loss("lpips")
        assert apply_formula(lpips, math.sqrt(2.0), fixed_ok=True)["entries"] == lpips_entries, "perceptual_nets' LPIPS layout changed"
        if dtype == torch.float32:
            for e in lpips_entries:
                if e["rule"] == "fixed":
                    io[f"lpips.fixed.{e['name']}"] = lpips.state_dict()[e["name"]].clone()
        lpips = lpips.to(dtype)
        inp = io["lpips_loss.input"].to(dtype).clone().requires_grad_(True)
        loss = lpips(inp, io["lpips_loss.target"].to(dtype)).mean()   # as VQGANLoss reduces it
        loss.backward()
        store["lpips_loss.loss"] = loss.detach()
        store["lpips_loss.grad_input"] = inp.grad

        module = VQGANLoss(config.model.discriminator, config.losses)
        module.load_state_dict(vq_state, strict=False)
        module = module.to(dtype)
        weight = io["last_layer.weight"].to(dtype).clone().requires_grad_(True)
        bias = io["last_layer.bias"].to(dtype).clone().requires_grad_(True)
        features = io["features"].to(dtype).clone().requires_grad_(True)
        quantizer_loss = io["extra.quantizer_loss"].to(dtype).clone().requires_grad_(True)
        entropy_loss = io["extra.entropy_loss"].to(dtype).clone().requires_grad_(True)
        extra = {"quantizer_loss": quantizer_loss * 1.0, "entropy_loss": entropy_loss * 1.0}   # non-leaf: added to in place
        for k in ("commitment_loss", "per_sample_entropy", "avg_entropy"):
            extra[k] = io[f"extra.{k}"].to(dtype)
        reconstructions = torch.nn.functional.conv2d(features, weight, bias, padding=1)
        loss, loss_dict = module(io["inputs"].to(dtype), reconstructions, extra, global_step=vq_run["global_step"],
                                 last_layer=weight, mode="gen")
        store[f"{RUN}.loss"] = loss.detach()
        for k, v in loss_dict.items():
            store[f"{RUN}.loss_dict.{k}"] = torch.as_tensor(v).detach().to(dtype)
        loss.backward()
        for name, t in (("last_layer.weight", weight), ("last_layer.bias", bias), ("features", features),
                        ("extra.quantizer_loss", quantizer_loss), ("extra.entropy_loss", entropy_loss)):
            store[f"{RUN}.grad.{name}"] = t.grad

    check = {}
    for name, v64 in f64.items():
        a, b = io[name].double(), v64.double()
        check[name] = {"max_rel": float((a - b).abs().max() / max(float(b.abs().max()), 1e-30)),
                       "l2_rel": float((a - b).norm() / max(float(b.norm()), 1e-30))}
    shutil.copy(vq / "config.yaml", out / "config.yaml")
    shutil.copy(vq / "model.bin", out / "model.bin")
    np.savez(out / "io.npz", **{k: v.detach().numpy().astype(np.float32) for k, v in io.items()})
    inputs = [k for k in io if k.endswith(("input", "target")) or k.startswith(("lpips.fixed.", "extra.", "last_layer."))
              or k in ("inputs", "features")]
    case = {
        "kind": "perceptual_small", "case": "perceptual_small",
        "description": f"PerceptualLoss('resnet50' / 'convnext_s') resizing to {RESIZE}x{RESIZE}, LPIPS at 16x16 and VQGANLoss's "
                       f"{RUN} run at that resize, formula weights: the perceptual networks on the ILGPU CPU emulator",
        "produced_with": f"reference PyTorch implementation (PyTorch {torch.__version__}, torchvision {torchvision.__version__}, CPU)",
        "files": {"io": "io.npz", "config": "config.yaml", "model": "model.bin",
                  "resnet50_params": "../formula_nets/resnet50_params.json",
                  "convnext_s_params": "../perceptual_nets/convnext_s_params.json",
                  "lpips_params": "../perceptual_nets/lpips_params.json"},
        "inputs": inputs, "outputs": [k for k in io if k not in inputs],
        "meta": {"resize": RESIZE, "run": vq_run},
        "float64_check": check,
    }
    (out / "case.json").write_text(json.dumps(case, indent=1))
    for k, v in io.items():
        print(k, tuple(v.shape), float(v.detach().abs().max()))
    print(json.dumps(check, indent=1))


def _loaded(model, params_path):
    model.load_state_dict(formula_state(params_path))
    return model


if __name__ == "__main__":
    main(sys.argv[1])
