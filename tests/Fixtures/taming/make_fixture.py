"""Makes the Taming VQGAN and PatchGAN parity fixtures in this folder from the reference implementation.

Developer tool, never run in CI. Needs PyTorch and NumPy (Debian: apt-get install -y python3-torch) and a
checkout of the reference (github.com/markweberdev/maskbit):

    /usr/bin/python3 tests/Fixtures/taming/make_fixture.py /tmp/maskbit-ref

Writes (fixed seed, random init, reduced sizes so the files stay small):
  config.yaml            the reduced tokenizer as a MaskBit config (model_class taming, ddconfig overrides)
  tokenizer.bin          its state dict (torch zip); keys as the official Taming checkpoint
  io.npz                 input, target, tokens, z_quantized, reconstruction, decoded_from_tokens, the quantizer
                         losses, total_loss = mse(reconstruction, target) + quantizer_loss and its input gradient
  official_keys.txt      every state-dict key of the official OriginalVQModel with its shape (name, then the
                         dimensions separated by spaces), in torch's order
  lightning.ckpt         a tiny checkpoint laid out like the official Taming one (PyTorch Lightning 1.0: state_dict
                         beside epoch, callbacks keyed by callback class, optimizer states)
  discriminator.bin      the reference's OriginalNLayerDiscriminator (BatchNorm PatchGAN) as initialised by
                         create_discriminator (name "Original")
  discriminator_io.npz   input, train-mode logits, r and the input gradient of sum(logits · r), the BatchNorm
                         buffers after that forward (after.*) and the eval-mode logits with them
"""
import importlib
import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))

# Reduced Taming ddconfig: two levels (one stride-2 step), a channel change (nin_shortcut), attention at 8×8.
DDCONFIG = dict(double_z=False, z_channels=32, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=(2, 1),
                num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)
CODEBOOK_SIZE, TOKEN_SIZE, COMMITMENT_COST = 64, 16, 0.25
DISCRIMINATOR = dict(num_channels=3, hidden_channels=8, num_stages=3)


def import_reference(root):
    """Imports the reference modules needed here without the package __init__ files (they pull in torchvision
    and the lookup-free quantizer), with a stand-in for einops (only the rearrange patterns SimpleVectorizer uses)."""
    sys.path.insert(0, root)

    def rearrange(x, pattern):
        if pattern == "b c h w -> b h w c":
            return x.permute(0, 2, 3, 1)
        if pattern == "b h w c -> b c h w":
            return x.permute(0, 3, 1, 2)
        if pattern == "b h w c -> (b h w) c":
            return x.reshape(-1, x.shape[-1])
        raise NotImplementedError(pattern)

    sys.modules["einops"] = types.SimpleNamespace(rearrange=rearrange)

    def bare_package(name):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, *name.split("."))]
        sys.modules[name] = package
        return package

    quantizer = bare_package("modeling.quantizer")
    quantizer.SimpleVectorizer = importlib.import_module("modeling.quantizer.quantizer").SimpleVectorizer
    modules = bare_package("modeling.modules")
    modules.BaseModel = importlib.import_module("modeling.modules.base_model").BaseModel
    discriminator = importlib.import_module("modeling.modules.discriminator")
    modules.OriginalNLayerDiscriminator = discriminator.OriginalNLayerDiscriminator
    modules.NLayerDiscriminatorv2 = discriminator.NLayerDiscriminatorv2
    return (importlib.import_module("modeling.taming_vqgan"), importlib.import_module("modeling.modules.gan_utils"))


def reduced_taming(taming_vqgan):
    """The reference's OriginalVQModel wrapper (its encode/decode/forward run unchanged) around reduced parts;
    its constructor hard-codes the official sizes."""
    model = taming_vqgan.OriginalVQModel.__new__(taming_vqgan.OriginalVQModel)
    taming_vqgan.BaseModel.__init__(model)
    model.encoder = taming_vqgan.Encoder(**DDCONFIG)
    model.decoder = taming_vqgan.Decoder(**DDCONFIG)
    model.quantize = taming_vqgan.VectorQuantizer(CODEBOOK_SIZE, TOKEN_SIZE, commitment_cost=COMMITMENT_COST)
    model.quant_conv = torch.nn.Conv2d(DDCONFIG["z_channels"], TOKEN_SIZE, 1)
    model.post_quant_conv = torch.nn.Conv2d(TOKEN_SIZE, DDCONFIG["z_channels"], 1)
    return model


def nearest_code_margin(model, x):
    """Smallest gap (float64) between the nearest and second-nearest codebook distance over all positions, in
    units of the float32 rounding of the distances (‖z‖² dominates them): a large margin makes the token choice
    insensitive to float32 differences between implementations."""
    with torch.no_grad():
        z = model.quant_conv(model.encoder(x * 2.0 - 1.0)).double().permute(0, 2, 3, 1).reshape(-1, TOKEN_SIZE)
        d = torch.cdist(z, model.quantize.embedding.weight.double()) ** 2
        two = d.topk(2, dim=1, largest=False).values
        rounding = torch.finfo(torch.float32).eps * d.max()
    return ((two[:, 1] - two[:, 0]).min() / rounding).item()


def write_config(path):
    d = DDCONFIG
    with open(path, "w") as f:
        f.write("# Written by make_fixture.py: the reduced Taming VQGAN of tokenizer.bin.\n")
        f.write("model:\n    vq_model:\n        model_class: taming\n        quantizer_type: lookup\n")
        f.write(f"        codebook_size: {CODEBOOK_SIZE}\n        token_size: {TOKEN_SIZE}\n        commitment_cost: {COMMITMENT_COST}\n")
        f.write("        ddconfig:\n")
        for key in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "z_channels", "in_channels", "out_ch"):
            value = d[key]
            f.write(f"            {key}: {list(value) if isinstance(value, tuple) else value}\n")


def make_tokenizer(taming_vqgan):
    # The first seed whose nearest codes are well separated (at least 100 float32 ulps of the distances).
    for seed in range(100):
        torch.manual_seed(seed)
        model = reduced_taming(taming_vqgan)
        x = torch.rand(2, DDCONFIG["in_channels"], DDCONFIG["resolution"], DDCONFIG["resolution"])
        target = torch.rand_like(x)
        margin = nearest_code_margin(model, x)
        if margin > 100:
            break

    model.train()
    x.requires_grad_(True)
    decoded, result = model(x)
    total = torch.nn.functional.mse_loss(decoded, target) + result["quantizer_loss"]
    total.backward()
    tokens = result["min_encoding_indices"]
    with torch.no_grad():
        z_quantized, _ = model.encode(x)
        from_tokens = model.decode_tokens(tokens.reshape(tokens.shape[0], -1))

    torch.save(model.state_dict(), os.path.join(HERE, "tokenizer.bin"))
    write_config(os.path.join(HERE, "config.yaml"))
    np.savez(os.path.join(HERE, "io.npz"),
             input=x.detach().numpy(), target=target.numpy(), tokens=tokens.numpy().astype(np.int64),
             z_quantized=z_quantized.numpy(), reconstruction=decoded.detach().numpy(), decoded_from_tokens=from_tokens.numpy(),
             quantizer_loss=result["quantizer_loss"].detach().numpy(), commitment_loss=result["commitment_loss"].detach().numpy(),
             codebook_loss=result["codebook_loss"].detach().numpy(), total_loss=total.detach().numpy(),
             **{"grad.input": x.grad.numpy()})
    print(f"tokenizer: {sum(p.numel() for p in model.parameters())} parameters, seed {seed}, nearest-code margin {margin:.0f} float32 ulps")


def write_official_keys(taming_vqgan):
    model = taming_vqgan.OriginalVQModel(None)
    with open(os.path.join(HERE, "official_keys.txt"), "w") as f:
        for name, value in model.state_dict().items():
            f.write(" ".join([name] + [str(n) for n in value.shape]) + "\n")


def write_lightning_checkpoint():
    callbacks = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:  # stands in for Lightning's class, which the pickle only names
        pass

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = callbacks.__name__, "ModelCheckpoint"
    callbacks.ModelCheckpoint = ModelCheckpoint
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[callbacks.__name__] = callbacks
    torch.manual_seed(0)
    state_dict = {"quant_conv.weight": torch.randn(2, 2, 1, 1), "loss.logvar": torch.zeros(())}
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8", "state_dict": state_dict,
                "callbacks": {ModelCheckpoint: {"monitor": "val/rec_loss", "best_model_score": torch.tensor(0.25)}},
                "optimizer_states": [optimizer.state_dict()], "lr_schedulers": []}, os.path.join(HERE, "lightning.ckpt"))


def make_discriminator(gan_utils):
    torch.manual_seed(1)
    config = types.SimpleNamespace(name="Original", **DISCRIMINATOR)
    model = gan_utils.create_discriminator(config)
    torch.save(model.state_dict(), os.path.join(HERE, "discriminator.bin"))
    x = torch.randn(3, DISCRIMINATOR["num_channels"], 32, 32, requires_grad=True)
    model.train()
    logits = model(x)
    r = torch.randn_like(logits)
    (logits * r).sum().backward()
    after = {f"after.{k}": v.numpy() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    np.savez(os.path.join(HERE, "discriminator_io.npz"), input=x.detach().numpy(), logits=logits.detach().numpy(), r=r.numpy(),
             eval_logits=eval_logits.numpy(), **{"grad.input": x.grad.numpy()}, **after)
    print(f"discriminator: {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    taming_vqgan, gan_utils = import_reference(sys.argv[1] if len(sys.argv) > 1 else "/tmp/maskbit-ref")
    make_tokenizer(taming_vqgan)
    write_official_keys(taming_vqgan)
    write_lightning_checkpoint()
    make_discriminator(gan_utils)
