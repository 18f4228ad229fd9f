"""Declarative key maps from the layouts files use to the modules we load into.

A key map is a dict ``source template -> target template`` (``None`` drops the key). In a template,
``{}`` stands for one dot-free key segment and ``{...}`` (last position only) for the rest of the key;
the target reuses the captured pieces in order. A key that no template matches is kept as it is,
so it surfaces by name in the strict load's "unexpected keys" list. Maps whose indices depend on the
network's depth (the LDM decoder counts its levels in reverse) are built by small functions of that depth.
Fused tensors that the target keeps apart (DC-AE's ``qkv`` projection) are split by a declared table after renaming.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

import torch

from latentbridge.errors import WeightsError

KeyMap = Mapping[str, str | None]
# fused tensor name suffix -> the names (same suffix position) of its equal chunks along dim 0
FusedMap = Mapping[str, tuple[str, ...]]


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


def _fused_targets(key: str, fused: FusedMap) -> tuple[str, tuple[str, ...]] | None:
    for suffix, targets in fused.items():
        if key == suffix or key.endswith("." + suffix):
            return key[: len(key) - len(suffix)], targets
    return None


def split_fused(state: Mapping[str, torch.Tensor], fused: FusedMap) -> dict[str, torch.Tensor]:
    """Split each fused tensor (a key ending in a ``fused`` suffix) into equal chunks along dim 0.

    ``{"attn.to_qkv.weight": ("attn.to_q.weight", "attn.to_k.weight", "attn.to_v.weight")}`` turns
    ``x.attn.to_qkv.weight`` [3n, …] into ``x.attn.to_q.weight`` … [n, …]. Raises WeightsError when a fused
    tensor does not split evenly, ValueError when a chunk's name is already taken.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        hit = _fused_targets(key, fused)
        if hit is None:
            _put(out, key, value, key)
            continue
        head, targets = hit
        if value.ndim == 0 or value.shape[0] % len(targets):
            raise WeightsError(
                f"{key} has shape {tuple(value.shape)}, but a fused {'/'.join(targets)} tensor must split into "
                f"{len(targets)} equal parts along its first dimension; the file is damaged: use the original file"
            )
        for name, chunk in zip(targets, value.chunk(len(targets), 0), strict=True):
            _put(out, head + name, chunk.contiguous(), key)
    return out


def split_fused_shapes(shapes: Mapping[str, tuple[int, ...]], fused: FusedMap) -> dict[str, tuple[int, ...]]:
    """:func:`split_fused` for shapes only (headers), so configs can be derived before loading tensors."""
    out: dict[str, tuple[int, ...]] = {}
    for key, shape in shapes.items():
        hit = _fused_targets(key, fused)
        if hit is None or not shape:
            out[key] = tuple(shape)
            continue
        head, targets = hit
        for name in targets:
            out[head + name] = (shape[0] // len(targets), *shape[1:])
    return out


def _put(out: dict[str, torch.Tensor], key: str, value: torch.Tensor, origin: str) -> None:
    if key in out:
        raise ValueError(f"{origin!r} splits onto {key!r}, which the file also holds: the file holds a key twice")
    out[key] = value


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


# --- HunyuanVideo: ComfyUI's keys -> diffusers AutoencoderKLHunyuanVideo ---------------------------------

# the LDM names of convolutions, which HunyuanVideo's causal convs hold one level deeper (`conv1.conv.weight`)
_CAUSAL_CONVS = ("conv_in", "conv_out", "conv1", "conv2", "nin_shortcut", "downsample.conv", "upsample.conv")


def hunyuan_video_to_diffusers(levels: int) -> dict[str, str | None]:
    """ComfyUI's HunyuanVideo VAE keys -> diffusers AutoencoderKLHunyuanVideo keys, for ``levels`` levels.

    ComfyUI names the network as an LDM AutoencoderKL (comfy/ldm/modules/diffusionmodules/model.py with
    ``conv3d``) whose every 3×3×3 conv is a causal wrapper holding its ``Conv3d`` as ``.conv``; diffusers'
    HunyuanVideo blocks hold them the same way under diffusers' names. So the map is :func:`ldm_to_diffusers` with
    that extra ``.conv`` on both sides of each conv; attention (1×1×1 convs in ComfyUI, linear in diffusers) and
    the root 1×1×1 quant convs keep their names.
    """
    out: dict[str, str | None] = {}
    for src, dst in ldm_to_diffusers(levels).items():
        head = src[: -len(".{}")] if src.endswith(".{}") else ""
        if dst is not None and head.endswith(_CAUSAL_CONVS) and not head.endswith("quant_conv"):
            out[f"{head}.conv.{{}}"] = f"{dst[: -len('.{}')]}.conv.{{}}"
        else:
            out[src] = dst
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


def _wan_shared() -> dict[str, str | None]:
    """Keys Wan 2.1 and 2.2 originals name alike: stem, head, the two 1×1 quant convs and both middles."""
    out: dict[str, str | None] = {
        "encoder.conv1.{}": "encoder.conv_in.{}",
        "decoder.conv1.{}": "decoder.conv_in.{}",
        "conv1.{}": "quant_conv.{}",
        "conv2.{}": "post_quant_conv.{}",
        "encoder.head.0.gamma": "encoder.norm_out.gamma",
        "encoder.head.2.{}": "encoder.conv_out.{}",
        "decoder.head.0.gamma": "decoder.norm_out.gamma",
        "decoder.head.2.{}": "decoder.conv_out.{}",
    }
    for side in ("encoder", "decoder"):
        out.update(_wan_block(f"{side}.middle.0", f"{side}.mid_block.resnets.0"))
        out.update(_wan_block(f"{side}.middle.2", f"{side}.mid_block.resnets.1"))
        out.update({f"{side}.middle.1.{a}": f"{side}.mid_block.attentions.0.{a}" for a in _WAN_ATTN})
    return out


def _wan_block(src: str, dst: str) -> dict[str, str | None]:
    return {f"{src}.{a}": f"{dst}.{b}" for a, b in _WAN_RESNET.items()}


def wan_to_diffusers(levels: int, num_res_blocks: int) -> dict[str, str | None]:
    """Original Wan 2.1 VAE keys -> diffusers AutoencoderKLWan keys.

    Both encoders are one flat list (resnets, then a resample, per level), so their indices agree. The
    original decoder is flat too (``upsamples.{k}``): ``num_res_blocks + 1`` resnets and one upsampler
    per level but the last, which diffusers nests as ``up_blocks.{level}.resnets.{r}`` / ``.upsamplers.0``.
    """
    out: dict[str, str | None] = {
        **_wan_shared(),
        **_wan_block("encoder.downsamples.{}", "encoder.down_blocks.{}"),
        "encoder.downsamples.{}.resample.1.{}": "encoder.down_blocks.{}.resample.1.{}",
        "encoder.downsamples.{}.time_conv.{}": "encoder.down_blocks.{}.time_conv.{}",
    }
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


# --- Wan 2.2: original release keys -> diffusers AutoencoderKLWan (is_residual) --------------------------


def wan22_to_diffusers(num_res_blocks: int) -> dict[str, str | None]:
    """Original Wan 2.2 VAE keys (``Wan2.2_VAE.pth``) -> diffusers AutoencoderKLWan keys (``is_residual=True``).

    Each level holds its own list: ``encoder.downsamples.{level}.downsamples.{j}`` are ``num_res_blocks``
    resnets and then the level's resample (index ``num_res_blocks``); the decoder's
    ``upsamples.{level}.upsamples.{j}`` hold ``num_res_blocks + 1`` resnets and then the resample. diffusers
    names them ``resnets.{j}`` and ``downsampler`` / ``upsampler``. The stem, head, middle and the two 1×1
    quant convs are named as in Wan 2.1.
    """
    out: dict[str, str | None] = {
        **_wan_shared(),
        **_wan_block("encoder.downsamples.{}.downsamples.{}", "encoder.down_blocks.{}.resnets.{}"),
        **_wan_block("decoder.upsamples.{}.upsamples.{}", "decoder.up_blocks.{}.resnets.{}"),
    }
    for sub in ("resample.1.{}", "time_conv.{}"):
        out[f"encoder.downsamples.{{}}.downsamples.{num_res_blocks}.{sub}"] = (
            f"encoder.down_blocks.{{}}.downsampler.{sub}"
        )
        out[f"decoder.upsamples.{{}}.upsamples.{num_res_blocks + 1}.{sub}"] = f"decoder.up_blocks.{{}}.upsampler.{sub}"
    return out


# --- DC-AE: original mit-han-lab/efficientvit keys -> diffusers AutoencoderDC -----------------------------


def _dc_entry(src: str, dst: str) -> dict[str, str | None]:
    """One stage entry: a ResBlock, an EfficientViT block (attention + GLU conv) or a resampling conv."""
    ctx, loc = f"{src}.context_module.main", f"{src}.local_module.main"
    return {
        f"{src}.main.conv1.conv.{{}}": f"{dst}.conv1.{{}}",
        f"{src}.main.conv2.conv.{{}}": f"{dst}.conv2.{{}}",
        f"{src}.main.conv2.norm.{{}}": f"{dst}.norm.{{}}",
        f"{src}.main.conv.{{}}": f"{dst}.conv.{{}}",  # strided-conv downsampler
        f"{src}.main.conv.conv.{{}}": f"{dst}.conv.{{}}",  # pixel-(un)shuffle or interpolating resampler
        f"{ctx}.qkv.conv.{{}}": f"{dst}.attn.to_qkv.{{}}",  # fused: split by DCAE_FUSED
        f"{ctx}.aggreg.{{}}.0.{{}}": f"{dst}.attn.to_qkv_multiscale.{{}}.proj_in.{{}}",
        f"{ctx}.aggreg.{{}}.1.{{}}": f"{dst}.attn.to_qkv_multiscale.{{}}.proj_out.{{}}",
        f"{ctx}.proj.conv.{{}}": f"{dst}.attn.to_out.{{}}",
        f"{ctx}.proj.norm.{{}}": f"{dst}.attn.norm_out.{{}}",
        f"{loc}.inverted_conv.conv.{{}}": f"{dst}.conv_out.conv_inverted.{{}}",
        f"{loc}.depth_conv.conv.{{}}": f"{dst}.conv_out.conv_depth.{{}}",
        f"{loc}.point_conv.conv.{{}}": f"{dst}.conv_out.conv_point.{{}}",
        f"{loc}.point_conv.norm.{{}}": f"{dst}.conv_out.norm.{{}}",
    }


DCAE_EFFICIENTVIT: dict[str, str | None] = {
    "encoder.project_in.conv.{}": "encoder.conv_in.{}",
    "encoder.project_in.conv.conv.{}": "encoder.conv_in.conv.{}",  # f32c32-in/mix: pixel-unshuffle stem
    "encoder.project_out.main.op_list.0.conv.{}": "encoder.conv_out.{}",
    "decoder.project_in.main.conv.{}": "decoder.conv_in.{}",
    "decoder.project_out.op_list.0.{}": "decoder.norm_out.{}",
    "decoder.project_out.op_list.2.conv.{}": "decoder.conv_out.{}",
    "decoder.project_out.op_list.2.conv.conv.{}": "decoder.conv_out.conv.{}",  # f32c32-in/mix: pixel-shuffle head
    **_dc_entry("encoder.stages.{}.op_list.{}", "encoder.down_blocks.{}.{}"),
    **_dc_entry("decoder.stages.{}.op_list.{}", "decoder.up_blocks.{}.{}"),
}
# efficientvit's LiteMLA projects q, k and v with one 1×1 conv; diffusers keeps three linear layers
DCAE_FUSED: dict[str, tuple[str, ...]] = {
    "attn.to_qkv.weight": ("attn.to_q.weight", "attn.to_k.weight", "attn.to_v.weight"),
}


# --- TAESD family: layouts -> our module (models/taesd.py: encoder.{i} / decoder.{i}) --------------------

TAESD_DIFFUSERS: dict[str, str | None] = {
    "encoder.layers.{}.{...}": "encoder.{}.{...}",
    # diffusers' DecoderTiny applies the soft clamp in forward(), so its layer i is TAESD's layer i + 1
    **{f"decoder.layers.{i}.{{...}}": f"decoder.{i + 1}.{{...}}" for i in range(40)},
}
TAESD_MODULE: dict[str, str | None] = {"encoder.{...}": "encoder.{...}", "decoder.{...}": "decoder.{...}"}
# ComfyUI's combined state dict; its vae_scale / vae_shift scalars are read by the loader, not loaded
TAESD_COMFYUI: dict[str, str | None] = {"taesd_encoder.{...}": "encoder.{...}", "taesd_decoder.{...}": "decoder.{...}"}


def taesd_sequential(part: str) -> dict[str, str | None]:
    """A bare ``taesd_encoder.pth`` / ``taesd_decoder.pth`` (one nn.Sequential) -> our ``encoder.``/``decoder.``."""
    return {"{...}": f"{part}.{{...}}"}
