"""Train the built-in zoo of small KL VAEs (diffusers ``AutoencoderKL``) on the bundled photos.

The zoo is what the offline demo and the tests run on: three small VAEs that go through exactly the code path
real SD VAEs use (``diffusers.AutoencoderKL``), with reduced widths so that they train on 2 CPU cores.

- ``zoo-a`` and ``zoo-b``: 4 latent channels, 8x downscale. Same shapes, different latent spaces (different seeds,
  colour layouts and spreads of the latent), like SD1.5 and SDXL.
- ``zoo-c``: 16 latent channels, 8x downscale, like SD3 / FLUX.1.

Recipe (each choice was compared in short runs first; the numbers are in the commit history):
- architecture: block_out_channels (16, 32, 48, 96), layers_per_block 1, no mid-block attention,
  norm_num_groups 2: 1.5 M parameters, 3 MB per VAE in fp16;
- carrier-path initialisation (``carrier_init``): the network starts as "8x average pooling -> nearest upsampling"
  (21.2 dB on the held-out photos before any training, against ~10 dB for diffusers' random init), with half of
  every feature map left random to learn the detail. Without it, 400-1000 steps reached only 16-17 dB;
- data: random 64-px crops (+ horizontal flips) of ``latentbridge.photos.TRAIN_PHOTOS``, each photo resized to a
  short side of 160, 256, 384, 512 px and kept at its own size; colour photos drawn about 3x as often as grey ones;
  validation: PSNR of ``HELDOUT_PHOTOS`` at 256 x 256 through the posterior mean;
- a deterministic first half (plain autoencoder on the posterior mean), then the posterior is sampled and a small
  KL term ramps in (the logvar head starts at -8, so sampling does not disturb the warmed-up model);
- AdamW (lr 5e-4), 100 warm-up steps then cosine decay, L1 + MSE, 1500 steps of 8 crops, bf16 autocast for the
  training steps (fp32 weights; validation and statistics in fp32).

Outputs (in ``src/latentbridge/zoo`` unless ``--out`` says otherwise):
- ``<name>.safetensors``: fp16 weights, exactly ``AutoencoderKL.state_dict()`` keys, with metadata ``config``
  (the diffusers constructor JSON), ``latentbridge.format``, ``latentbridge.scale``, ``latentbridge.trained_by`` and
  ``latentbridge.seed``;
- ``zoo.json``: per VAE the config, latent scale (1 / std of raw latents over training crops), per-channel raw
  mean / std, latent -> RGB preview factors, held-out PSNR (fp32 and fp16 weights), the training curve, wall time,
  seed and settings;
- ``docs/zoo_training.png``: validation PSNR against step.
The fp32 weights go to ``--fp32-dir`` (outside the repository; only fp16 ships), with the log.

Usage::

    python scripts/train_zoo.py                 # all three at once: 19 min on 2 busy CPU cores (load ~7)
    python scripts/train_zoo.py --only zoo-b    # one of them; zoo.json keeps the others' entries
    python scripts/train_zoo.py --only zoo-a --out /tmp/zoo-try --set steps=300 lr=3e-4   # an experiment

The three VAEs train at once, one single-threaded process each (``--jobs 3 --threads 1``). Results are
reproducible for a fixed thread count: initialisation, data order and posterior noise all come from seeded
generators, and each VAE runs alone in its process.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.metadata
import json
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from PIL import Image
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
ZOO_DIR = REPO / "src" / "latentbridge" / "zoo"
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from latentbridge.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, load_photo, photo_tensor  # noqa: E402

VAL_SIZE = 256  # held-out photos are validated at 256 x 256
PYRAMID_SHORT_SIDES = (160, 256, 384, 512)  # plus each photo's original size
GREY_WEIGHT = 0.35  # greyscale photos (textures, text) are drawn about a third as often as colour ones


@dataclass(frozen=True)
class ZooSpec:
    """One zoo VAE: architecture, initial latent layout and training settings."""

    name: str
    seed: int
    latent_channels: int
    block_out_channels: tuple[int, ...] = (16, 32, 48, 96)  # 1.5 M parameters (4 ch), 3 MB in fp16
    norm_num_groups: int = 2  # carrier_init uses group 0 for the carriers, group 1 for the random half
    colour_mix: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # 3x3 row-major: c = mix @ rgb
    latent_scale: float = 4.0  # initial raw-latent units per unit of pooled colour
    steps: int = 1500
    batch_size: int = 8
    crop: int = 64
    lr: float = 5e-4
    weight_decay: float = 1e-4
    lr_warmup_steps: int = 100
    lr_final_fraction: float = 0.02  # cosine decays to this fraction of lr
    deterministic_fraction: float = 0.5  # first part of training: plain autoencoder on the posterior mean
    kl_weight: float = 1e-6  # on the per-element KL, next to per-pixel L1 + MSE (as small as LDM's VAEs)
    kl_ramp_steps: int = 200
    logvar_init: float = -8.0
    mse_weight: float = 1.0  # loss = L1 + mse_weight * MSE
    val_every: int = 100

    def diffusers_config(self, scaling_factor: float = 1.0) -> dict[str, object]:
        """The ``AutoencoderKL(**config)`` constructor keys that define this VAE."""
        levels = len(self.block_out_channels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * levels,
            "up_block_types": ["UpDecoderBlock2D"] * levels,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": 1,
            "act_fn": "silu",
            "latent_channels": self.latent_channels,
            "norm_num_groups": self.norm_num_groups,
            "sample_size": 512,
            "scaling_factor": scaling_factor,
            "mid_block_add_attention": False,
        }


_R3, _R2, _R6 = 3**-0.5, 2**-0.5, 6**-0.5
ZOO: tuple[ZooSpec, ...] = (
    # zoo-a: carriers start as plain RGB, ~SD1.5-like spread.
    ZooSpec(name="zoo-a", seed=1505, latent_channels=4),
    # zoo-b: same shapes, another latent space: an opponent-colour rotation with flipped signs, a wider spread.
    ZooSpec(
        name="zoo-b",
        seed=2307,
        latent_channels=4,
        colour_mix=(-_R3, -_R3, -_R3, _R2, -_R2, 0.0, -_R6, -_R6, 2 * _R6),
        latent_scale=7.0,
    ),
    # zoo-c: 16 channels (SD3 / FLUX.1-like); the 13 free channels learn the detail.
    ZooSpec(
        name="zoo-c",
        seed=3016,
        latent_channels=16,
        colour_mix=(_R6, _R6, -2 * _R6, _R3, _R3, _R3, -_R2, _R2, 0.0),
        latent_scale=2.5,
    ),
)


# ----------------------------------------------------------------------------------------------- data


@dataclass
class PhotoCrops:
    """Random crops of the training photos at several scales, drawn from a seeded generator."""

    images: list[torch.Tensor] = field(default_factory=list)  # [3, H, W] in [-1, 1]
    photo_of: list[int] = field(default_factory=list)  # index into the photo list, per image
    photo_weight: list[float] = field(default_factory=list)  # sampling weight, per photo

    @classmethod
    def build(cls, names: Sequence[str], min_side: int, grey_weight: float = 1.0) -> PhotoCrops:
        """Resize each photo to every pyramid scale; grey photos are drawn ``grey_weight`` times as often."""
        crops = cls()
        for index, name in enumerate(names):
            array = load_photo(name)
            grey = bool((array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all())
            crops.photo_weight.append(grey_weight if grey else 1.0)
            photo = Image.fromarray(array)
            short = min(photo.size)
            sides = sorted({s for s in PYRAMID_SHORT_SIDES if s < short} | {short})
            for side in sides:
                if side < min_side:
                    continue
                w, h = photo.size
                size = (round(w * side / short), round(h * side / short))
                image = photo if side == short else photo.resize(size, Image.Resampling.BICUBIC)
                array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
                crops.images.append(torch.from_numpy(array).permute(2, 0, 1).contiguous())
                crops.photo_of.append(index)
        return crops

    def batch(self, batch_size: int, crop: int, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
        """Return [batch_size, 3, crop, crop] in [-1, 1]: a photo (by weight), one of its scales, then a spot."""
        weights = torch.tensor(self.photo_weight, dtype=torch.float64)
        out = []
        for _ in range(batch_size):
            photo = int(torch.multinomial(weights, 1, generator=generator))
            scales = [i for i, p in enumerate(self.photo_of) if p == photo]
            image = self.images[scales[int(torch.randint(len(scales), (1,), generator=generator))]]
            _, h, w = image.shape
            top = int(torch.randint(h - crop + 1, (1,), generator=generator))
            left = int(torch.randint(w - crop + 1, (1,), generator=generator))
            patch = image[:, top : top + crop, left : left + crop]
            if flip and bool(torch.randint(2, (1,), generator=generator)):
                patch = patch.flip(-1)
            out.append(patch)
        return torch.stack(out)


def heldout_batch() -> torch.Tensor:
    """The held-out photos at 256 x 256: [N, 3, 256, 256] in [-1, 1]."""
    return torch.cat([photo_tensor(name, VAL_SIZE) for name in HELDOUT_PHOTOS])


# ------------------------------------------------------------------------------------------ metrics


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Encode to the posterior mean and decode, one image at a time, in fp32: [-1, 1] -> [-1, 1]."""
    outs = [vae.decode(vae.encode(image[None]).latent_dist.mean).sample for image in images]
    return torch.cat(outs).clamp(-1, 1)


def psnr(reference: torch.Tensor, test: torch.Tensor) -> list[float]:
    """Per-image PSNR in dB of [-1, 1] images, measured on the [0, 1] scale (peak 1)."""
    mse = ((reference - test) / 2).pow(2).flatten(1).mean(1)
    return [float(10 * torch.log10(1 / m)) for m in mse]


# ------------------------------------------------------------------------------ carrier-path init
#
# A randomly initialised AutoencoderKL learns slowly on a CPU budget: its main path runs through two GroupNorms
# (before the encoder's and the decoder's conv_out) that remove each image's mean and contrast, and it takes
# thousands of steps to find a way around them (here: ~16-17 dB on the held-out photos after 400-1000 steps, about
# the naive run's 15 dB after 8 minutes; 8x blur alone scores 22.5 dB). So the network starts as a working
# autoencoder instead: "8x average pooling -> nearest upsampling" of a 3-channel colour mix runs through group 0
# of every feature map (the "carriers"), while group 1 keeps diffusers' random init and learns the detail.
# Only weights are set: the architecture is stock diffusers, and every weight trains afterwards.
#
# Carrier layout (channels of group 0, in every feature map): [0, K) = +c with c = colour_mix @ rgb, [K, 2K) = -c,
# 2K and 2K + 1 = the constants +ANCHOR and -ANCHOR, the rest of group 0 zero. Such a group has mean exactly 0 and
# a std dominated by the anchors, so a GroupNorm whose gain is that std passes the carriers through unchanged;
# its bias adds SILU_OFFSET, where SiLU is nearly linear, and the next conv reads (silu(b + c) - silu(b - c)) / gain,
# in which SiLU's even part cancels.
K = 3
CARRIERS = 2 * K + 2
ANCHOR = 4.0
SILU_OFFSET = 6.0
_SIG = 1.0 / (1.0 + math.exp(-SILU_OFFSET))
SILU_GAIN = 2.0 * _SIG * (1.0 + SILU_OFFSET * (1.0 - _SIG))  # d/dc [silu(b + c) - silu(b - c)] at c = 0

_ONE = torch.ones(1, 1)
_ZERO = torch.zeros(1, 1)
_MEAN_2X2 = torch.full((2, 2), 0.25)  # Downsample2D pads (0, 1, 0, 1): taps [0:2, 0:2] are the 2x2 block
# Upsample2D is nearest 2x + a 3x3 conv with zero padding; its centre tap keeps nearest upsampling. A [1 2 1]^2 / 16
# kernel would make it bilinear, but darkens the borders so much that the start is 0.2-0.7 dB worse per photo.
_CENTRE = torch.tensor([[0.0, 0.0], [0.0, 1.0]])


def _zero_group0(conv: torch.nn.Conv2d) -> None:
    """Zero the conv's group-0 outputs (first half); group 1 keeps diffusers' random init."""
    conv.weight[: conv.out_channels // 2].zero_()
    conv.bias[: conv.out_channels // 2].zero_()


def _carrier_conv(conv: torch.nn.Conv2d, kernel: torch.Tensor) -> None:
    """Group 0 of the conv's output: each carrier filtered by ``kernel`` (at the weight's top left), else zero."""
    _zero_group0(conv)
    for c in range(CARRIERS):
        conv.weight[c, c, : kernel.shape[0], : kernel.shape[1]] = kernel


def _carrier_resnet(block) -> None:
    """A ResnetBlock2D that is the identity on group 0 (its last conv zero there, the usual residual trick)."""
    _carrier_conv(block.conv2, _ZERO)
    if block.conv_shortcut is not None:
        _carrier_conv(block.conv_shortcut, _ONE)


def _calibrate_group_norm(norm: torch.nn.GroupNorm, features: torch.Tensor) -> None:
    """Make ``norm`` pass group 0's carriers through (plus SILU_OFFSET on +c and -c), given typical ``features``."""
    group = features[:, : features.shape[1] // norm.num_groups]
    sigma = float(group.pow(2).mean((1, 2, 3)).sqrt().mean())  # the group mean is exactly 0
    norm.weight[:CARRIERS] = sigma
    norm.bias[: 2 * K] = SILU_OFFSET
    norm.bias[2 * K : CARRIERS] = 0.0


def _input_of(module: torch.nn.Module, run: Callable[[], object]) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    try:
        run()
    finally:
        hook.remove()
    return captured[0]


@torch.no_grad()
def carrier_init(vae: AutoencoderKL, spec: ZooSpec, calibration: torch.Tensor) -> None:
    """Set ``vae``'s group-0 weights so it starts as 8x average pooling -> nearest upsampling (see above).

    The latent's first K channels start as ``latent_scale * colour_mix @ avgpool8(rgb)``; the other latent
    channels are random projections of group-1 features, rescaled to the carriers' spread.

    Args:
        calibration: [N, 3, H, W] training crops in [-1, 1], to measure the GroupNorm statistics.
    """
    if spec.norm_num_groups != 2 or min(spec.block_out_channels) < 2 * CARRIERS:
        raise ValueError(f"carrier_init needs norm_num_groups=2 and widths >= {2 * CARRIERS}, got {spec}")
    mix = torch.tensor(spec.colour_mix, dtype=torch.float32).reshape(K, 3)
    lc, alpha = spec.latent_channels, spec.latent_scale
    enc, dec = vae.encoder, vae.decoder

    # encoder: RGB -> carriers -> 2x2 means -> GroupNorm / SiLU made linear -> latent channels [0, K)
    _zero_group0(enc.conv_in)
    enc.conv_in.weight[:K, :, 1, 1] = mix
    enc.conv_in.weight[K : 2 * K, :, 1, 1] = -mix
    enc.conv_in.bias[2 * K] = ANCHOR
    enc.conv_in.bias[2 * K + 1] = -ANCHOR
    for block in enc.down_blocks:
        for resnet in block.resnets:
            _carrier_resnet(resnet)
        for down in block.downsamplers or []:
            _carrier_conv(down.conv, _MEAN_2X2)
    for resnet in enc.mid_block.resnets:
        _carrier_resnet(resnet)
    features = _input_of(enc.conv_norm_out, lambda: enc(calibration))
    _calibrate_group_norm(enc.conv_norm_out, features)
    enc.conv_out.weight[:K].zero_()
    enc.conv_out.bias[:K].zero_()
    for k in range(K):
        enc.conv_out.weight[k, k, 1, 1] = alpha / SILU_GAIN
        enc.conv_out.weight[k, K + k, 1, 1] = -alpha / SILU_GAIN
    enc.conv_out.weight[lc:].zero_()  # logvar: constant logvar_init (posterior std e^-4 = 0.018)
    enc.conv_out.bias[lc:] = spec.logvar_init
    if lc > K:
        latent = enc.conv_out(enc.conv_act(enc.conv_norm_out(features)))
        gain = latent[:, :K].std((0, 2, 3)).mean() / latent[:, K:lc].std((0, 2, 3))
        enc.conv_out.weight[K:lc] *= gain[:, None, None, None]
        enc.conv_out.bias[K:lc] *= gain
    vae.quant_conv.weight.zero_()
    vae.quant_conv.bias.zero_()
    vae.quant_conv.weight[:, :, 0, 0] = torch.eye(2 * lc)
    vae.post_quant_conv.weight.zero_()
    vae.post_quant_conv.bias.zero_()
    vae.post_quant_conv.weight[:, :, 0, 0] = torch.eye(lc)

    # decoder: latent channels [0, K) -> carriers -> nearest upsampling -> GroupNorm / SiLU made linear -> RGB
    _zero_group0(dec.conv_in)
    for k in range(K):
        dec.conv_in.weight[k, k, 1, 1] = 1.0 / alpha
        dec.conv_in.weight[K + k, k, 1, 1] = -1.0 / alpha
    dec.conv_in.bias[2 * K] = ANCHOR
    dec.conv_in.bias[2 * K + 1] = -ANCHOR
    for resnet in dec.mid_block.resnets:
        _carrier_resnet(resnet)
    for block in dec.up_blocks:
        for resnet in block.resnets:
            _carrier_resnet(resnet)
        for up in block.upsamplers or []:
            _carrier_conv(up.conv, _CENTRE)
    latent = vae.quant_conv(enc(calibration))[:, :lc]
    _calibrate_group_norm(dec.conv_norm_out, _input_of(dec.conv_norm_out, lambda: dec(vae.post_quant_conv(latent))))
    dec.conv_out.weight.zero_()  # group 1 joins as soon as its conv_out weights learn
    dec.conv_out.bias.zero_()
    unmix = torch.linalg.inv(mix)
    dec.conv_out.weight[:, :K, 1, 1] = unmix / SILU_GAIN
    dec.conv_out.weight[:, K : 2 * K, 1, 1] = -unmix / SILU_GAIN


def build_vae(spec: ZooSpec, calibration: torch.Tensor) -> AutoencoderKL:
    """A fresh ``AutoencoderKL`` (seeded diffusers init), then :func:`carrier_init`."""
    torch.manual_seed(spec.seed)
    vae = AutoencoderKL(**spec.diffusers_config())
    carrier_init(vae, spec, calibration)
    return vae


# --------------------------------------------------------------------------------------------- train


def lr_at(spec: ZooSpec, step: int) -> float:
    if step < spec.lr_warmup_steps:
        return spec.lr * (step + 1) / spec.lr_warmup_steps
    progress = (step - spec.lr_warmup_steps) / max(1, spec.steps - spec.lr_warmup_steps)
    floor = spec.lr_final_fraction
    return spec.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(spec: ZooSpec, crops: PhotoCrops, heldout: torch.Tensor, log) -> tuple[AutoencoderKL, dict]:
    calibration = crops.batch(16, 128, torch.Generator().manual_seed(spec.seed + 3), flip=False)
    vae = build_vae(spec, calibration).eval()
    init_psnr = float(np.mean(psnr(heldout, reconstruct(vae, heldout))))
    curve: list[dict[str, float | None]] = [{"step": 0, "train_loss": None, "val_psnr": round(init_psnr, 3)}]
    log(f"{spec.name} carrier-path init: val {init_psnr:.2f} dB")
    decay = [p for n, p in vae.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in vae.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.99),
    )
    data_gen = torch.Generator().manual_seed(spec.seed)
    noise_gen = torch.Generator().manual_seed(spec.seed + 1)
    kl_start = int(spec.deterministic_fraction * spec.steps)
    running = 0.0
    start = time.perf_counter()
    for step in range(spec.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(spec, step)
        x = crops.batch(spec.batch_size, spec.crop, data_gen)
        vae.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            moments = vae.quant_conv(vae.encoder(x)).float()
            mean, logvar = moments.chunk(2, dim=1)
            logvar = logvar.clamp(-30.0, 20.0)
            if step < kl_start:
                z, kl = mean, torch.zeros(())
            else:
                z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=noise_gen)
                kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
            y = vae.decoder(vae.post_quant_conv(z)).float()
        rec = (y - x).abs().mean() + spec.mse_weight * (y - x).pow(2).mean()
        kl_w = spec.kl_weight * min(1.0, max(0, step - kl_start + 1) / spec.kl_ramp_steps)
        loss = rec + kl_w * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        running += float(rec.detach())
        if (step + 1) % spec.val_every == 0 or step + 1 == spec.steps:
            vae.eval()
            val = float(np.mean(psnr(heldout, reconstruct(vae, heldout))))
            n = spec.val_every if (step + 1) % spec.val_every == 0 else (step + 1) % spec.val_every
            curve.append({"step": step + 1, "train_loss": round(running / n, 5), "val_psnr": round(val, 3)})
            running = 0.0
            elapsed = time.perf_counter() - start
            log(
                f"{spec.name} step {step + 1}/{spec.steps} loss {curve[-1]['train_loss']:.4f} "
                f"kl {float(kl.detach()):.3f} val {val:.2f} dB  lr {lr_at(spec, step):.2e}  {elapsed:.0f}s"
            )
    vae.eval()
    return vae, {"curve": curve, "train_seconds": round(time.perf_counter() - start, 1)}


# ------------------------------------------------------------------------------------- statistics


STATS_CROPS, STATS_CROP_SIZE = 384, 128


@torch.no_grad()
def latent_statistics(vae: AutoencoderKL, crops: PhotoCrops, seed: int) -> dict[str, object]:
    """Raw-latent statistics over posterior means of STATS_CROPS training crops, and RGB preview factors.

    Returns:
        scale: 1 / std of all raw latent values (the way SD's 0.18215 was chosen);
        mean, std: per channel, raw space;
        rgb_factors [C, 3], rgb_bias [3]: least squares from the model-space latent (raw * scale) to the image
            average-pooled 8x, in [-1, 1]; rgb_fit_psnr_8x: how well that fits (peak-to-peak 2);
        posterior_std_mean: the encoder's mean posterior std (how much sampling differs from the mean).
    """
    gen = torch.Generator().manual_seed(seed + 2)
    latents, targets, stds = [], [], []
    for _ in range(STATS_CROPS // 16):
        x = crops.batch(16, STATS_CROP_SIZE, gen, flip=False)
        posterior = vae.encode(x).latent_dist
        latents.append(posterior.mean)
        stds.append(posterior.std.mean())
        targets.append(F.avg_pool2d(x, 8))
    raw = torch.cat(latents)  # [N, C, h, w]
    scale = float(1.0 / raw.std())
    channels = raw.shape[1]
    design = (raw * scale).permute(0, 2, 3, 1).reshape(-1, channels).double()
    design = torch.cat([design, torch.ones(len(design), 1, dtype=torch.float64)], 1)
    target = torch.cat(targets).permute(0, 2, 3, 1).reshape(-1, 3).double()
    solution = torch.linalg.lstsq(design, target).solution  # [C + 1, 3]
    fit_mse = float((design @ solution - target).pow(2).mean())
    return {
        "scale": scale,
        "mean": raw.mean((0, 2, 3)).tolist(),
        "std": raw.std((0, 2, 3)).tolist(),
        "rgb_factors": solution[:-1].tolist(),
        "rgb_bias": solution[-1].tolist(),
        "rgb_fit_psnr_8x": 10 * math.log10(4.0 / fit_mse),
        "posterior_std_mean": float(torch.stack(stds).mean()),
    }


def fp16_roundtrip(vae: AutoencoderKL) -> AutoencoderKL:
    """A copy of ``vae`` whose weights went through fp16 and back (what ships), computing in fp32."""
    copy = AutoencoderKL(**vae.config)
    copy.load_state_dict({k: v.half().float() for k, v in vae.state_dict().items()}, strict=True)
    return copy.eval()


def rounded(value: object, digits: int = 6) -> object:
    """Round every float in a JSON-like value to ``digits`` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------------------------- main


def plot(entries: dict[str, dict], path: Path) -> None:
    """Validation PSNR against step for each zoo VAE (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, entry in sorted(entries.items()):
        steps = [p["step"] for p in entry["curve"]]
        values = [p["val_psnr"] for p in entry["curve"]]
        channels = entry["config"]["latent_channels"]
        label = f"{name} ({channels} ch): {entry['psnr_heldout_256']['fp16']:.2f} dB"
        ax.plot(steps, values, marker=".", label=label)
    ax.axhline(24.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("training step (step 0: carrier-path init)")
    ax.set_ylabel("held-out PSNR at 256 px (dB)")
    ax.set_title("latentbridge zoo VAEs, validated on " + ", ".join(HELDOUT_PHOTOS), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _parse_overrides(items: Sequence[str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in items:
        key, value = item.split("=", 1)
        kind = type(getattr(ZOO[0], key))
        if kind is tuple:
            overrides[key] = tuple(float(v) if "." in v else int(v) for v in value.split(","))
        else:
            overrides[key] = kind(value)
    return overrides


def _log(log_path: Path, message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    with log_path.open("a") as file:
        file.write(line + "\n")


def train_and_save(spec: ZooSpec, out: Path, fp32_dir: Path, threads: int) -> dict[str, object]:
    """Train one zoo VAE, write its fp16 safetensors to ``out`` and fp32 weights to ``fp32_dir``.

    Returns:
        Its zoo.json entry.
    """
    torch.set_num_threads(threads)
    started = time.perf_counter()

    def log(message: str) -> None:
        _log(fp32_dir / "train_zoo.log", message)

    crops = PhotoCrops.build(TRAIN_PHOTOS, min_side=max(spec.crop, STATS_CROP_SIZE), grey_weight=GREY_WEIGHT)
    heldout = heldout_batch()
    vae, history = train(spec, crops, heldout, log)
    torch.save(vae.state_dict(), fp32_dir / f"{spec.name}.fp32.pt")
    shipped = fp16_roundtrip(vae)
    stats = latent_statistics(shipped, crops, spec.seed)
    psnr32 = psnr(heldout, reconstruct(vae, heldout))
    psnr16 = psnr(heldout, reconstruct(shipped, heldout))
    config = spec.diffusers_config(scaling_factor=round(stats["scale"], 5))
    metadata = {
        "config": json.dumps(config),
        "latentbridge.format": spec.name,
        "latentbridge.scale": repr(config["scaling_factor"]),
        "latentbridge.trained_by": "scripts/train_zoo.py",
        "latentbridge.seed": str(spec.seed),
    }
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in vae.state_dict().items()}
    save_file(weights, out / f"{spec.name}.safetensors", metadata=metadata)
    settings = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("name", "seed")}
    settings.update(
        init="carrier_init (scripts/train_zoo.py)",
        train_photos=list(TRAIN_PHOTOS),
        grey_photo_weight=GREY_WEIGHT,
        pyramid_short_sides=[*PYRAMID_SHORT_SIDES, "original"],
        autocast="bf16 (training steps only)",
        optimizer="AdamW betas (0.9, 0.99), grad-norm clip 1.0",
        threads=threads,
        torch=torch.__version__,
        diffusers=importlib.metadata.version("diffusers"),
    )
    entry = rounded(
        {
            "config": config,
            "scale": config["scaling_factor"],
            "mean": stats["mean"],
            "std": stats["std"],
            "rgb_factors": stats["rgb_factors"],
            "rgb_bias": stats["rgb_bias"],
            "rgb_fit_psnr_8x": stats["rgb_fit_psnr_8x"],
            "posterior_std_mean": stats["posterior_std_mean"],
            "heldout_photos": list(HELDOUT_PHOTOS),
            "psnr_heldout_256": {
                "fp32": float(np.mean(psnr32)),
                "fp16": float(np.mean(psnr16)),
                "fp16_per_photo": dict(zip(HELDOUT_PHOTOS, psnr16, strict=True)),
            },
            "curve": history["curve"],
            "train_seconds": history["train_seconds"],
            "wall_seconds": round(time.perf_counter() - started, 1),
            "seed": spec.seed,
            "settings": settings,
        }
    )
    result = entry["psnr_heldout_256"]
    log(
        f"{spec.name} done in {entry['wall_seconds']:.0f}s: held-out PSNR fp32 {result['fp32']:.2f} dB, "
        f"fp16 {result['fp16']:.2f} dB, scale {config['scaling_factor']}"
    )
    return entry


def write_index(path: Path, entries: dict[str, dict]) -> None:
    index = {
        "description": "latentbridge zoo: small diffusers AutoencoderKL VAEs trained by scripts/train_zoo.py",
        "psnr": "held-out photos at 256 px (photo_tensor), encoded to the posterior mean and decoded in fp32; "
        "per-image PSNR with peak 1 on [0, 1], averaged over the photos",
        "latent_stats": f"raw posterior means of {STATS_CROPS} random {STATS_CROP_SIZE}-px multi-scale crops of the "
        "training photos through the fp16 weights; scale = 1 / std of all values",
        "rgb_preview": "rgb = (raw * scale) @ rgb_factors + rgb_bias, in [-1, 1] at 1/8 resolution",
        "vaes": dict(sorted(entries.items())),
    }
    if path.exists():  # keep what other scripts wrote (scripts/train_t2i.py: "t2i")
        index = {**json.loads(path.read_text()), **index}
    path.write_text(json.dumps(index, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=[s.name for s in ZOO], help="train only these")
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="where the fp16 files and zoo.json go")
    parser.add_argument("--plot", type=Path, default=None, help="default: docs/zoo_training.png, or OUT/training.png")
    parser.add_argument("--fp32-dir", type=Path, default=Path(tempfile.gettempdir()) / "latentbridge-zoo-fp32")
    parser.add_argument("--jobs", type=int, default=3, help="VAEs trained at once, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override ZooSpec fields")
    args = parser.parse_args(argv)

    overrides = _parse_overrides(args.set)
    specs = [dataclasses.replace(s, **overrides) for s in ZOO if not args.only or s.name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    args.fp32_dir.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "zoo.json"
    entries = json.loads(index_path.read_text())["vaes"] if index_path.exists() else {}
    started = time.perf_counter()
    _log(
        args.fp32_dir / "train_zoo.log",
        f"training {', '.join(s.name for s in specs)}: {args.jobs} jobs x "
        f"{args.threads} threads; {len(TRAIN_PHOTOS)} training photos, held-out {', '.join(HELDOUT_PHOTOS)}",
    )
    # One thread per job: on 2 cores, three single-threaded jobs beat one two-threaded job after another (small
    # convolutions scale poorly across threads, and a busy machine stalls OpenMP's thread barriers).
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = {pool.submit(train_and_save, s, args.out, args.fp32_dir, args.threads): s for s in specs}
        for future in concurrent.futures.as_completed(futures):
            entries[futures[future].name] = future.result()
            write_index(index_path, entries)
    plot_path = args.plot or (REPO / "docs" / "zoo_training.png" if args.out == ZOO_DIR else args.out / "training.png")
    plot(entries, plot_path)
    _log(args.fp32_dir / "train_zoo.log", f"all done in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
