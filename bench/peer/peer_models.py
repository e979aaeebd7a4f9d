#!/usr/bin/env python3
"""PyTorch counterparts of our model-level benchmark workloads (group "model" in src/Workloads), built
from the reference implementation ($MASKBIT_REF) with OUR configs (configs/*.yaml of this repository), random
weights and synthetic inputs, so that both sides do the same work:

  small_tokenizer_train_step        fashion_mnist_tokenizer: one training step with the discriminator on (global
                                    step = discriminator_start): forward, VQGANLoss generator mode (adaptive GAN
                                    weight), backward, discriminator mode, backward, clip 1.0, both AdamW steps, EMA
  tokenizer12_encode_decode_b1      maskbit_tokenizer_12bit: model(x), x [1,3,256,256], no_grad
  generator12_sample_step_b2_cfg    maskbit_generator_12bit: sample() with num_steps=1 for 2 labels (CFG: the
                                    forward runs on 4 sequences of 257 tokens); the decode goes to a one-stage,
                                    32-channel tokenizer (16x16 output), as ours does
  small_generator_train_step        fashion_mnist_generator: arccos masking, forward (train), MLM loss, backward,
                                    clip 1.0, AdamW, EMA; batch 64
  generator12_train_step_b8         maskbit_generator_12bit: the same step, batch 8 (for its peak memory)
  tokenizer12_train_step_b1         maskbit_tokenizer_12bit: the small tokenizer's step, batch 1, 256x256, perceptual
                                    term zero (for its peak memory)

The perceptual network is replaced by zero, as in our configs (perceptual_weight 0; the reference would load
torchvision weights). Output: one JSON line per workload with median_ms and, on Linux, rss_before_mb and
peak_rss_mb (resident set before the workload and its peak from there, model building included: VmHWM reset per
workload; MB = 10^6 bytes, as our bench reports them) — the format of peer_pytorch.py.

  MASKBIT_REF=<checkout> python3 bench/peer/peer_models.py [--threads 2] [--only REGEX] [--target-s 2]
      [--omp-wait-policy PASSIVE] [--runs 3]
"""
import argparse
import copy
import gc
import json
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default=".*", help="regex over workload names")
    p.add_argument("--target-s", type=float, default=2.0, help="timed seconds per workload (at least --runs runs)")
    p.add_argument("--runs", type=int, default=1, help="at least this many timed runs")
    p.add_argument("--omp-wait-policy", default=None)
    p.add_argument("--list", action="store_true")
    args, _ = p.parse_known_args()   # peer.sh passes peer_pytorch.py's options too; unknown ones are ignored
    return args


ARGS = parse_args()
if ARGS.omp_wait_policy:
    os.environ["OMP_WAIT_POLICY"] = ARGS.omp_wait_policy   # must be set before torch starts OpenMP

import torch  # noqa: E402
import yaml  # noqa: E402

REF = os.environ.get("MASKBIT_REF")
if not REF or not os.path.isdir(os.path.join(REF, "modeling")):
    sys.exit("peer_models.py: set MASKBIT_REF to a checkout of the reference (github.com/markweberdev/maskbit)")
sys.path.insert(0, REF)
try:
    import einops  # noqa: F401
except ImportError:  # not packaged in Debian: the shared stand-in covers the patterns the reference uses
    shared = os.environ.get("MASKBIT_SHARED") or os.path.join(REPO, "..", "shared")
    sys.path.insert(0, os.path.join(shared, "refshim"))


class Node(dict):
    """YAML mapping with attribute access and .get, enough of OmegaConf for the reference's constructors."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


def to_node(x):
    if isinstance(x, dict):
        return Node({k: to_node(v) for k, v in x.items()})
    if isinstance(x, list):
        return [to_node(v) for v in x]
    if isinstance(x, str):  # PyYAML reads 1e-3 (no dot) as a string; OmegaConf reads it as a float
        try:
            return float(x)
        except ValueError:
            return x
    return x


def load_config(relative):
    with open(os.path.join(REPO, relative)) as f:
        return to_node(yaml.safe_load(f))


class ZeroPerceptual(torch.nn.Module):
    def forward(self, x, y):
        return torch.zeros((), dtype=x.dtype)


def make_tokenizer(vq):
    from modeling.conv_vqgan import ConvVQModel
    return ConvVQModel(vq, legacy=False)


def make_generator(cfg):
    from modeling.bert import LFQBert
    vq, mlm = cfg.model.vq_model, cfg.model.mlm_model
    return LFQBert(img_size=cfg.dataset.preprocessing.resolution, hidden_dim=mlm.hidden_dim,
                   codebook_size=2 ** vq.token_size, codebook_splits=mlm.codebook_splits, depth=mlm.depth,
                   heads=mlm.heads, mlp_dim=mlm.mlp_dim, dropout=mlm.dropout, nclass=mlm.get("nclass", 1000),
                   input_stride=2 ** (vq.num_resolutions - 1), use_prenorm=mlm.get("use_prenorm", False))


def adamw(params, p, lr_key="learning_rate"):
    return torch.optim.AdamW(params, lr=p[lr_key], betas=(p.beta1, p.beta2), weight_decay=p.weight_decay, eps=p.epsilon)


class Ema:
    """shadow -= (1 - decay) * (shadow - param) over the trainable parameters (the reference's EMAModel update)."""

    def __init__(self, params, decay=0.999):
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def step(self):
        torch._foreach_sub_(self.shadow, torch._foreach_mul(torch._foreach_sub(self.shadow, self.params), 1 - self.decay))


WORKLOADS = {}


def workload(name):
    def deco(builder):
        WORKLOADS[name] = builder
        return builder
    return deco


@workload("small_tokenizer_train_step")
def small_tokenizer_train_step():
    return tokenizer_train_step("configs/fashion_mnist_tokenizer.yaml")


@workload("tokenizer12_train_step_b1")
def tokenizer12_train_step():
    return tokenizer_train_step("configs/tokenizer/maskbit_tokenizer_12bit.yaml", batch=1)


def tokenizer_train_step(config, batch=None):
    import modeling.modules.losses as losses
    losses.create_perception_loss = lambda *a, **k: ZeroPerceptual()
    cfg = load_config(config)
    torch.manual_seed(cfg.training.seed)
    model = make_tokenizer(cfg.model.vq_model).train()
    loss_module = losses.VQGANLoss(cfg.model.discriminator, cfg.losses).train()
    p = cfg.optimizer.params
    opt = adamw(model.parameters(), p)
    dopt = adamw(loss_module.parameters(), p, "discriminator_learning_rate")
    ema = Ema(model.parameters()) if cfg.training.use_ema else None
    res, batch = cfg.dataset.preprocessing.resolution, batch or cfg.training.per_gpu_batch_size
    x = torch.rand(batch, cfg.model.vq_model.num_channels, res, res)
    step = cfg.losses.discriminator_start
    max_norm = cfg.training.max_grad_norm

    def fn():
        reconstructions, extra = model(x)
        loss, _ = loss_module(x, reconstructions, extra, step, last_layer=model.decoder.conv_out.weight, mode="gen")
        loss.backward()
        dloss, _ = loss_module(x, reconstructions, extra, step, last_layer=None, mode="disc")
        dloss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_norm)
        dopt.step()
        dopt.zero_grad(set_to_none=True)
        if ema:
            ema.step()
    return fn


@workload("tokenizer12_encode_decode_b1")
def tokenizer12_encode_decode():
    cfg = load_config("configs/tokenizer/maskbit_tokenizer_12bit.yaml")
    torch.manual_seed(0)
    model = make_tokenizer(cfg.model.vq_model).eval()
    res = cfg.dataset.preprocessing.resolution
    x = torch.rand(1, 3, res, res)

    def fn():
        with torch.no_grad():
            model(x)
    return fn


@workload("generator12_sample_step_b2_cfg")
def generator12_sample_step():
    from modeling.modules import sample
    cfg = load_config("configs/generator/maskbit_generator_12bit.yaml")
    torch.manual_seed(0)
    gen = make_generator(cfg).eval()
    tiny = copy.deepcopy(cfg.model.vq_model)
    tiny.update(hidden_channels=32, channel_mult=[1], num_resolutions=1, num_res_blocks=1)
    tok = make_tokenizer(tiny).eval()
    m = cfg.model.mlm_model
    labels = torch.tensor([207, 208])

    def fn():
        torch.manual_seed(0)
        sample(gen, tok, num_samples=2, labels=labels, softmax_temperature=m.softmax_temperature,
               randomize_temperature=m.randomize_temperature, mask_schedule_strategy=m.gen_mask_schedule_strategy,
               num_steps=1, guidance_scale=m.guidance_scale, mask_token=gen.mask_token, patch_size=16,
               guidance_annealing=m.guidance_annealing, use_sampling_annealing=m.use_sampling_annealing,
               scale_pow=m.scale_pow, codebook_size=2 ** cfg.model.vq_model.token_size,
               codebook_splits=m.codebook_splits)
    return fn


@workload("small_generator_train_step")
def small_generator_train_step():
    return generator_train_step("configs/fashion_mnist_generator.yaml")


@workload("generator12_train_step_b8")
def generator12_train_step():
    return generator_train_step("configs/generator/maskbit_generator_12bit.yaml", batch=8)


def generator_train_step(config, batch=None):
    from modeling.modules import MLMLoss, get_mask_tokens
    cfg = load_config(config)
    torch.manual_seed(cfg.training.seed)
    gen = make_generator(cfg).train()
    m = cfg.model.mlm_model
    opt = adamw(gen.parameters(), cfg.optimizer.params)
    ema = Ema(gen.parameters()) if cfg.training.use_ema else None
    loss_module = MLMLoss(cfg.losses.mlm.label_smoothing, cfg.losses.mlm.sum_splits)
    batch = batch or cfg.training.per_gpu_batch_size
    tokens = torch.randint(0, gen.effective_codebook_size, (batch, gen.seq_len, gen.splits))
    labels = torch.randint(0, m.get("nclass", 1000), (batch,))

    def fn():
        masked, masks = get_mask_tokens(tokens, gen.mask_token, mode=m.train_mask_schedule_strategy)
        drop = torch.rand(batch) < m.class_label_dropout
        logits = gen(masked, labels.clone(), drop)
        loss, _ = loss_module(logits, tokens, masks)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), cfg.training.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema:
            ema.step()
    return fn


def status_mb(field):
    """A "Field: N kB" line of /proc/self/status in MB (10^6 bytes), None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) * 1024 / 1e6, 1)
    except OSError:
        pass
    return None


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def measure(fn, target_s, min_runs):
    fn()  # warm-up
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < target_s:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main():
    torch.set_num_threads(ARGS.threads)
    pattern = re.compile(ARGS.only)
    for name, build in WORKLOADS.items():
        if not pattern.search(name):
            continue
        if ARGS.list:
            print(name)
            continue
        row = dict(name=name, group="model", threads=torch.get_num_threads(),
                   variant=ARGS.omp_wait_policy or "default", torch=torch.__version__)
        gc.collect()
        own_peak = reset_peak_rss()
        row["rss_before_mb"] = status_mb("VmRSS")
        try:
            times = measure(build(), ARGS.target_s, ARGS.runs)
            row.update(median_ms=round(statistics.median(times), 3), min_ms=round(min(times), 3), runs=len(times))
            if own_peak:
                row["peak_rss_mb"] = status_mb("VmHWM")
        except Exception as e:  # a row with the error instead of stopping the other workloads
            row["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
