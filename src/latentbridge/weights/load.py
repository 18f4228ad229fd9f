"""``load_vae``: build a :class:`~latentbridge.vae.VAE` from any identified weight file, offline and strictly.

Big architectures are diffusers' own classes (``AutoencoderKL``, ``AutoencoderKLFlux2``, ``AutoencoderKLWan``,
``AutoencoderDC``) with a config derived from the file itself — channels from tensor shapes, depth from key
indices — or read from a diffusers folder's ``config.json``. No hub access is needed (``from_single_file``
would fetch a config). Small ones are ours (``latentbridge.models``). Loading is strict: the module is built
on the meta device, every key it expects must be in the file and every key the file holds for the requested
parts must be used, or :class:`~latentbridge.errors.WeightsError` lists both, sorted.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn

from latentbridge._device import check_device
from latentbridge._guard import load_json
from latentbridge.errors import IncompatibleError, MissingPartError, ShapeError, WeightsError
from latentbridge.formats import LatentFormat, NormStats, get_format, pack, unpack
from latentbridge.run import parse_dtype
from latentbridge.vae import VAE, Fn, as_vae, bind_autoencoder_dc, from_autoencoder_kl
from latentbridge.weights import keymaps as K
from latentbridge.weights._header import Header, load_tensors, read_header
from latentbridge.weights.info import WeightsInfo, identify
from latentbridge.weights.signatures import Match, Signature, count_levels, owner

PartName = Literal["available", "both", "encoder", "decoder"]
PARTS: tuple[str, ...] = ("available", "both", "encoder", "decoder")
HUB_PREFIX = "hub:"
# Files a hub download fetches: a VAE repo's root, or a pipeline repo's vae/ folder — never the UNet.
HUB_PATTERNS: tuple[str, ...] = (
    "config.json",
    "diffusion_pytorch_model.safetensors",
    "model_index.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
# Keys a module may expect that files legitimately omit, with the value they get.
OPTIONAL_KEYS: dict[str, Callable[[], torch.Tensor]] = {
    "bn.num_batches_tracked": lambda: torch.tensor(0, dtype=torch.long),  # BatchNorm step counter, unused in eval
}
MAX_LISTED = 40  # keys listed per category in a strict-load error


# --- resolving the spec ---------------------------------------------------------------------------------


def _hub_error(what: str, exc: BaseException | None = None) -> WeightsError:
    detail = f" ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})" if exc else ""
    return WeightsError(
        f"could not download {what} from the Hugging Face hub{detail}. latentbridge never needs the network "
        "otherwise: download the VAE once (huggingface-cli download …) and pass its local file or folder"
    )


def download(repo_id: str, filename: str | None = None) -> Path:
    """Download a VAE from the Hugging Face hub (``huggingface_hub``), returning the local file or folder.

    Without ``filename`` only the VAE files of the repo are fetched (:data:`HUB_PATTERNS`).
    Raises WeightsError when huggingface_hub is missing or the download fails (no network, no such repo).
    """
    try:
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError as exc:
        raise WeightsError(
            f"loading {HUB_PREFIX}{repo_id} needs huggingface_hub, which is not installed: "
            "pip install 'latentbridge[hub]', or pass a local file or folder"
        ) from exc
    try:
        if filename is not None:
            return Path(huggingface_hub.hf_hub_download(repo_id, filename))
        return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=list(HUB_PATTERNS)))
    except (OSError, ValueError, HfHubHTTPError) as exc:
        raise _hub_error(f"{repo_id}{'/' + filename if filename else ''}", exc) from exc


def resolve_spec(spec: str | os.PathLike[str], from_hub: str | None = None) -> tuple[Path, dict[str, Any]]:
    """(local path, extra) for one spec: a path, a zoo name, ``hub:ID``, or a file inside ``from_hub``.

    ``extra`` carries what a zoo name adds: its format name and (when zoo.json has one) its diffusers config.
    """
    from latentbridge import zoo

    text = os.fspath(spec)
    if from_hub is not None:
        return download(from_hub, text or None), {}
    if text.startswith(HUB_PREFIX):
        return download(text[len(HUB_PREFIX) :]), {}
    if zoo.is_zoo_name(text):
        path = zoo.zoo_path(text)
        if not path.is_file():
            raise WeightsError(
                f"zoo VAE {text!r} is not built in this installation ({path} is missing): run scripts/train_zoo.py, "
                "or reinstall latentbridge"
            )
        config = zoo.zoo_info().get(text, {}).get("config")
        return path, {"format": text, "config": config if isinstance(config, dict) else None}
    return Path(text).expanduser(), {}


# --- strict state-dict loading --------------------------------------------------------------------------


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return f"[{shown}{f', … and {len(keys) - MAX_LISTED} more' if len(keys) > MAX_LISTED else ''}]"


def strict_error(what: str, missing: list[str], unexpected: list[str], fix: str) -> WeightsError:
    """A WeightsError naming the sorted missing and unexpected keys (also kept as attributes)."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys {_listed(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys {_listed(unexpected)}")
    err = WeightsError(f"strict load of {what} failed: {'; '.join(parts)}; {fix}")
    err.missing, err.unexpected = missing, unexpected  # type: ignore[attr-defined]
    return err


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], *, what: str, keep: tuple[str, ...]) -> None:
    """Load ``state`` into a meta-device ``module`` (by assignment), strictly, for the key prefixes ``keep``.

    Every expected key under ``keep`` must be present (except :data:`OPTIONAL_KEYS`), every key of
    ``state`` must be expected, and shapes must agree (a 1×1 conv weight may fill a linear weight).
    """
    expected = {k: v.shape for k, v in module.state_dict().items() if k.startswith(keep)}
    for key, make in OPTIONAL_KEYS.items():
        if key in expected and key not in state:
            state[key] = make()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise strict_error(
            what,
            missing,
            unexpected,
            "the file does not hold a complete network of the identified architecture "
            "(truncated, pruned, or a different variant); use the original file",
        )
    bad = []
    for key, shape in expected.items():
        t = state[key]
        if t.shape == shape:
            continue
        if (
            t.numel() == math.prod(shape)
            and tuple(t.shape[: len(shape)]) == tuple(shape)
            and set(t.shape[len(shape) :]) <= {1}
        ):
            state[key] = t.reshape(shape)  # a 1×1 convolution stored where the module has a linear layer
            continue
        bad.append(f"{key}: file {tuple(t.shape)} vs module {tuple(shape)}")
    if bad:
        raise WeightsError(
            f"strict load of {what} failed: {len(bad)} tensors have the wrong shape {_listed(sorted(bad))}; "
            "the configuration (stored with the file, or derived from its shapes) does not fit its tensors: "
            "pass the diffusers folder with the model's own config.json"
        )
    module.load_state_dict(state, strict=False, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:  # pragma: no cover - guarded by the key comparison above
        raise WeightsError(f"internal error loading {what}: {left[:5]} were never loaded")


def _build_meta(cls: type[nn.Module], config: dict[str, Any], what: str) -> nn.Module:
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    kwargs = {k: v for k, v in config.items() if k in accepted}
    try:
        with torch.device("meta"):
            return cls(**kwargs)
    # what diffusers' constructors raise on a configuration they cannot build (a damaged stored config: lists of
    # different lengths -> IndexError, a missing block type -> KeyError, values of the wrong type -> TypeError …)
    except (ValueError, TypeError, AssertionError, ZeroDivisionError, IndexError, KeyError, AttributeError) as exc:
        raise WeightsError(
            f"cannot build {cls.__name__} for {what} from its configuration ({type(exc).__name__}: {exc}); "
            "pass a diffusers folder with its config.json"
        ) from exc


# --- reading the file -----------------------------------------------------------------------------------


def _file_state(
    header: Header, info: WeightsInfo, parts: set[str], keymap: K.KeyMap | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Tensors of the requested parts (keys with the VAE prefix stripped), and keys that belong to no part.

    Keys the layout's key map drops (``None``: training-only tensors) are neither loaded nor stray.
    """
    m = _must_identify(info)
    sub = header.sub(m.prefix)
    wanted, stray = [], []
    for key in sub.tensors:
        if keymap and K.rename(key, keymap) is None:
            continue
        part = owner(m, key)
        if part == "shared" or part in parts:
            wanted.append(key)
        elif part is None:
            stray.append(key)
    return load_tensors(sub, wanted), sorted(stray)


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


CONFIG_METADATA_KEY = "config"  # safetensors metadata holding the diffusers constructor JSON (zoo files)


def stored_config(
    header: Header, extra_config: Mapping[str, Any] | None, class_name: str
) -> tuple[dict[str, Any], str]:
    """(the diffusers config stored with the weights, where it came from), or ({}, "") when none is.

    In order: the zoo's zoo.json entry, a diffusers folder's config.json, the safetensors metadata ``config``.
    A stored config is exact where shapes are not (GroupNorm groups, activations); the strict load still
    checks it against every tensor.
    """
    candidates: list[tuple[Any, str]] = [(extra_config, "zoo.json"), (header.config, "config.json")]
    raw = header.metadata.get(CONFIG_METADATA_KEY)
    if raw:
        fix = "remove that metadata entry (the config is then derived from the tensor shapes)"
        what = f"damaged safetensors metadata '{CONFIG_METADATA_KEY}'"
        candidates.append((load_json(raw, str(header.path), what, fix), f"metadata '{CONFIG_METADATA_KEY}'"))
    for config, source in candidates:
        if not config:
            continue
        if not isinstance(config, Mapping):
            raise WeightsError(f"{header.source}: the {source} config is not a JSON object; restore or remove it")
        named = config.get("_class_name")
        if named and named != class_name:
            raise WeightsError(
                f"{header.source}: {source} names {named} but the weights are {class_name}; "
                "the config belongs to another model: restore the right config.json"
            )
        return dict(config), source
    return {}, ""


# --- configs derived from shapes ------------------------------------------------------------------------


def kl_config(shapes: Mapping[str, tuple[int, ...]], channels: int, flux2: bool) -> dict[str, Any]:
    """An AutoencoderKL(Flux2) config from diffusers-named tensor shapes."""
    enc = "encoder.conv_in.weight" in shapes
    dec = "decoder.conv_in.weight" in shapes
    keys = list(shapes)
    levels = count_levels(
        "encoder.down_blocks.{}.resnets.0.conv1.weight" if enc else "decoder.up_blocks.{}.resnets.0.conv1.weight", keys
    )
    enc_boc = [shapes[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"][0] for i in range(levels)] if enc else []
    dec_boc = (
        [shapes[f"decoder.up_blocks.{levels - 1 - i}.resnets.0.conv1.weight"][0] for i in range(levels)] if dec else []
    )
    if enc:
        per_block = count_levels("encoder.down_blocks.0.resnets.{}.conv1.weight", keys)
    else:
        per_block = count_levels("decoder.up_blocks.0.resnets.{}.conv1.weight", keys) - 1
    config: dict[str, Any] = {
        "in_channels": shapes["encoder.conv_in.weight"][1] if enc else 3,
        "out_channels": shapes["decoder.conv_out.weight"][0] if dec else 3,
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": tuple(enc_boc or dec_boc),
        "layers_per_block": per_block,
        "latent_channels": channels,
        "use_quant_conv": "quant_conv.weight" in shapes,
        "use_post_quant_conv": "post_quant_conv.weight" in shapes,
        "mid_block_add_attention": any(".mid_block.attentions." in k for k in keys),
    }
    if flux2 and dec_boc and enc_boc and dec_boc != enc_boc:
        config["decoder_block_out_channels"] = tuple(dec_boc)
    return config


def hunyuan_video_config(shapes: Mapping[str, tuple[int, ...]], channels: int) -> dict[str, Any]:
    """An AutoencoderKLHunyuanVideo config from diffusers-named tensor shapes.

    Widths, depth, resnets per level, attention and channels come from the shapes; the temporal compression (4)
    holds no weights of its own (a causal conv's stride) and is the released HunyuanVideo VAE's.
    """
    enc = "encoder.conv_in.conv.weight" in shapes
    keys = list(shapes)
    block = "encoder.down_blocks.{}.resnets.0.conv1.conv.weight"
    if not enc:
        block = "decoder.up_blocks.{}.resnets.0.conv1.conv.weight"
    levels = count_levels(block, keys)
    if enc:
        widths = [shapes[block.format(i)][0] for i in range(levels)]
        per_block = count_levels("encoder.down_blocks.0.resnets.{}.conv1.conv.weight", keys)
    else:
        widths = [shapes[block.format(levels - 1 - i)][0] for i in range(levels)]
        per_block = count_levels("decoder.up_blocks.0.resnets.{}.conv1.conv.weight", keys) - 1
    return {
        "in_channels": shapes["encoder.conv_in.conv.weight"][1] if enc else 3,
        "out_channels": shapes["decoder.conv_out.conv.weight"][0] if "decoder.conv_out.conv.weight" in shapes else 3,
        "latent_channels": channels,
        "down_block_types": ("HunyuanVideoDownBlock3D",) * levels,
        "up_block_types": ("HunyuanVideoUpBlock3D",) * levels,
        "block_out_channels": tuple(widths),
        "layers_per_block": per_block,
        "spatial_compression_ratio": 2 ** (levels - 1),
        "temporal_compression_ratio": 4,
        "mid_block_add_attention": any(".mid_block.attentions." in k for k in keys),
    }


def wan_config(shapes: Mapping[str, tuple[int, ...]], channels: int, residual: bool) -> dict[str, Any]:
    """An AutoencoderKLWan config from diffusers-named tensor shapes (Wan 2.1 flat, Wan 2.2 residual)."""
    if "encoder.conv_in.weight" not in shapes:
        return wan_decoder_config(shapes, channels, residual)
    keys = list(shapes)
    base = shapes["encoder.conv_in.weight"][0]
    in_ch = shapes["encoder.conv_in.weight"][1]
    mult: list[int] = []
    temporal: list[bool] = []
    if residual:
        levels = count_levels("encoder.down_blocks.{}.resnets.0.conv1.weight", keys)
        per = count_levels("encoder.down_blocks.0.resnets.{}.conv1.weight", keys)
        for lv in range(levels):
            mult.append(shapes[f"encoder.down_blocks.{lv}.resnets.0.conv1.weight"][0] // base)
            if lv < levels - 1:
                temporal.append(f"encoder.down_blocks.{lv}.downsampler.time_conv.weight" in shapes)
    else:
        n = count_levels("encoder.down_blocks.{}.", keys)
        run = 0
        per = 0
        for i in range(n):
            if f"encoder.down_blocks.{i}.conv1.weight" in shapes:
                if run == 0:
                    mult.append(shapes[f"encoder.down_blocks.{i}.conv1.weight"][0] // base)
                run += 1
            else:  # a resample closes the level
                per = per or run
                run = 0
                temporal.append(f"encoder.down_blocks.{i}.time_conv.weight" in shapes)
        per = per or run
    out_w = shapes["decoder.conv_out.weight"][1]
    patch = math.isqrt(in_ch // 3)
    return {
        "base_dim": base,
        "decoder_base_dim": None if out_w == base * mult[0] else out_w // mult[0],
        "z_dim": channels,
        "dim_mult": mult,
        "num_res_blocks": per,
        "attn_scales": [],
        "temperal_downsample": temporal,
        "is_residual": residual,
        "in_channels": in_ch,
        "out_channels": shapes["decoder.conv_out.weight"][0],
        "patch_size": patch if patch > 1 else None,
        "scale_factor_spatial": 2 ** len(temporal) * patch,
        "scale_factor_temporal": 2 ** sum(temporal),
    }


def wan_decoder_config(shapes: Mapping[str, tuple[int, ...]], channels: int, residual: bool) -> dict[str, Any]:
    """An AutoencoderKLWan config from a decoder alone (a decoder-only file; the encoder is built, then dropped).

    Level widths come from each up block's first resnet, relative to the last one's: ``dim_mult[0] = 1`` as in
    every Wan release (the strict load checks every tensor against the result). Temporal down-sampling is the
    decoder's temporal up-sampling reversed.
    """
    keys = list(shapes)
    levels = count_levels("decoder.up_blocks.{}.resnets.0.conv1.weight", keys)
    widths = [shapes[f"decoder.up_blocks.{levels - 1 - j}.resnets.0.conv1.weight"][0] for j in range(levels)]
    time_up = "upsampler.time_conv" if residual else "upsamplers.0.time_conv"
    temporal_up = [f"decoder.up_blocks.{i}.{time_up}.weight" in shapes for i in range(levels - 1)]
    out_ch = shapes["decoder.conv_out.weight"][0]
    patch = math.isqrt(out_ch // 3)
    return {
        "base_dim": widths[0],
        "decoder_base_dim": None,
        "z_dim": channels,
        "dim_mult": [w // widths[0] for w in widths],
        "num_res_blocks": count_levels("decoder.up_blocks.0.resnets.{}.conv1.weight", keys) - 1,
        "attn_scales": [],
        "temperal_downsample": temporal_up[::-1],
        "is_residual": residual,
        "in_channels": out_ch,
        "out_channels": out_ch,
        "patch_size": patch if patch > 1 else None,
        "scale_factor_spatial": 2 ** len(temporal_up) * patch,
        "scale_factor_temporal": 2 ** sum(temporal_up),
    }


def dc_config(shapes: Mapping[str, tuple[int, ...]], channels: int) -> dict[str, Any]:
    """An AutoencoderDC config from diffusers-named tensor shapes.

    Block types, widths, depths, attention scales, resampling kinds and the decoder's per-stage norm
    (BatchNorm leaves running statistics) come from the shapes. Activations hold no weights: every released
    DC-AE pairs BatchNorm stages with ReLU and RMSNorm stages with SiLU, and that rule is applied. The in/out
    shortcuts keep diffusers' defaults (on in every release), and so does the attention head width (32, as in
    every release) when no multiscale branch reveals it. A stage without blocks (f32c32-in/mix) holds no
    tensors and its width is unused: it is set to the next stage's. A stored config overrides all this.
    """
    keys = list(shapes)
    conv_in = shapes.get("encoder.conv_in.weight") or shapes["encoder.conv_in.conv.weight"]
    out: dict[str, Any] = {"latent_channels": channels, "in_channels": conv_in[1]}
    for side, blocks in (("encoder", "down_blocks"), ("decoder", "up_blocks")):
        stages = count_levels(f"{side}.{blocks}.{{}}.", keys, by_max=True)
        types, widths, layers, scales, norms = [], [], [], [], []
        for s in range(stages):
            n = count_levels(f"{side}.{blocks}.{s}.{{}}.", keys, by_max=True)
            resampled = n > 0 and s < stages - 1  # encoder stages end with a downsampler, decoder ones start with one
            idx = range(1 if side == "decoder" and resampled else 0, n - (1 if side == "encoder" and resampled else 0))
            layers.append(len(idx))
            head = f"{side}.{blocks}.{s}.{idx[0]}" if len(idx) else ""
            if head and f"{head}.attn.to_q.weight" in shapes:
                types.append("EfficientViTBlock")
                widths.append(shapes[f"{head}.attn.to_q.weight"][0])
                n_scales = count_levels(f"{head}.attn.to_qkv_multiscale.{{}}.", keys)
                scales.append(
                    tuple(shapes[f"{head}.attn.to_qkv_multiscale.{j}.proj_in.weight"][-1] for j in range(n_scales))
                )
                if n_scales:  # proj_out is grouped per head: its weight is [3·width, head_dim, 1, 1]
                    out["attention_head_dim"] = shapes[f"{head}.attn.to_qkv_multiscale.0.proj_out.weight"][1]
            else:
                types.append("ResBlock")
                widths.append(shapes[f"{head}.conv1.weight"][0] if head else 0)
                scales.append(())
            stage_keys = [k for k in keys if k.startswith(f"{side}.{blocks}.{s}.")]
            norms.append("batch_norm" if any(k.endswith(".running_mean") for k in stage_keys) else "rms_norm")
        for s in reversed(range(stages - 1)):
            widths[s] = widths[s] or widths[s + 1]  # stages without blocks: width unused
        if 0 in widths:
            raise WeightsError(
                f"cannot tell the DC-AE {side} widths from its shapes: pass the diffusers folder with config.json"
            )
        for s in range(stages - 1):
            if layers[s] == 0:
                continue
            if side == "encoder":
                conv = shapes[f"encoder.down_blocks.{s}.{layers[s]}.conv.weight"]
                out["downsample_block_type"] = "pixel_unshuffle" if conv[0] * 4 == widths[s + 1] else "Conv"
            else:
                conv = shapes[f"decoder.up_blocks.{s}.0.conv.weight"]
                out["upsample_block_type"] = "pixel_shuffle" if conv[0] == 4 * widths[s] else "interpolate"
            break
        out[f"{side}_block_types"] = tuple(types)
        out[f"{side}_block_out_channels"] = tuple(widths)
        out[f"{side}_layers_per_block"] = tuple(layers)
        out[f"{side}_qkv_multiscales"] = tuple(scales)
        if side == "decoder":
            out["decoder_norm_types"] = tuple(norms)
            out["decoder_act_fns"] = tuple("relu" if n == "batch_norm" else "silu" for n in norms)
    return out


# --- builders -------------------------------------------------------------------------------------------

_KL_KEEP = {"encoder": ("encoder.", "quant_conv."), "decoder": ("decoder.", "post_quant_conv."), "shared": ("bn.",)}
_HALF_MODULES = {"encoder": ("encoder", "quant_conv"), "decoder": ("decoder", "post_quant_conv")}


def _keep(parts: set[str], table: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(p for name, prefixes in table.items() if name in parts or name == "shared" for p in prefixes)


def _drop_halves(model: nn.Module, parts: set[str]) -> None:
    for half, names in _HALF_MODULES.items():
        if half not in parts:
            for name in names:
                if getattr(model, name, None) is not None:
                    setattr(model, name, None)


def _diffusers_state(
    header: Header, info: WeightsInfo, parts: set[str]
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, ...]], list[str]]:
    """(state dict in diffusers names for ``parts``, all shapes in diffusers names, stray keys)."""
    m = _must_identify(info)
    tensors = header.sub(m.prefix).tensors
    keymap, fused = _keymap(m.signature, list(tensors))
    state, stray = _file_state(header, info, parts, keymap)
    shapes = {new: v.shape for k, v in tensors.items() if (new := K.rename(k, keymap)) is not None}
    return K.split_fused(K.remap(state, keymap), fused), K.split_fused_shapes(shapes, fused), stray


def _keymap(sig: Signature, keys: list[str]) -> tuple[K.KeyMap, K.FusedMap]:
    """(key map to diffusers names, fused tensors to split) for a signature's layout; depth read from ``keys``."""
    if sig.architecture == "autoencoder_kl_hunyuan_video":
        if sig.layout == "diffusers":
            return {}, {}
        levels = count_levels("encoder.down.{}.block.0.conv1.conv.weight", keys) or count_levels(
            "decoder.up.{}.block.0.conv1.conv.weight", keys
        )
        return K.hunyuan_video_to_diffusers(levels), {}
    if sig.layout in ("ldm", "bfl"):
        levels = count_levels("encoder.down.{}.block.0.conv1.weight", keys) or count_levels(
            "decoder.up.{}.block.0.conv1.weight", keys
        )
        return K.ldm_to_diffusers(levels), {}
    if sig.layout == "wan" and sig.variant == "residual":
        # resnets per encoder level; a decoder-only file has num_res_blocks + 1 per level
        n_res = count_levels("encoder.downsamples.0.downsamples.{}.residual.2.weight", keys)
        n_res = n_res or count_levels("decoder.upsamples.0.upsamples.{}.residual.2.weight", keys) - 1
        return K.wan22_to_diffusers(n_res), {}
    if sig.layout == "wan" and any(k.startswith("encoder.") for k in keys):
        n_res = 0  # resnets before the first resample of the flat encoder list
        while f"encoder.downsamples.{n_res}.residual.2.weight" in keys:
            n_res += 1
        return K.wan_to_diffusers(count_levels("encoder.downsamples.{}.resample.1.weight", keys) + 1, n_res), {}
    if sig.layout == "wan":  # decoder only: each level's num_res_blocks + 1 resnets, then its upsampler
        ups = sorted(
            {int(m[1]) for k in keys if (m := re.fullmatch(r"decoder\.upsamples\.(\d+)\.resample\.1\.weight", k))}
        )
        return K.wan_to_diffusers(len(ups) + 1, ups[0] - 1 if ups else 0), {}
    if sig.layout == "efficientvit":
        return K.DCAE_EFFICIENTVIT, K.DCAE_FUSED
    return {}, {}


def _check_stray(stray: list[str], what: str) -> None:
    if stray:
        raise strict_error(
            what, [], stray, "these keys belong to no part of the identified VAE: remove them or use the original file"
        )


def _build_diffusers(header: Header, info: WeightsInfo, parts: set[str], ctx: _Ctx) -> VAE:
    from diffusers import AutoencoderDC, AutoencoderKL, AutoencoderKLFlux2, AutoencoderKLHunyuanVideo, AutoencoderKLWan

    m = _must_identify(info)
    sig = m.signature
    what = f"{header.source} ({sig.name})"
    state, shapes, stray = _diffusers_state(header, info, parts)
    _check_stray(stray, what)
    builders: dict[str, tuple[Any, Callable[[], dict[str, Any]]]] = {  # diffusers class, config maker
        "autoencoder_kl": (AutoencoderKL, lambda: kl_config(shapes, m.channels, flux2=False)),
        "autoencoder_kl_flux2": (AutoencoderKLFlux2, lambda: kl_config(shapes, m.channels, flux2=True)),
        "autoencoder_kl_wan": (
            AutoencoderKLWan,
            lambda: wan_config(shapes, m.channels, residual=sig.variant == "residual"),
        ),
        "autoencoder_dc": (AutoencoderDC, lambda: dc_config(shapes, m.channels)),
        "autoencoder_kl_hunyuan_video": (AutoencoderKLHunyuanVideo, lambda: hunyuan_video_config(shapes, m.channels)),
    }
    cls, derive = builders[sig.architecture]
    config, _source = stored_config(header, ctx.config, cls.__name__)
    config = config or derive()
    fmt = ctx.format
    if fmt is not None and sig.architecture == "autoencoder_kl":
        config.setdefault("scaling_factor", fmt.scale)
    if fmt is not None and sig.architecture == "autoencoder_kl_wan" and len(fmt.mean) == m.channels:
        config.setdefault("latents_mean", list(fmt.mean))
        config.setdefault("latents_std", list(fmt.std))
    model = _build_meta(cls, config, what)
    stats = None
    if sig.architecture == "autoencoder_kl_flux2":
        eps = float(cast(Any, model).config.batch_norm_eps)
        stats = NormStats.from_running(
            state["bn.running_mean"], state["bn.running_var"], eps, f"bn.running_mean/var of {header.path.name}"
        )
    _drop_halves(model, parts)
    load_strict(model, _cast(state, ctx.dtype), what=what, keep=_keep(parts, _KL_KEEP))
    model.to(ctx.device).eval().requires_grad_(False)
    if sig.architecture == "autoencoder_dc":
        vae = _dc_value(model, ctx, m)
    else:
        vae = from_autoencoder_kl(model, name=ctx.name, fmt=fmt, sha256=ctx.sha256, architecture=sig.architecture)
    return _replace(vae, parts, spatial_ratio=m.spatial_ratio, channels=m.channels, dims=sig.dims, stats=stats)


def _dc_value(model: nn.Module, ctx: _Ctx, m: Match) -> VAE:
    encode, decode = bind_autoencoder_dc(model)
    return VAE(
        ctx.name,
        ctx.sha256,
        "autoencoder_dc",
        ctx.format,
        "raw",
        m.channels,
        m.spatial_ratio,
        2,
        encode,
        decode,
        model,
        bind=bind_autoencoder_dc,
    )


def _replace(vae: VAE, parts: set[str], **changes: Any) -> VAE:
    if "encoder" not in parts:
        changes["encode"] = None
    if "decoder" not in parts:
        changes["decode"] = None
    return dataclasses.replace(vae, **changes)


def _build_taesd(files: Mapping[str, tuple[Header, WeightsInfo]], parts: set[str], ctx: _Ctx, m: Match) -> VAE:
    from latentbridge.models.taesd import TAESD, TAESDConfig

    sig = m.signature
    cfg = TAESDConfig(m.channels, sig.variant)
    with torch.device("meta"):
        model = TAESD(cfg, encoder="encoder" in parts, decoder="decoder" in parts)
    state: dict[str, torch.Tensor] = {}
    scalars: dict[str, float] = {}
    for part in sorted(parts):
        header, info = files[part]
        got, stray = _file_state(header, info, {part})
        _check_stray(stray, str(header.source))
        file_sig = _must_identify(info).signature
        scalars.update(_read_scalars(got, file_sig, header))
        keymap = {
            "sequential": K.taesd_sequential(part),
            "module": K.TAESD_MODULE,
            "diffusers": K.TAESD_DIFFUSERS,
            "comfyui": K.TAESD_COMFYUI,
        }[file_sig.layout]
        state.update(K.remap(got, keymap))
    what = " + ".join(str(files[p][0].source) for p in sorted(parts)) + f" ({sig.name})"
    fmt = _format_from_scalars(scalars, m, ctx.format, what)
    load_strict(model, _cast(state, ctx.dtype), what=what, keep=tuple(f"{p}." for p in parts))
    model.to(ctx.device).eval().requires_grad_(False)
    patch = ctx.patch
    native_c, native_r = m.channels * patch * patch, m.spatial_ratio * patch
    name = ctx.name

    def bind(net: nn.Module) -> tuple[Fn | None, Fn | None]:
        taesd: Any = net

        def encode(images: torch.Tensor) -> torch.Tensor:
            return pack(taesd.encode(images * 0.5 + 0.5), patch)

        def decode(latents: torch.Tensor) -> torch.Tensor:
            if latents.ndim != 4 or latents.shape[1] != native_c:
                raise ShapeError(
                    f"{name} decodes model-space latents [N, {native_c}, h, w], got shape {tuple(latents.shape)}; "
                    "convert raw latents to model space first (latentbridge.formats.raw_to_model)"
                )
            return taesd.decode(unpack(latents, patch)) * 2 - 1

        return encode, decode

    encode, decode = bind(model)
    return VAE(
        ctx.name,
        ctx.sha256,
        "taesd",
        fmt,
        "model",
        native_c,
        native_r,
        2,
        encode if "encoder" in parts else None,
        decode if "decoder" in parts else None,
        model,
        bind=bind,
    )


def _read_scalars(state: dict[str, torch.Tensor], sig: Signature, header: Header) -> dict[str, float]:
    """Pop the signature's format scalars (ComfyUI's vae_scale / vae_shift) from ``state`` as floats."""
    out = {}
    for key in sig.format_scalars:
        if key not in state:
            continue
        value = state.pop(key)
        if value.numel() != 1 or not value.is_floating_point():
            raise WeightsError(
                f"{header.source}: {key} should hold one floating-point number (the latent format's "
                f"{'scale' if key == sig.format_scalars[0] else 'shift'}), got a {value.dtype} tensor of shape "
                f"{tuple(value.shape)}; the file is damaged or not ComfyUI's TAESD: use the original file"
            )
        out[key] = float(value.reshape(()))
    return out


# ComfyUI stores the scalars in the file's dtype: bf16 keeps 8 bits of mantissa (relative error ≤ 2⁻⁸ ≈ 0.4%),
# while the formats a TAESD can serve differ by far more (sd1 0.18215 vs sdxl 0.13025; sd3 1.5305 vs flux1 0.3611).
SCALAR_RTOL = 0.01
SCALAR_ATOL = 1e-3  # for shifts of 0


def _format_from_scalars(
    scalars: Mapping[str, float], m: Match, chosen: LatentFormat | None, what: str
) -> LatentFormat | None:
    """The format named by a file's (scale, shift) scalars, checked against the one already chosen.

    Returns ``chosen`` when the file carries no scalars or they name no candidate format; the scalars' format
    when nothing was chosen. Raises IncompatibleError when they name a different candidate than ``chosen``.
    """
    if not scalars:
        return chosen
    scale_key, shift_key = m.signature.format_scalars
    scale, shift = scalars.get(scale_key, 1.0), scalars.get(shift_key, 0.0)
    named = [
        f
        for f in (get_format(c) for c in m.candidates)
        if math.isclose(f.scale, scale, rel_tol=SCALAR_RTOL, abs_tol=SCALAR_ATOL)
        and math.isclose(f.shift, shift, rel_tol=SCALAR_RTOL, abs_tol=SCALAR_ATOL)
    ]
    if len(named) != 1:
        return chosen
    if chosen is not None and chosen.name != named[0].name:
        raise IncompatibleError(
            f"{what} carries {scale_key}={scale:.5g}, {shift_key}={shift:.5g}, the scaling of {named[0].name!r}, "
            f"but format {chosen.name!r} was chosen (scale {chosen.scale:.5g}, shift {chosen.shift:.5g}); "
            f"pass format={named[0].name!r} or leave format out"
        )
    return named[0]


def _build_vaeapprox(header: Header, info: WeightsInfo, ctx: _Ctx, m: Match) -> VAE:
    from latentbridge.models.vaeapprox import VAEApprox

    with torch.device("meta"):
        model = VAEApprox(m.channels)
    state, stray = _file_state(header, info, {"decoder"})
    _check_stray(stray, str(header.source))
    load_strict(model, _cast(state, ctx.dtype), what=f"{header.source} ({m.name})", keep=("conv",))
    model.to(ctx.device).eval().requires_grad_(False)
    return VAE(
        ctx.name,
        ctx.sha256,
        "vaeapprox",
        ctx.format,
        "model",
        m.channels,
        m.spatial_ratio,
        2,
        None,
        model,
        model,
        decode_ratio=2,
        bind=_bind_decoder_module,
    )


def _bind_decoder_module(net: nn.Module) -> tuple[Fn | None, Fn | None]:
    """A module that is itself the decoder (VAEApprox)."""
    return None, net


def _build_vaelight(files: Mapping[str, tuple[Header, WeightsInfo]], parts: set[str], ctx: _Ctx, m: Match) -> VAE:
    from latentbridge.models.vaelight import VAELight

    enc = files["encoder"][0].path if "encoder" in parts else None
    dec = files["decoder"][0].path if "decoder" in parts else None
    model = VAELight(enc, dec)
    return VAE(
        ctx.name,
        ctx.sha256,
        "vaelight",
        ctx.format,
        "raw",
        m.channels,
        m.spatial_ratio,
        2,
        model.encode if enc is not None else None,
        model.decode if dec is not None else None,
        None,
    )


# --- the entry point ------------------------------------------------------------------------------------


class _Ctx:
    """What every builder needs besides the files."""

    def __init__(
        self,
        name: str,
        sha256: str,
        fmt: LatentFormat | None,
        patch: int,
        device: Any,
        dtype: torch.dtype,
        config: Mapping[str, Any] | None,
    ) -> None:
        self.name, self.sha256, self.format, self.patch = name, sha256, fmt, patch
        self.device, self.dtype, self.config = device, dtype, config


def _must_identify(info: WeightsInfo) -> Match:
    if info.match is None:
        raise WeightsError(f"cannot load {info.path}: {info.notes[0] if info.notes else 'no VAE found'}")
    return info.match


def _parts_wanted(sig: Signature, held: set[str], part: str, names: str) -> set[str]:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    declared = {p.name for p in sig.parts}
    if part == "available":
        return declared & held
    wanted = declared if part == "both" else {part}
    if not wanted <= declared:
        raise WeightsError(f"{names}: a {sig.title} has no {part}; it has {', '.join(sorted(declared))}")
    lacking = sorted(wanted - held)
    if lacking:
        have = " and ".join(sorted(held))
        hint = (
            "pass part='decoder' (or part='encoder')"
            if part == "both"
            else f"pass the file that holds the {lacking[0]}"
        )
        raise MissingPartError(
            f"{names} holds only the {have} of a {sig.title}, but part={part!r} needs the {' and '.join(lacking)}: "
            f"{hint}, or give both files: load_vae([encoder_file, decoder_file]) (--vae ENCODER,DECODER)",
            held=tuple(sorted(held)),
            lacking=tuple(lacking),
        )
    return wanted


def load_vae(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | nn.Module,
    *,
    format: str | LatentFormat | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    part: PartName | str = "available",
    from_hub: str | None = None,
    hash: bool | None = True,
) -> VAE:
    """Load a VAE (or half of one) from a weight file, offline and strictly — or wrap one already loaded.

    Args:
        spec: a weight file, a diffusers (pipeline) folder, a zoo name ("zoo-a"), ``"hub:<repo id>"``, a list of
            files that together hold one network (a TAESD ``*_encoder.pth`` and ``*_decoder.pth``), or a diffusers
            autoencoder module already in memory (``pipe.vae``: wrapped as it is by :func:`~latentbridge.as_vae`).
        format: the latent format it serves; wins over everything the file says when its geometry fits.
        device: where the module goes (default the CPU; a module in memory stays where it is).
        dtype: parameter dtype, a torch dtype or "fp32"/"bf16"/"fp16" (fp32 by default; fp16 files are upcast;
            a module in memory keeps its own — the codec runs other dtypes on a cast copy).
        part: "available" (default: whatever halves the files hold — a decoder-only file gives a decoder),
            "both" (every half the architecture has, or an error naming the missing one), "encoder" or "decoder"
            (the other half is not built).
        from_hub: a hub repo id; ``spec`` is then a file name inside it (needs network and huggingface_hub).
        hash: compute the weight file's sha256 (default: official files are then recognised by content, at
            about 1 s per 500 MB); None hashes only small files, False never.

    Returns:
        A :class:`~latentbridge.vae.VAE`: ``encode`` takes images in [-1, 1], ``decode`` returns about [-1, 1];
        latents in ``native_space`` ("raw" for full VAEs and VAElight, "model" for TAESD and VAEApprox).

    Raises:
        WeightsError: no VAE, unknown or ambiguous architecture, missing half, strict-load failure,
            hub download failure.
        FileFormatError: unreadable or corrupt file.
        IncompatibleError: ``format`` does not fit the file.
    """
    if isinstance(spec, nn.Module):
        if device is not None or dtype is not None:
            raise IncompatibleError(
                f"load_vae wraps a {type(spec).__name__} already in memory as it is, so device/dtype do not apply: "
                "move it yourself (module.to(...)), or pass Run(device=..., dtype=...) to the operation"
            )
        if part not in ("available", "both"):
            raise IncompatibleError(f"part={part!r} applies to files; a module in memory is used with its halves")
        return as_vae(spec, format=format)
    specs = list(spec) if isinstance(spec, Sequence) and not isinstance(spec, str) else [spec]
    if not specs:
        raise ValueError("load_vae needs at least one file")
    torch_dtype = parse_dtype(dtype if dtype is not None else "fp32")  # fail on a bad dtype or device before reading
    device = check_device(device if device is not None else "cpu")
    files: dict[str, tuple[Header, WeightsInfo]] = {}
    extras: dict[str, Any] = {}
    first: Match | None = None
    fmt_names: set[str] = set()
    for one in specs:
        path, extra = resolve_spec(one, from_hub)
        extras.update({k: v for k, v in extra.items() if v is not None})
        header = read_header(path)
        info = identify(header, format if format is not None else extras.get("format"), hash=hash)
        m = _must_identify(info)
        if first is None:
            first = m
        elif (m.signature.architecture, m.signature.variant, m.channels) != (
            first.signature.architecture,
            first.signature.variant,
            first.channels,
        ):
            raise IncompatibleError(
                f"{path} is a {m.signature.title} with {m.channels} latent channels, but the first file is a "
                f"{first.signature.title} with {first.channels}: pass files of one network"
            )
        for p in m.parts:
            if p in files:
                raise WeightsError(
                    f"two files hold the {p}: {files[p][0].source} and {header.source}; pass one of each"
                )
            files[p] = (header, info)
        if info.format:
            fmt_names.add(info.format)
    if first is None:  # pragma: no cover - specs is non-empty
        raise ValueError("load_vae needs at least one file")
    if len(fmt_names) > 1:
        raise IncompatibleError(f"the files serve different formats {sorted(fmt_names)}: pass files of one network")
    names = " + ".join(str(h.source) for h, _ in dict.fromkeys(files.values()))
    sig = first.signature
    if not sig.loadable:
        raise WeightsError(
            f"{names} is a {sig.title.split(';')[0]} ({first.channels} latent channels, {first.spatial_ratio}× "
            f"spatial); latentbridge identifies it but cannot load this architecture yet: run it with its own code "
            "(madebyollin/taehv's taehv.py, or ComfyUI), or pass a VAE latentbridge loads"
        )
    parts = _parts_wanted(sig, set(files), part, names)
    fmt = get_format(fmt_names.pop()) if fmt_names else None
    patches = {get_format(c).patch for c in first.candidates} or {1}
    patch = fmt.patch if fmt is not None else (patches.pop() if len(patches) == 1 else 1)
    headers = [files[p] for p in ("encoder", "decoder") if p in parts]
    sha = "+".join(dict.fromkeys(i.sha256 for _, i in headers if i.sha256))
    name = os.fspath(specs[0]) if len(specs) == 1 else " + ".join(os.fspath(s) for s in specs)
    ctx = _Ctx(name, sha, fmt, patch, device, torch_dtype, extras.get("config"))
    if sig.architecture == "taesd":
        return _build_taesd(files, parts, ctx, first)
    if sig.architecture == "vaeapprox":
        header, info = files["decoder"]
        return _build_vaeapprox(header, info, ctx, first)
    if sig.architecture == "vaelight":
        return _build_vaelight(files, parts, ctx, first)
    if len(dict.fromkeys(id(h) for h, _ in headers)) != 1:
        raise WeightsError(f"{names}: a {sig.title} must come in one file, not split across several")
    header, info = headers[0]
    return _build_diffusers(header, info, parts, ctx)
