"""Declarative key maps from the layouts files use to the modules we load into.

A key map is a dict ``source template -> target template`` (``None`` drops the key). In a template,
``{}`` stands for one dot-free key segment and ``{...}`` (last position only) for the rest of the key;
the target reuses the captured pieces in order. A key that no template matches is kept as it is,
so it surfaces by name in the strict load's "unexpected keys" list. Maps whose indices depend on the
network's depth (the LDM decoder counts its levels in reverse) are built by small functions of that depth.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

import torch

KeyMap = Mapping[str, str | None]


@cache
def _compile(template: str) -> re.Pattern[str]:
    parts = template.split("{...}")
    if len(parts) > 2 or (len(parts) == 2 and parts[1]):
        raise ValueError(f"key template {template!r}: '{{...}}' may appear once, at the end")
    rx = r"([^.]+)".join(re.escape(p) for p in parts[0].split("{}"))
    if len(parts) == 2:
        rx += r"(.+)"
    return re.compile(rx + r"\Z")


def _fill(template: str, groups: tuple[str, ...]) -> str:
    pieces = re.split(r"\{\}|\{\.\.\.\}", template)
    if len(pieces) - 1 != len(groups):
        raise ValueError(f"key template {template!r} has {len(pieces) - 1} slots for {len(groups)} captured pieces")
    out = pieces[0]
    for g, p in zip(groups, pieces[1:], strict=True):
        out += g + p
    return out


def rename(key: str, keymap: KeyMap) -> str | None:
    """The target name of ``key`` under ``keymap`` (itself when no template matches, None when dropped).

    Raises ValueError when two templates match the key (a bug in the map, never in the file).
    """
    hits = [(src, m) for src in keymap if (m := _compile(src).match(key))]
    if not hits:
        return key
    if len(hits) > 1:
        raise ValueError(f"key {key!r} matches several templates {[h[0] for h in hits]}: the key map is ambiguous")
    src, m = hits[0]
    dst = keymap[src]
    return None if dst is None else _fill(dst, m.groups())


def remap(state: Mapping[str, torch.Tensor], keymap: KeyMap) -> dict[str, torch.Tensor]:
    """Apply ``keymap`` to a state dict. Raises ValueError when two source keys land on one target."""
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = rename(key, keymap)
        if new is None:
            continue
        if new in out:
            raise ValueError(f"keys {origin[new]!r} and {key!r} both map to {new!r}: the file holds a key twice")
        out[new], origin[new] = value, key
    return out


# --- AutoencoderKL: original LDM/SGM and BFL keys -> diffusers ------------------------------------------


def _resnet(src: str, dst: str) -> dict[str, str | None]:
    names = (("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"))
    out: dict[str, str | None] = {f"{src}.{a}.{{}}": f"{dst}.{b}.{{}}" for a, b in names}
    out[f"{src}.nin_shortcut.{{}}"] = f"{dst}.conv_shortcut.{{}}"
    return out


def _mid(side: str) -> dict[str, str | None]:
    out = {
        **_resnet(f"{side}.mid.block_1", f"{side}.mid_block.resnets.0"),
        **_resnet(f"{side}.mid.block_2", f"{side}.mid_block.resnets.1"),
    }
    attn = f"{side}.mid_block.attentions.0"
    out.update(
        {
            f"{side}.mid.attn_1.norm.{{}}": f"{attn}.group_norm.{{}}",
            f"{side}.mid.attn_1.q.{{}}": f"{attn}.to_q.{{}}",
            f"{side}.mid.attn_1.k.{{}}": f"{attn}.to_k.{{}}",
            f"{side}.mid.attn_1.v.{{}}": f"{attn}.to_v.{{}}",
            f"{side}.mid.attn_1.proj_out.{{}}": f"{attn}.to_out.0.{{}}",
        }
    )
    return out


# Training-only tensors that original LDM checkpoints may carry: the discriminator and LPIPS of the loss,
# and the EMA bookkeeping. They are not part of the VAE and are dropped.
TRAINING_ONLY: dict[str, str | None] = {"loss.{...}": None, "model_ema.{...}": None}


def ldm_to_diffusers(levels: int) -> dict[str, str | None]:
    """Original LDM/SGM (and BFL) AutoencoderKL keys -> diffusers keys, for a VAE with ``levels`` levels.

    Also maps BFL FLUX.2's ``encoder.quant_conv`` / ``decoder.post_quant_conv`` to diffusers' root-level
    names. The decoder's ``up.{i}`` counts from the highest resolution, diffusers' ``up_blocks.{j}`` from
    the lowest: ``j = levels - 1 - i``.
    """
    out: dict[str, str | None] = {
        "encoder.conv_in.{}": "encoder.conv_in.{}",
        "encoder.down.{}.downsample.conv.{}": "encoder.down_blocks.{}.downsamplers.0.conv.{}",
        "encoder.norm_out.{}": "encoder.conv_norm_out.{}",
        "encoder.conv_out.{}": "encoder.conv_out.{}",
        "encoder.quant_conv.{}": "quant_conv.{}",
        "quant_conv.{}": "quant_conv.{}",
        "post_quant_conv.{}": "post_quant_conv.{}",
        "decoder.post_quant_conv.{}": "post_quant_conv.{}",
        "decoder.conv_in.{}": "decoder.conv_in.{}",
        "decoder.norm_out.{}": "decoder.conv_norm_out.{}",
        "decoder.conv_out.{}": "decoder.conv_out.{}",
        "bn.{}": "bn.{}",
        **_resnet("encoder.down.{}.block.{}", "encoder.down_blocks.{}.resnets.{}"),
        **_mid("encoder"),
        **_mid("decoder"),
        **TRAINING_ONLY,
    }
    for i in range(levels):
        j = levels - 1 - i
        out.update(_resnet(f"decoder.up.{i}.block.{{}}", f"decoder.up_blocks.{j}.resnets.{{}}"))
        out[f"decoder.up.{i}.upsample.conv.{{}}"] = f"decoder.up_blocks.{j}.upsamplers.0.conv.{{}}"
    return out


# --- Wan 2.1: original release keys -> diffusers AutoencoderKLWan ---------------------------------------

_WAN_RESNET = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.{}": "conv1.{}",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.{}": "conv2.{}",
    "shortcut.{}": "conv_shortcut.{}",
}
_WAN_ATTN = ("norm.gamma", "to_qkv.{}", "proj.{}")


def _wan_block(src: str, dst: str) -> dict[str, str | None]:
    return {f"{src}.{a}": f"{dst}.{b}" for a, b in _WAN_RESNET.items()}


def wan_to_diffusers(levels: int, num_res_blocks: int) -> dict[str, str | None]:
    """Original Wan 2.1 VAE keys -> diffusers AutoencoderKLWan keys.

    Both encoders are one flat list (resnets, then a resample, per level), so their indices agree. The
    original decoder is flat too (``upsamples.{k}``): ``num_res_blocks + 1`` resnets and one upsampler
    per level but the last, which diffusers nests as ``up_blocks.{level}.resnets.{r}`` / ``.upsamplers.0``.
    """
    out: dict[str, str | None] = {
        "encoder.conv1.{}": "encoder.conv_in.{}",
        "decoder.conv1.{}": "decoder.conv_in.{}",
        "conv1.{}": "quant_conv.{}",
        "conv2.{}": "post_quant_conv.{}",
        "encoder.head.0.gamma": "encoder.norm_out.gamma",
        "encoder.head.2.{}": "encoder.conv_out.{}",
        "decoder.head.0.gamma": "decoder.norm_out.gamma",
        "decoder.head.2.{}": "decoder.conv_out.{}",
        **_wan_block("encoder.downsamples.{}", "encoder.down_blocks.{}"),
        "encoder.downsamples.{}.resample.1.{}": "encoder.down_blocks.{}.resample.1.{}",
        "encoder.downsamples.{}.time_conv.{}": "encoder.down_blocks.{}.time_conv.{}",
    }
    for side in ("encoder", "decoder"):
        out.update(_wan_block(f"{side}.middle.0", f"{side}.mid_block.resnets.0"))
        out.update(_wan_block(f"{side}.middle.2", f"{side}.mid_block.resnets.1"))
        out.update({f"{side}.middle.1.{a}": f"{side}.mid_block.attentions.0.{a}" for a in _WAN_ATTN})
    k = 0
    for level in range(levels):
        for r in range(num_res_blocks + 1):
            out.update(_wan_block(f"decoder.upsamples.{k}", f"decoder.up_blocks.{level}.resnets.{r}"))
            k += 1
        if level < levels - 1:
            for sub in ("resample.1.{}", "time_conv.{}"):
                out[f"decoder.upsamples.{k}.{sub}"] = f"decoder.up_blocks.{level}.upsamplers.0.{sub}"
            k += 1
    return out


# --- TAESD family: layouts -> our module (models/taesd.py: encoder.{i} / decoder.{i}) --------------------

TAESD_DIFFUSERS: dict[str, str | None] = {
    "encoder.layers.{}.{...}": "encoder.{}.{...}",
    # diffusers' DecoderTiny applies the soft clamp in forward(), so its layer i is TAESD's layer i + 1
    **{f"decoder.layers.{i}.{{...}}": f"decoder.{i + 1}.{{...}}" for i in range(40)},
}
TAESD_MODULE: dict[str, str | None] = {"encoder.{...}": "encoder.{...}", "decoder.{...}": "decoder.{...}"}


def taesd_sequential(part: str) -> dict[str, str | None]:
    """A bare ``taesd_encoder.pth`` / ``taesd_decoder.pth`` (one nn.Sequential) -> our ``encoder.``/``decoder.``."""
    return {"{...}": f"{part}.{{...}}"}
