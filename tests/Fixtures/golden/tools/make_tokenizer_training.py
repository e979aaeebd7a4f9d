"""Makes the golden cases `tokenizer_training_rn50` and `tokenizer_training_lpips`: two optimisation steps of the
reference's tokenizer training (scripts/train_tokenizer.py's loop body, without accelerate) with the perceptual term
on: ConvVQModel (LFQ) + VQGANLoss (weight 0.1; PerceptualLoss("resnet50") on logits with the formula ResNet-50 of
formula_nets at 32x32 images, or LPIPS with the formula weights of perceptual_nets at 16x16 images and a tokenizer of
32 channels at every level, sizes the ILGPU CPU emulator runs in seconds) + NLayerDiscriminatorv2, AdamW for both, cosine_with_minimum schedules,
clip_grad_norm_, EMAModel. The output folder's name picks the case. Run from the reference checkout:

    cd maskbit && python3 <this file> <output folder>

Needs torch 1.13 + torchvision 0.14 (Debian python3-torch, python3-torchvision) and pyyaml; downloads nothing.
einops and omegaconf, which the reference imports, are replaced by the few lines below when not installed."""
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torchvision
import yaml

HERE = Path(__file__).resolve().parent
CASES = {  # folder name: (perceptual_loss, image resolution, the tokenizer's channel_mult)
    "tokenizer_training_rn50": ("resnet50", 32, "[1, 1, 2]"),
    "tokenizer_training_lpips": ("lpips", 16, "[1, 1, 1]"),
}
CONFIG = """\
experiment:
  name: golden_{case}
model:
  vq_model:
    model_class: vqgan+
    quantizer_type: lookup-free
    codebook_size: 256
    token_size: 8
    commitment_cost: 0.25
    entropy_loss_weight: 0.02
    entropy_loss_temperature: 0.01
    entropy_gamma: 1.0
    num_channels: 3
    hidden_channels: 32
    channel_mult: {channel_mult}
    num_resolutions: 3
    num_res_blocks: 1
    sample_with_conv: true
  discriminator:
    name: VQGAN+Discriminator
    num_channels: 3
    num_stages: 2
    hidden_channels: 32
    blur_resample: true
    blur_kernel_size: 4
losses:
  quantizer_weight: 1.0
  perceptual_loss: {perceptual}
  perceptual_weight: 0.1
  perceptual_loss_on_logits: true
  reconstruction_loss: l2
  reconstruction_weight: 4.0
  discriminator_start: 0
  discriminator_loss: hinge
  discriminator_factor: 1.0
  discriminator_weight: 0.02
  discriminator_gradient_penalty: none
  discriminator_penalty_cost: 10.0
  lecam_regularization_weight: 0.001
  entropy_annealing_steps: 2000
  entropy_annealing_factor: 2.0
dataset:
  preprocessing:
    resolution: {resolution}
optimizer:
  name: adamw
  params:
    learning_rate: 1.0e-4
    discriminator_learning_rate: 1.0e-4
    scale_lr: false
    beta1: 0.9
    beta2: 0.999
    weight_decay: 1.0e-4
    epsilon: 1.0e-8
lr_scheduler:
  scheduler: cosine_with_minimum
  params:
    learning_rate: 1.0e-4
    warmup_steps: 0
training:
  gradient_accumulation_steps: 1
  per_gpu_batch_size: 2
  mixed_precision: "no"
  use_ema: true
  seed: 42
  max_train_steps: 4
  max_grad_norm: 1.0
"""
STEPS = 2


class Config(dict):
    """Attribute access and .get, as OmegaConf's DictConfig gives the reference."""
    def __getattr__(self, key):
        try:
            value = self[key]
        except KeyError as e:
            raise AttributeError(key) from e
        return Config(value) if isinstance(value, dict) else value


def install_stand_ins():
    try:
        import einops  # noqa: F401
    except ImportError:
        einops = types.ModuleType("einops")
        perms = {"b c h w -> b h w c": (0, 2, 3, 1), "b h w c -> b c h w": (0, 3, 1, 2), "b h w c -> b h w c": (0, 1, 2, 3)}

        def rearrange(t, pattern):
            if pattern in perms:
                return t.permute(*perms[pattern])
            if pattern == "b h w c -> (b h w) c":
                return t.reshape(-1, t.shape[-1])
            raise NotImplementedError(pattern)

        def reduce(t, pattern, op):
            assert pattern == "b h w c -> b h w" and op == "sum", (pattern, op)
            return t.sum(dim=-1)
        einops.rearrange, einops.reduce = rearrange, reduce
        sys.modules["einops"] = einops


def formula_state(params_path):
    """The formula weights of formula_nets (README there) for every entry of a params file."""
    spec = json.loads(Path(params_path).read_text())
    rules = {"bias": (0.0, 0.02), "bn_weight": (1.0, 0.1), "bn_bias": (0.0, 0.05), "bn_running_mean": (0.0, 0.05),
             "bn_running_var": (1.0, 0.1)}
    state = {}
    for e in spec["entries"]:
        shape, t = tuple(e["shape"]), e["t"]
        if e["rule"] == "num_batches_tracked":
            state[e["name"]] = torch.zeros(shape, dtype=torch.int64)
            continue
        numel = int(np.prod(shape))
        k = np.arange(numel, dtype=np.int64)
        v = (2.0 * ((31 * k * k + 17 * k + 7919 * t + 12345) % 65521)) / 65521.0 - 1.0
        if e["rule"] == "conv_or_linear_weight":
            value = v * math.sqrt(3.0 / (numel / shape[0])) * spec["gain"]
        else:
            offset, factor = rules[e["rule"]]
            value = offset + v * factor
        state[e["name"]] = torch.from_numpy(value.reshape(shape)).float()
    return state


def perturb_group_norms(module, generator):
    """As every golden case: GroupNorm affine parameters get small noise so that dropping one fails."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(0.02 * torch.randn(m.bias.shape, generator=generator))


def train(config, model, loss_module, images, dtype):
    """The loop body of scripts/train_tokenizer.py for len(images) steps (one process, no accumulation)."""
    from modeling.modules import EMAModel
    from utils.lr_schedulers import get_scheduler
    model, loss_module = model.to(dtype), loss_module.to(dtype)
    o = config.optimizer.params
    optimizer = torch.optim.AdamW(list(model.parameters()), lr=o.learning_rate, betas=(o.beta1, o.beta2),
                                  weight_decay=o.weight_decay, eps=o.epsilon)
    discriminator_optimizer = torch.optim.AdamW(list(loss_module.parameters()), lr=o.discriminator_learning_rate,
                                                betas=(o.beta1, o.beta2), weight_decay=o.weight_decay, eps=o.epsilon)
    t = config.training
    lr_scheduler = get_scheduler(config.lr_scheduler.scheduler, optimizer=optimizer, num_training_steps=t.max_train_steps,
                                 num_warmup_steps=config.lr_scheduler.params.warmup_steps)
    discriminator_lr_scheduler = get_scheduler(
        config.lr_scheduler.scheduler, optimizer=discriminator_optimizer,
        num_training_steps=t.max_train_steps - config.losses.discriminator_start,
        num_warmup_steps=config.lr_scheduler.params.warmup_steps)
    ema_model = EMAModel(model.parameters(), decay=0.999)
    out, min_abs_z, indices = {}, [], []
    model.train()
    for global_step, batch in enumerate(images):
        batch = batch.to(dtype)
        s = f"step{global_step}."
        out[s + "lr"] = torch.tensor(lr_scheduler.get_last_lr()[0])
        out[s + "lr_discriminator"] = torch.tensor(discriminator_lr_scheduler.get_last_lr()[0])
        z = model.encoder(batch)
        min_abs_z.append(float(z.detach().abs().min()))
        reconstructed_images, extra_results_dict = model(batch)
        indices.append(extra_results_dict["min_encoding_indices"].detach().clone())
        autoencoder_loss, loss_dict = loss_module(batch, reconstructed_images, extra_results_dict, global_step,
                                                  last_layer=model.get_last_layer(), mode="gen")
        for k, v in loss_dict.items():
            out[s + "loss_dict." + k] = torch.as_tensor(v).detach().clone()
        autoencoder_loss.backward()
        # The generator objective leaves the discriminator without gradients: VQGANLoss switches its requires_grad
        # off before calling it (gan_utils.toggle_off_gradients), so the discriminator step sees its own only.
        assert all(p.grad is None for p in loss_module.parameters())
        out[s + "grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if loss_module.should_discriminator_be_trained(global_step):
            discriminator_loss, loss_dict_discriminator = loss_module(batch, reconstructed_images, extra_results_dict,
                                                                      global_step=global_step, last_layer=model.get_last_layer(), mode="disc")
            for k, v in loss_dict_discriminator.items():
                out[s + "discriminator_loss_dict." + k] = torch.as_tensor(v).detach().clone()
            discriminator_loss.backward()
            out[s + "discriminator_grad_norm"] = torch.nn.utils.clip_grad_norm_(loss_module.parameters(), t.max_grad_norm)
            discriminator_optimizer.step()
            discriminator_lr_scheduler.step()
            discriminator_optimizer.zero_grad(set_to_none=True)
        ema_model.step(model.parameters())
    for name, p in model.named_parameters():
        out["after.model." + name] = p.detach().clone()
    for (name, _), shadow in zip(model.named_parameters(), ema_model.shadow_params):
        out["after.ema." + name] = shadow.detach().clone()
    for name, p in loss_module.discriminator.named_parameters():
        out["after.discriminator." + name] = p.detach().clone()
    out["after.ema_real_logits_mean"] = loss_module.ema_real_logits_mean.detach().clone()
    out["after.ema_fake_logits_mean"] = loss_module.ema_fake_logits_mean.detach().clone()
    return out, min(min_abs_z), indices


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    sys.path.insert(0, ".")
    install_stand_ins()
    from modeling.conv_vqgan import ConvVQModel
    from modeling.modules import VQGANLoss
    from modeling.modules import perceptual_loss as perceptual_module
    from modeling.modules import lpips as lpips_module

    perceptual, resolution, channel_mult = CASES[out.name]
    config_text = CONFIG.format(case=out.name, perceptual=perceptual, resolution=resolution, channel_mult=channel_mult)
    resnet50_params = HERE.parent / "formula_nets" / "resnet50_params.json"
    resnet50 = torchvision.models.resnet50

    def formula_resnet50(weights=None):
        model = resnet50(weights=None)
        model.load_state_dict(formula_state(resnet50_params))
        return model
    perceptual_module.models.resnet50 = formula_resnet50

    # LPIPS: torchvision's VGG16 built without a download; the formula weights of perceptual_nets replace it and the
    # linear heads after the reference's constructor has loaded pretrained/vgg_lpips.pth.
    lpips_params = HERE.parent / "perceptual_nets" / "lpips_params.json"
    vgg16 = torchvision.models.vgg16
    lpips_module.models.vgg16 = lambda weights=None: vgg16(weights=None)
    sys.path.insert(0, str(HERE))
    from make_perceptual_nets import apply_formula

    def new_loss_module():
        loss_module = VQGANLoss(config.model.discriminator, config.losses)
        if perceptual == "lpips":
            entries = apply_formula(loss_module.perceptual_loss, math.sqrt(2.0), fixed_ok=True)["entries"]
            assert entries == json.loads(lpips_params.read_text())["entries"], "perceptual_nets' LPIPS layout changed"
        return loss_module

    config = Config(yaml.safe_load(config_text))
    for seed in range(100):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(1000 + seed)
        model = ConvVQModel(config.model.vq_model)
        perturb_group_norms(model, g)
        loss_module = new_loss_module()
        perturb_group_norms(loss_module.discriminator, g)
        with torch.no_grad():   # non-zero on purpose
            loss_module.ema_real_logits_mean.fill_(0.25)
            loss_module.ema_fake_logits_mean.fill_(-0.15)
        res = config.dataset.preprocessing.resolution
        images = torch.rand(STEPS, config.training.per_gpu_batch_size, 3, res, res, generator=g)
        model_state = {k: v.clone() for k, v in model.state_dict().items()}
        loss_state = {k: v.clone() for k, v in loss_module.state_dict().items() if not k.startswith("perceptual_loss.")}
        io, margin, indices = train(config, model, loss_module, images, torch.float32)
        # float64: the same weights and images
        model64 = ConvVQModel(config.model.vq_model)
        model64.load_state_dict(model_state)
        loss64 = new_loss_module()
        loss64.load_state_dict(loss_state, strict=False)
        f64, _, indices64 = train(config, model64, loss64, images, torch.float64)
        same = all(torch.equal(a, b) for a, b in zip(indices, indices64))
        print(f"seed {seed}: min |z| {margin:.2e}, float64 indices equal: {same}")
        if margin >= 1e-4 and same:
            break
    else:
        raise RuntimeError("no seed with a safe quantization margin")

    for i in range(STEPS):
        io[f"step{i}.images"] = images[i]
    torch.save(model_state, out / "model.bin")
    torch.save(loss_state, out / "loss.bin")
    (out / "config.yaml").write_text(config_text)

    # float64 check: losses, norms, and the parameter updates (after − before) of each group.
    before = {"after.model." + k: v for k, v in model_state.items()}
    before.update({"after.ema." + k: v for k, v in model_state.items()})
    before.update({"after." + k: v for k, v in loss_state.items() if k.startswith("discriminator.")})
    check, updates = {}, {}
    for name, v64 in f64.items():
        a, b = io[name].double(), v64.double()
        if name in before:
            a, b = a - before[name].double(), b - before[name].double()
            group = name.split(".")[1]
            updates.setdefault(group, []).append((a, b))
            continue
        check[name] = float((a - b).abs().max() / max(float(b.abs().max()), 1e-30))
    lr = float(config.optimizer.params.learning_rate)
    for group, pairs in updates.items():
        diff = torch.cat([(a - b).flatten() for a, b in pairs])
        ref = torch.cat([b.flatten() for _, b in pairs])
        check[f"update.{group}"] = {
            "pooled_l2": float(diff.norm() / ref.norm()),
            "max_abs_over_lr": float(diff.abs().max() / lr),
            "elements_off_by_over_lr_over_10": int((diff.abs() > lr / 10).sum()),
            "elements": int(diff.numel()),
        }

    inputs = [f"step{i}.images" for i in range(STEPS)]
    files = {"io": "io.npz", "config": "config.yaml", "model": "model.bin", "loss": "loss.bin"}
    if perceptual == "lpips":
        lpips_state = loss_module.perceptual_loss.state_dict()
        for e in json.loads(lpips_params.read_text())["entries"]:
            if e["rule"] == "fixed":   # the scaling layer's constants, as perceptual_nets stores them
                io[f"lpips.fixed.{e['name']}"] = lpips_state[e["name"]]
                inputs.append(f"lpips.fixed.{e['name']}")
        files["lpips_params"] = "../perceptual_nets/lpips_params.json"
    else:
        files["resnet50_params"] = "../formula_nets/resnet50_params.json"
    np.savez(out / "io.npz", **{k: v.detach().numpy().astype(np.float32) for k, v in io.items()})
    case = {
        "kind": "tokenizer_training", "case": out.name,
        "description": "two optimisation steps of scripts/train_tokenizer.py's loop body with the perceptual term "
                       f"({'formula ResNet-50' if perceptual == 'resnet50' else 'LPIPS with formula weights'}, weight 0.1): "
                       "tokenizer, discriminator, both AdamW + schedules, clipping, EMA",
        "produced_with": f"reference PyTorch implementation (PyTorch {torch.__version__}, torchvision {torchvision.__version__}, CPU)",
        "files": files,
        "inputs": inputs, "outputs": [k for k in io if k not in inputs],
        "meta": {"steps": STEPS, "seed": seed, "quantization_margin": margin,
                 "quantization_margin_meaning": "min |z| over the encoder outputs of both steps (LFQ sign test)",
                 "perceptual": "formula_resnet50" if perceptual == "resnet50" else "formula_lpips",
                 "ema_real_logits_mean_init": 0.25, "ema_fake_logits_mean_init": -0.15},
        "float64_check": check,
    }
    (out / "case.json").write_text(json.dumps(case, indent=1))
    print(json.dumps(check, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
