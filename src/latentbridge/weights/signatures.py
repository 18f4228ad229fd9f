"""Declared signatures of every VAE architecture × key layout latentbridge knows, and :func:`detect`.

A :class:`Signature` names the keys (with shapes) that must be present for each part of a network
(encoder, decoder), keys that must be absent, how to read the latent channel count from shapes and
how to count resolution levels for the spatial ratio. :func:`detect` tests a header against **every**
signature, at every VAE key prefix a checkpoint may use, and returns all matches: zero, one or several,
for the caller to report honestly. Nothing depends on the order of the table, and nothing reads file names.

Shape patterns: an int must match exactly, ``"*"`` matches anything, a name (``"C"``) binds a variable
and ``"2C"`` / ``"4C"`` bind it through a multiple; every binding of one variable must agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from latentbridge.formats import formats
from latentbridge.weights._header import Header, TensorInfo, read_header

Dim = int | str
VAE_PREFIXES: tuple[str, ...] = ("", "first_stage_model.", "vae.")  # bare VAE, SD/SDXL checkpoints, others
# Keys that mark a full diffusion checkpoint (UNet/DiT, text encoders); used to say "this checkpoint has no VAE".
CHECKPOINT_MARKERS: tuple[str, ...] = (
    "model.diffusion_model.",
    "cond_stage_model.",
    "conditioner.",
    "text_encoders.",
    "double_blocks.",
    "single_blocks.",
    "transformer_blocks.",
    "joint_blocks.",
)


@dataclass(frozen=True, slots=True)
class KeyRule:
    """A key that must exist, with an optional shape pattern (None: any shape).

    A ``{}`` in the key stands for an integer index: some key with any index there must fit.
    """

    key: str
    shape: tuple[Dim, ...] | None = None


@dataclass(frozen=True, slots=True)
class Part:
    """One half of a network (encoder or decoder) as a file stores it.

    Attributes:
        name: "encoder" or "decoder".
        prefixes: key prefixes that belong to this part (for parameter counts and strict loading).
        anchors: keys (with shapes) that must all be present for the part to count as present.
        forbidden: keys whose presence rules this part out (another variant's keys).
        levels: a key pattern with one ``{}`` (an integer index) whose distinct indices count the
            resolution levels; "" for fixed-ratio architectures.
        levels_by_max: count levels as the largest index + 1 (a level may hold no tensors: DC-AE).
    """

    name: str
    prefixes: tuple[str, ...]
    anchors: tuple[KeyRule, ...]
    forbidden: tuple[str, ...] = ()
    levels: str = ""
    levels_by_max: bool = False


@dataclass(frozen=True, slots=True)
class Signature:
    """One architecture in one key layout.

    Attributes:
        architecture: the network ("autoencoder_kl", "autoencoder_kl_flux2", "autoencoder_kl_wan",
            "autoencoder_kl_hunyuan_video", "autoencoder_hunyuan_dcae", "autoencoder_kl_temporal_decoder",
            "autoencoder_kl_ltx_video", "autoencoder_mochi", "cosmos_tokenizer", "vqgan_stage_a", "autoencoder_dc",
            "taesd", "taehv", "vaeapprox", "vaelight").
        variant: architecture variant ("" or "pool" (TAEF2), "f32" (TAESana), "residual" (Wan 2.2),
            "p2"/"p4" (TAEHV with a 2×2/4×4 pixel patchify), "video" (HunyuanVideo 1.5's 3-D DC-AE-style VAE)).
        layout: key layout ("diffusers", "ldm", "bfl", "wan", "efficientvit", "sequential", "module", "comfyui",
            "a1111", "onnx").
        title: one line for humans.
        parts: encoder/decoder parts; a file matches when at least one part is present.
        required: whole-file keys that must be present (FLUX.2's BatchNorm statistics).
        forbidden: whole-file keys that must be absent.
        shared_prefixes: keys that belong to no part but to the VAE (``bn.``).
        ratio: fixed spatial ratio, or 0 to compute ``2 ** (levels + ratio_offset)``.
        ratio_offset: see ``ratio``.
        dims: 2 (image) or 3 (video).
        native_space: "raw" or "model": the latent space the network reads/writes.
        serves: latent formats the architecture may serve; filtered by geometry on a match.
        container: "tensors" or "onnx".
        format_scalars: keys of 0-d tensors holding the latent format's (scale, shift) when a file carries them
            (ComfyUI's ``vae_scale`` / ``vae_shift``); their values are read when loading, never by ``detect``.
        loadable: False for architectures latentbridge identifies but cannot run yet (TAEHV).
    """

    architecture: str
    variant: str
    layout: str
    title: str
    parts: tuple[Part, ...]
    required: tuple[KeyRule, ...] = ()
    forbidden: tuple[str, ...] = ()
    shared_prefixes: tuple[str, ...] = ()
    ratio: int = 0
    ratio_offset: int = -1
    dims: int = 2
    native_space: str = "raw"
    serves: tuple[str, ...] = field(default=())
    container: str = "tensors"
    format_scalars: tuple[str, ...] = ()
    loadable: bool = True

    @property
    def name(self) -> str:
        """Unique id: "architecture[+variant]/layout"."""
        arch = f"{self.architecture}+{self.variant}" if self.variant else self.architecture
        return f"{arch}/{self.layout}"


@dataclass(frozen=True, slots=True)
class Match:
    """A signature that fits a header (at a key prefix), with what it reads from the shapes."""

    signature: Signature
    prefix: str  # "" or the checkpoint prefix the VAE sits under ("first_stage_model.")
    parts: tuple[str, ...]  # parts present, in signature order
    channels: int  # raw latent channels
    spatial_ratio: int  # pixels per raw latent cell
    candidates: tuple[str, ...]  # latent formats whose raw geometry fits

    @property
    def name(self) -> str:
        """The signature's id."""
        return self.signature.name


# --- matching -------------------------------------------------------------------------------------------

_DIM_RE = re.compile(r"^(\d*)([A-Za-z_]\w*)$")


def _bind(pattern: tuple[Dim, ...], shape: tuple[int, ...], env: dict[str, int]) -> bool:
    """Match ``shape`` against ``pattern``, extending ``env``; False on any mismatch."""
    if len(pattern) != len(shape):
        return False
    for want, got in zip(pattern, shape, strict=True):
        if isinstance(want, int):
            if want != got:
                return False
            continue
        if want == "*":
            continue
        m = _DIM_RE.match(want)
        if m is None:  # pragma: no cover - guarded by the table tests
            raise ValueError(f"bad shape pattern entry {want!r}")
        k = int(m.group(1) or 1)
        if got < 0 or got % k:
            return False
        value = got // k
        if env.setdefault(m.group(2), value) != value:
            return False
    return True


def _rule_holds(rule: KeyRule, tensors: Mapping[str, TensorInfo], env: dict[str, int]) -> bool:
    if "{}" not in rule.key:
        infos = [tensors[rule.key]] if rule.key in tensors else []
    else:  # a key pattern: some key with any index there must fit
        rx = _key_regex(rule.key)
        infos = [info for key, info in tensors.items() if rx.fullmatch(key)]
    for info in infos:
        trial = dict(env)
        if rule.shape is None or _bind(rule.shape, info.shape, trial):
            env.update(trial)
            return True
    return False


def _rules_hold(rules: tuple[KeyRule, ...], tensors: Mapping[str, TensorInfo], env: dict[str, int]) -> bool:
    return all(_rule_holds(rule, tensors, env) for rule in rules)


@cache
def _key_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(r"(\d+)".join(re.escape(p) for p in pattern.split("{}")))


def count_levels(pattern: str, keys: list[str] | tuple[str, ...], by_max: bool = False) -> int:
    """Number of distinct indices ``{}`` takes among ``keys`` that start with ``pattern``
    (``by_max``: the largest index + 1, for lists whose entries may hold no tensors)."""
    rx = _key_regex(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    if by_max:
        return max(found) + 1 if found else 0
    return len(found)


def _candidates(sig: Signature, channels: int, ratio: int) -> tuple[str, ...]:
    reg = formats()
    out = []
    for name in sig.serves:
        fmt = reg.get(name)
        if fmt is not None and (fmt.channels, fmt.spatial_ratio, fmt.dims) == (channels, ratio, sig.dims):
            out.append(name)
    return tuple(out)


def match_signature(sig: Signature, header: Header) -> Match | None:
    """Test one signature against a header (already narrowed to a prefix). None when it does not fit."""
    tensors = header.tensors
    if (sig.container == "onnx") != (header.container == "onnx"):
        return None
    if any(k in tensors for k in sig.forbidden):
        return None
    env: dict[str, int] = {}
    if not _rules_hold(sig.required, tensors, env):
        return None
    present: list[str] = []
    levels: list[int] = []
    keys = list(tensors)
    for part in sig.parts:
        trial = dict(env)
        if any(k in tensors for k in part.forbidden) or not _rules_hold(part.anchors, tensors, trial):
            continue
        env = trial
        present.append(part.name)
        if part.levels:
            levels.append(count_levels(part.levels, keys, part.levels_by_max))
    if not present or "C" not in env:
        return None
    if sig.ratio:
        ratio = sig.ratio
    else:
        if len(set(levels)) != 1 or levels[0] + sig.ratio_offset < 0:
            return None  # encoder and decoder disagree on depth: not this architecture
        ratio = 2 ** (levels[0] + sig.ratio_offset)
    return Match(sig, header.prefix, tuple(present), env["C"], ratio, _candidates(sig, env["C"], ratio))


def detect(source: Header | str | os.PathLike[str]) -> list[Match]:
    """Every (signature, VAE prefix) that fits a weight file's header; the caller reports zero or several plainly.

    Args:
        source: a :class:`Header`, or a path (file or diffusers folder) whose header is read.
    """
    header = source if isinstance(source, Header) else read_header(source)
    out = []
    for prefix in VAE_PREFIXES:
        sub = header.sub(prefix)
        if not sub.tensors:
            continue
        for sig in SIGNATURES:
            m = match_signature(sig, sub)
            if m is not None:
                out.append(m)
    return out


def owner(m: Match, key: str) -> str | None:
    """Which part of a matched VAE a key (prefix stripped) belongs to: a part name, "shared", or None."""
    if key.startswith(m.signature.shared_prefixes):
        return "shared"
    for part in m.signature.parts:
        if part.name in m.parts and key.startswith(part.prefixes):
            return part.name
    return None


def checkpoint_markers(header: Header) -> tuple[str, ...]:
    """The diffusion-checkpoint key prefixes present in ``header`` (empty for a bare VAE file)."""
    return tuple(p for p in CHECKPOINT_MARKERS if any(k.startswith(p) for k in header.tensors))


# --- the table ------------------------------------------------------------------------------------------

_KL_SERVES = ("sd1", "sdxl", "playground25", "sd_x4_upscaler", "sd3", "flux1")
_ENC, _DEC = "encoder", "decoder"


def _kl(layout: str, quant: str, flux2: bool) -> Signature:
    """AutoencoderKL-family signature. ``quant``: "top" (quant_conv at the root), "inner" (BFL FLUX.2:
    encoder.quant_conv / decoder.post_quant_conv), "none" (BFL FLUX.1), "optional" (diffusers)."""
    d = layout == "diffusers"
    enc_block = "encoder.down_blocks.0.resnets.0.conv1.weight" if d else "encoder.down.0.block.0.conv1.weight"
    dec_block = "decoder.up_blocks.0.resnets.0.conv1.weight" if d else "decoder.up.0.block.0.conv1.weight"
    # Every KL f8/f4 encoder's first level ends in a square stride-2 conv; HunyuanImage 2.1's (same key names) ends
    # in a conv to a quarter of the next width before a pixel-unshuffle, and its decoder upsamples at level 0.
    enc_down = "encoder.down_blocks.0.downsamplers.0.conv.weight" if d else "encoder.down.0.downsample.conv.weight"
    enc = [KeyRule("encoder.conv_in.weight", ("*", "*", 3, 3)), KeyRule(enc_block, ("*", "*", 3, 3))]
    enc += [KeyRule(enc_down, ("D", "D", 3, 3)), KeyRule("encoder.conv_out.weight", ("2C", "*", 3, 3))]
    dec = [KeyRule("decoder.conv_in.weight", ("*", "C", 3, 3)), KeyRule(dec_block, ("*", "*", 3, 3))]
    dec.append(KeyRule("decoder.conv_out.weight", ("*", "*", 3, 3)))
    dec_forbidden = () if d else ("decoder.up.0.upsample.conv.weight",)  # LDM level 0 is full resolution
    enc_prefixes, dec_prefixes = ["encoder."], ["decoder."]
    forbidden: list[str] = []
    if quant == "top":
        enc.append(KeyRule("quant_conv.weight", ("2C", "2C", 1, 1)))
        dec.append(KeyRule("post_quant_conv.weight", ("C", "C", 1, 1)))
    elif quant == "inner":
        enc.append(KeyRule("encoder.quant_conv.weight", ("2C", "2C", 1, 1)))
        dec.append(KeyRule("decoder.post_quant_conv.weight", ("C", "C", 1, 1)))
    elif quant == "none":
        forbidden += ["quant_conv.weight", "post_quant_conv.weight"]
    if quant in ("top", "optional"):
        enc_prefixes.append("quant_conv.")
        dec_prefixes.append("post_quant_conv.")
    levels_enc = "encoder.down_blocks.{}.resnets.0.conv1.weight" if d else "encoder.down.{}.block.0.conv1.weight"
    levels_dec = "decoder.up_blocks.{}.resnets.0.conv1.weight" if d else "decoder.up.{}.block.0.conv1.weight"
    parts = (
        Part(_ENC, tuple(enc_prefixes), tuple(enc), levels=levels_enc),
        Part(_DEC, tuple(dec_prefixes), tuple(dec), forbidden=dec_forbidden, levels=levels_dec),
    )
    if flux2:
        bn = (KeyRule("bn.running_mean", ("4C",)), KeyRule("bn.running_var", ("4C",)))
        keys = {"diffusers": "diffusers", "bfl": "BFL", "ldm": "ComfyUI (what its VAESave writes)"}[layout] + " keys"
        title = f"FLUX.2 KL VAE with BatchNorm latent statistics (diffusers AutoencoderKLFlux2), {keys}"
        return Signature(
            "autoencoder_kl_flux2", "", layout, title, parts, required=bn, shared_prefixes=("bn.",), serves=("flux2",)
        )
    title = {
        "diffusers": "AutoencoderKL, diffusers keys (encoder.down_blocks.0.resnets.0…)",
        "ldm": "AutoencoderKL, original LDM/SGM keys (encoder.down.0.block.0…, quant_conv)",
        "bfl": "AutoencoderKL, BFL bare keys (encoder.down.0.block.0…, no quant_conv: FLUX.1 ae, SD3)",
    }[layout]
    # SVD's temporal decoder has the same LDM names plus time-mixing layers: its own signature below
    forbidden += ["bn.running_mean", "decoder.mid.block_1.mix_factor"]
    return Signature("autoencoder_kl", "", layout, title, parts, forbidden=tuple(forbidden), serves=_KL_SERVES)


def _wan(layout: str, residual: bool) -> Signature:
    five = ("*", "*", 3, 3, 3)
    if layout == "diffusers":
        in_ch = 12 if residual else 3
        enc_block = "encoder.down_blocks.0.resnets.0.conv1.weight" if residual else "encoder.down_blocks.0.conv1.weight"
        enc = (
            KeyRule("encoder.conv_in.weight", ("*", in_ch, 3, 3, 3)),
            KeyRule(enc_block, five),
            KeyRule("encoder.conv_out.weight", ("2C", "*", 3, 3, 3)),
            KeyRule("quant_conv.weight", ("2C", "2C", 1, 1, 1)),
        )
        dec = (
            KeyRule("decoder.conv_in.weight", ("*", "C", 3, 3, 3)),
            KeyRule("decoder.up_blocks.0.resnets.0.conv1.weight", five),
            KeyRule("decoder.conv_out.weight", (in_ch, "*", 3, 3, 3)),
            KeyRule("post_quant_conv.weight", ("C", "C", 1, 1, 1)),
        )
        down = (
            "encoder.down_blocks.{}.downsampler.resample.1.weight"
            if residual
            else "encoder.down_blocks.{}.resample.1.weight"
        )
        up = (
            "decoder.up_blocks.{}.upsampler.resample.1.weight"
            if residual
            else "decoder.up_blocks.{}.upsamplers.0.resample.1.weight"
        )
        enc_prefixes, dec_prefixes = ("encoder.", "quant_conv."), ("decoder.", "post_quant_conv.")
    elif residual:  # the original Wan 2.2 release (Wan2.2_VAE.pth / ComfyUI's wan2.2_vae.safetensors)
        # Each level is a block holding its own list: downsamples.{level}.downsamples.{j} (resnets, then the
        # resample), and upsamples.{level}.upsamples.{j} in the decoder; 12 = 3 RGB channels × the 2×2 patchify.
        enc = (
            KeyRule("encoder.conv1.weight", ("*", 12, 3, 3, 3)),
            KeyRule("encoder.downsamples.0.downsamples.0.residual.2.weight", five),
            KeyRule("encoder.head.2.weight", ("2C", "*", 3, 3, 3)),
            KeyRule("conv1.weight", ("2C", "2C", 1, 1, 1)),
        )
        dec = (
            KeyRule("decoder.conv1.weight", ("*", "C", 3, 3, 3)),
            KeyRule("decoder.upsamples.0.upsamples.0.residual.2.weight", five),
            KeyRule("decoder.head.2.weight", (12, "*", 3, 3, 3)),
            KeyRule("conv2.weight", ("C", "C", 1, 1, 1)),
        )
        down = "encoder.downsamples.{}.downsamples.{}.resample.1.weight"
        up = "decoder.upsamples.{}.upsamples.{}.resample.1.weight"
        enc_prefixes, dec_prefixes = ("encoder.", "conv1."), ("decoder.", "conv2.")
    else:  # the original Wan 2.1 release (wan_2.1_vae.safetensors / Wan2.1_VAE.pth)
        enc = (
            KeyRule("encoder.conv1.weight", ("*", 3, 3, 3, 3)),
            KeyRule("encoder.downsamples.0.residual.2.weight", five),
            KeyRule("encoder.head.2.weight", ("2C", "*", 3, 3, 3)),
            KeyRule("conv1.weight", ("2C", "2C", 1, 1, 1)),
        )
        dec = (
            KeyRule("decoder.conv1.weight", ("*", "C", 3, 3, 3)),
            KeyRule("decoder.upsamples.0.residual.2.weight", five),
            KeyRule("decoder.head.2.weight", (3, "*", 3, 3, 3)),
            KeyRule("conv2.weight", ("C", "C", 1, 1, 1)),
        )
        down, up = "encoder.downsamples.{}.resample.1.weight", "decoder.upsamples.{}.resample.1.weight"
        enc_prefixes, dec_prefixes = ("encoder.", "conv1."), ("decoder.", "conv2.")
    keys = "diffusers" if layout == "diffusers" else "original"
    title = (
        f"Wan 2.2 causal 3-D VAE with 2×2 patchify (AutoencoderKLWan, is_residual), {keys} keys"
        if residual
        else f"Wan 2.1 causal 3-D VAE (AutoencoderKLWan), {keys} keys"
    )
    return Signature(
        "autoencoder_kl_wan",
        "residual" if residual else "",
        layout,
        title,
        (Part(_ENC, enc_prefixes, enc, levels=down), Part(_DEC, dec_prefixes, dec, levels=up)),
        ratio_offset=1 if residual else 0,  # one level per resample, plus the 2× patchify of Wan 2.2
        dims=3,
        serves=("wan22",) if residual else ("wan21",),
    )


def _hunyuan_video(layout: str) -> Signature:
    """HunyuanVideo's causal 3-D KL VAE: AutoencoderKL's structure with every conv a causal Conv3d (``….conv.``).

    ``layout``: "diffusers" (diffusers AutoencoderKLHunyuanVideo) or "ldm" (ComfyUI's keys: LDM names plus the
    ``.conv`` of each causal conv, 1×1×1-conv attention; what ComfyUI loads and its VAESave writes).
    """
    d = layout == "diffusers"
    five = ("*", "*", 3, 3, 3)
    if d:
        enc_block = "encoder.down_blocks.{}.resnets.0.conv1.conv.weight"
        dec_block = "decoder.up_blocks.{}.resnets.0.conv1.conv.weight"
        enc_down = "encoder.down_blocks.0.downsamplers.0.conv.conv.weight"
    else:
        enc_block = "encoder.down.{}.block.0.conv1.conv.weight"
        dec_block = "decoder.up.{}.block.0.conv1.conv.weight"
        enc_down = "encoder.down.0.downsample.conv.conv.weight"
    enc = (
        KeyRule("encoder.conv_in.conv.weight", ("*", 3, 3, 3, 3)),
        KeyRule(enc_block.format(0), five),
        KeyRule(enc_down, ("D", "D", 3, 3, 3)),  # HunyuanVideo 1.5 reduces channels before a space-to-depth
        KeyRule("encoder.conv_out.conv.weight", ("2C", "*", 3, 3, 3)),
        KeyRule("quant_conv.weight", ("2C", "2C", 1, 1, 1)),
    )
    dec = (
        KeyRule("decoder.conv_in.conv.weight", ("*", "C", 3, 3, 3)),
        KeyRule(dec_block.format(0), five),
        KeyRule("decoder.conv_out.conv.weight", (3, "*", 3, 3, 3)),
        KeyRule("post_quant_conv.weight", ("C", "C", 1, 1, 1)),
    )
    keys = "diffusers keys" if d else "ComfyUI keys (LDM names, .conv per causal conv)"
    return Signature(
        "autoencoder_kl_hunyuan_video",
        "",
        layout,
        f"HunyuanVideo causal 3-D KL VAE (diffusers AutoencoderKLHunyuanVideo), {keys}",
        (
            Part(_ENC, ("encoder.", "quant_conv."), enc, levels=enc_block),
            Part(
                _DEC,
                ("decoder.", "post_quant_conv."),
                dec,
                forbidden=() if d else ("decoder.up.0.upsample.conv.conv.weight",),
                levels=dec_block,
            ),
        ),
        dims=3,
        serves=("hunyuan_video",),
    )


def _hunyuan_dcae(dims: int) -> Signature:
    """HunyuanImage 2.1 (2-D, 32×) and HunyuanVideo 1.5 (3-D, 16×) VAEs in ComfyUI's keys (comfy/ldm/hunyuan_video/
    vae.py, vae_refiner.py): LDM-like names, no quant convs, each level's resampling conv reduces (encoder) or
    widens (decoder) the channels around a space-to-depth, and the decoder starts upsampling at level 0.
    Identified only: latentbridge has no key map to diffusers' AutoencoderKLHunyuanImage / …Video15 yet.
    """
    c = ".conv" if dims == 3 else ""  # the 3-D network's causal convs hold their Conv3d as `.conv`
    k = (3,) * dims
    enc = (
        KeyRule(f"encoder.conv_in{c}.weight", ("*", 3, *k)),
        KeyRule(f"encoder.down.0.downsample.conv{c}.weight", ("Q", "*", *k)),  # a quarter of level 1's width
        KeyRule(f"encoder.down.1.block.0.conv1{c}.weight", ("*", "4Q", *k)),  # ... restored by a 2×2 unshuffle
        KeyRule(f"encoder.conv_out{c}.weight", ("2C", "*", *k)),
    )
    dec = (
        KeyRule(f"decoder.conv_in{c}.weight", ("*", "C", *k)),
        KeyRule(f"decoder.up.0.upsample.conv{c}.weight", ("*", "*", *k)),
        KeyRule(f"decoder.conv_out{c}.weight", (3, "*", *k)),
    )
    name = "HunyuanImage 2.1 VAE (32×, 2-D)" if dims == 2 else "HunyuanVideo 1.5 VAE (16×, 4× time, causal 3-D)"
    return Signature(
        "autoencoder_hunyuan_dcae",
        "" if dims == 2 else "video",
        "comfyui",
        f"{name}, ComfyUI keys; identified only: latentbridge cannot load it yet",
        (
            Part(_ENC, ("encoder.",), enc, levels=f"encoder.down.{{}}.block.0.conv1{c}.weight"),
            Part(_DEC, ("decoder.",), dec, levels=f"decoder.up.{{}}.block.0.conv1{c}.weight"),
        ),
        forbidden=("quant_conv.weight", "post_quant_conv.weight"),
        dims=dims,
        serves=("hunyuan_image21",) if dims == 2 else ("hunyuan_video15",),
        loadable=False,
    )


# --- VAEs ComfyUI loads that latentbridge identifies but cannot run yet (key names as comfy/sd.py reads them) ---

_IDENTIFIED_ONLY = "identified only: latentbridge cannot load it yet"
_FIVE = ("*", "*", 3, 3, 3)

# Stable Video Diffusion's VAE: SD's encoder, a decoder with time-mixing layers (sgm VideoDecoder).
_SVD = Signature(
    "autoencoder_kl_temporal_decoder",
    "",
    "ldm",
    f"AutoencoderKL with SVD's temporal decoder (diffusers AutoencoderKLTemporalDecoder), LDM keys; {_IDENTIFIED_ONLY}",
    (
        Part(
            _ENC,
            ("encoder.", "quant_conv."),
            (
                KeyRule("encoder.conv_in.weight", ("*", 3, 3, 3)),
                KeyRule("encoder.down.0.block.0.conv1.weight", ("*", "*", 3, 3)),
                KeyRule("encoder.conv_out.weight", ("2C", "*", 3, 3)),
            ),
            levels="encoder.down.{}.block.0.conv1.weight",
        ),
        Part(
            _DEC,
            ("decoder.",),
            (
                KeyRule("decoder.conv_in.weight", ("*", "C", 3, 3)),
                KeyRule("decoder.conv_out.time_mix_conv.weight", (3, 3, "*", 1, 1)),
            ),
            levels="decoder.up.{}.block.0.conv1.weight",
        ),
    ),
    required=(KeyRule("decoder.mid.block_1.mix_factor", (1,)),),  # its encoder alone is SD's: a KL file
    serves=("sd1",),
    loadable=False,
)

# LTX-Video 0.9.x (Lightricks' keys; comfy/ldm/lightricks/vae): 4×4 pixel patchify (48 = 3·16 channels), causal
# 3-D convs holding `.conv`, per-channel latent statistics stored beside the network.
_LTXV = Signature(
    "autoencoder_kl_ltx_video",
    "",
    "original",
    f"LTX-Video causal 3-D VAE (0.9.x), Lightricks keys (per_channel_statistics); {_IDENTIFIED_ONLY}",
    (
        Part(
            _ENC,
            ("encoder.",),
            (
                KeyRule("encoder.conv_in.conv.weight", ("*", 48, 3, 3, 3)),
                KeyRule("encoder.down_blocks.0.res_blocks.0.conv1.conv.weight", _FIVE),
                KeyRule("encoder.conv_out.conv.weight", _FIVE),
            ),
        ),
        Part(
            _DEC,
            ("decoder.",),
            (
                KeyRule("decoder.conv_in.conv.weight", ("*", "C", 3, 3, 3)),
                KeyRule("decoder.up_blocks.0.res_blocks.0.conv1.conv.weight", _FIVE),
                KeyRule("decoder.conv_out.conv.weight", (48, "*", 3, 3, 3)),
            ),
        ),
    ),
    required=(KeyRule("per_channel_statistics.mean-of-means", ("C",)),),
    shared_prefixes=("per_channel_statistics.",),
    ratio=32,
    dims=3,
    serves=("ltxv",),
    loadable=False,
)

# Mochi 1 (Genmo) with ComfyUI's encoder./decoder. prefixes (comfy/ldm/genmo/vae/model.py): linear-patch
# encoder, 1×1×1-conv decoder input; these two keys are the ones comfy/sd.py looks for.
_MOCHI = Signature(
    "autoencoder_mochi",
    "",
    "comfyui",
    f"Mochi 1 VAE (Genmo), encoder./decoder. keys as ComfyUI loads them; {_IDENTIFIED_ONLY}",
    (
        Part(
            _ENC,
            ("encoder.",),
            (
                KeyRule("encoder.layers.4.layers.1.attn_block.attn.qkv.weight"),
                KeyRule("encoder.output_proj.weight", ("2C", "*")),
            ),
        ),
        Part(
            _DEC,
            ("decoder.",),
            (
                KeyRule("decoder.blocks.0.0.weight", ("*", "C", 1, 1, 1)),
                KeyRule("decoder.blocks.2.blocks.3.stack.5.weight"),
                KeyRule("decoder.output_proj.weight", (3, "*")),
            ),
        ),
    ),
    ratio=8,
    dims=3,
    serves=("mochi",),
    loadable=False,
)

# NVIDIA Cosmos-1.0 continuous tokenizer CV8x8x8 (comfy/ldm/cosmos/vae.py): a 3-D wavelet patchify (192 = 3·4³),
# factorised (spatial 1×3×3, temporal 3×1×1) convs holding `.conv3d`, per-frame latent statistics.
_COSMOS = Signature(
    "cosmos_tokenizer",
    "",
    "comfyui",
    f"NVIDIA Cosmos-1.0 continuous video tokenizer (CV8x8x8), ComfyUI keys; {_IDENTIFIED_ONLY}",
    (
        Part(
            _ENC,
            ("encoder.", "quant_conv."),
            (
                KeyRule("encoder.conv_in.0.conv3d.weight", ("*", 192, 1, 3, 3)),
                KeyRule("encoder.conv_out.0.conv3d.weight", ("C", "*", 1, 3, 3)),
                KeyRule("quant_conv.conv3d.weight", ("C", "C", 1, 1, 1)),
            ),
        ),
        Part(
            _DEC,
            ("decoder.", "post_quant_conv."),
            (
                KeyRule("decoder.conv_in.0.conv3d.weight", ("*", "C", 1, 3, 3)),
                KeyRule("decoder.conv_out.0.conv3d.weight", (192, "*", 1, 3, 3)),
                KeyRule("post_quant_conv.conv3d.weight", ("C", "C", 1, 1, 1)),
            ),
        ),
    ),
    shared_prefixes=("latent_mean", "latent_std"),
    ratio=8,
    dims=3,
    serves=("cosmos",),
    loadable=False,
)

# Stable Cascade stage A (comfy/ldm/cascade/stage_a.py): a VQGAN, pixel-unshuffle 2 then one stride-2 conv: 4×.
_STAGE_A = Signature(
    "vqgan_stage_a",
    "",
    "comfyui",
    f"Stable Cascade stage A VQGAN (4 ch, 4×), keys as ComfyUI loads them; {_IDENTIFIED_ONLY}",
    (
        Part(
            _ENC,
            ("in_block.", "down_blocks."),
            (KeyRule("in_block.1.weight", ("*", 12, 1, 1)), KeyRule("down_blocks.1.weight", ("*", "*", 4, 4))),
        ),
        Part(_DEC, ("up_blocks.", "out_block."), (KeyRule("out_block.0.weight", (12, "*", 1, 1)),)),
    ),
    required=(KeyRule("vquantizer.codebook.weight", ("*", "C")),),
    shared_prefixes=("vquantizer.",),
    ratio=4,
    serves=("cascade_b",),
    loadable=False,
)


_DC = Signature(
    "autoencoder_dc",
    "",
    "diffusers",
    "DC-AE deep-compression autoencoder (diffusers AutoencoderDC)",
    (
        Part(
            _ENC,
            ("encoder.",),
            (
                KeyRule("encoder.down_blocks.{}.{}.conv.weight", ("*", "*", 3, 3)),  # a stage's downsampler
                KeyRule("encoder.conv_out.weight", ("C", "*", 3, 3)),
            ),
            forbidden=("encoder.conv_norm_out.weight",),
            levels="encoder.down_blocks.{}.",
            levels_by_max=True,  # a first stage without blocks holds no tensors (DC-AE f32c32-in/mix)
        ),
        Part(
            _DEC,
            ("decoder.",),
            (
                KeyRule("decoder.conv_in.weight", ("*", "C", 3, 3)),
                KeyRule("decoder.up_blocks.{}.0.conv.weight", ("*", "*", 3, 3)),  # a stage's upsampler
                KeyRule("decoder.norm_out.weight", ("*",)),  # RMSNorm (AutoencoderKL has conv_norm_out)
            ),
            forbidden=("decoder.conv_norm_out.weight",),
            levels="decoder.up_blocks.{}.",
            levels_by_max=True,
        ),
    ),
    serves=("sana",),
)

# DC-AE in the original mit-han-lab/efficientvit layout (dc-ae-f32c32-sana-1.0, dc-ae-f32c32-in/mix-1.0): stages of
# ``op_list`` entries; residual wrappers add ``main.``; every conv sits in a ``ConvLayer`` (``.conv``/``.norm``).
_DC_EFFICIENTVIT = Signature(
    "autoencoder_dc",
    "",
    "efficientvit",
    "DC-AE deep-compression autoencoder (AutoencoderDC), original efficientvit keys (encoder.stages.0.op_list.0.main…)",
    (
        Part(
            _ENC,
            ("encoder.",),
            (
                KeyRule("encoder.stages.{}.op_list.{}.main.conv1.conv.weight", ("*", "*", 3, 3)),  # a ResBlock
                KeyRule("encoder.project_out.main.op_list.0.conv.weight", ("C", "*", 3, 3)),
            ),
            levels="encoder.stages.{}.",
            levels_by_max=True,  # a first stage without blocks holds no tensors (f32c32-in/mix)
        ),
        Part(
            _DEC,
            ("decoder.",),
            (
                KeyRule("decoder.project_in.main.conv.weight", ("*", "C", 3, 3)),
                KeyRule("decoder.stages.{}.op_list.{}.main.conv1.conv.weight", ("*", "*", 3, 3)),
                KeyRule("decoder.project_out.op_list.0.weight", ("*",)),  # the output norm
            ),
            levels="decoder.stages.{}.",
            levels_by_max=True,
        ),
    ),
    serves=("sana",),
)

# TAESD family: (variant, encoder anchors, decoder anchors, ratio, serves); keys as in an nn.Sequential.
_TAESD_VARIANTS: tuple[tuple[str, tuple[KeyRule, ...], tuple[KeyRule, ...], int, tuple[str, ...]], ...] = (
    (
        "",
        (KeyRule("0.weight", (64, 3, 3, 3)), KeyRule("14.weight", ("C", 64, 3, 3))),
        (KeyRule("1.weight", (64, "C", 3, 3)), KeyRule("19.weight", (3, 64, 3, 3))),
        8,
        ("sd1", "sdxl", "sd3", "flux1"),
    ),
    (
        "pool",  # TAEF2: 1×1-conv + GroupNorm "pool" branch in the deepest blocks
        (
            KeyRule("0.weight", (64, 3, 3, 3)),
            KeyRule("11.pool.0.weight", (256, 64, 1, 1)),
            KeyRule("14.weight", ("C", 64, 3, 3)),
        ),
        (
            KeyRule("1.weight", (64, "C", 3, 3)),
            KeyRule("3.pool.0.weight", (256, 64, 1, 1)),
            KeyRule("19.weight", (3, 64, 3, 3)),
        ),
        8,
        ("flux2",),
    ),
    (
        "f32",  # TAESana: 32× encoder/decoder
        (
            KeyRule("0.weight", (32, 3, 3, 3)),
            KeyRule("2.weight", (64, 32, 3, 3)),
            KeyRule("17.weight", ("C", 64, 3, 3)),
        ),
        (KeyRule("1.weight", (256, "C", 3, 3)), KeyRule("29.weight", (3, 64, 3, 3))),
        32,
        ("sana",),
    ),
)
# layout -> (encoder prefix, decoder prefix, decoder index shift): diffusers' DecoderTiny has no Clamp layer
_TAESD_LAYOUTS: tuple[tuple[str, str, str, int], ...] = (
    ("sequential", "", "", 0),  # taesd_encoder.pth / taesd_decoder.pth: one nn.Sequential per file
    ("module", "encoder.", "decoder.", 0),  # a TAESD module's state_dict: both halves in one file
    ("diffusers", "encoder.layers.", "decoder.layers.", -1),  # diffusers AutoencoderTiny
    ("comfyui", "taesd_encoder.", "taesd_decoder.", 0),  # ComfyUI's combined TAESD state dict (+ vae_scale/shift)
)
# ComfyUI's combined form stores the latent format's scale and shift as 0-d tensors: decode((raw - shift) * scale)
COMFYUI_TAESD_SCALARS: tuple[str, str] = ("vae_scale", "vae_shift")


def _shift(rule: KeyRule, prefix: str, shift: int) -> KeyRule:
    head, _, rest = rule.key.partition(".")
    return KeyRule(f"{prefix}{int(head) + shift}.{rest}", rule.shape)


def _taesd() -> tuple[Signature, ...]:
    out = []
    pool_keys = {"encoder": "11.pool.0.weight", "decoder": "3.pool.0.weight"}
    for variant, enc, dec, ratio, serves in _TAESD_VARIANTS:
        for layout, ep, dp, dshift in _TAESD_LAYOUTS:
            if layout == "diffusers" and variant:
                continue  # AutoencoderTiny cannot hold TAEF2's pool branch or the f32 variant
            if layout == "comfyui" and variant == "f32":
                continue  # ComfyUI builds the combined form for taesd/taesdxl/taesd3/taef1/taef2, not TAESana
            no_pool = variant == ""  # plain TAESD must not carry TAEF2's pool branch
            parts = (
                Part(
                    _ENC,
                    (ep,),
                    tuple(_shift(r, ep, 0) for r in enc),
                    forbidden=(ep + pool_keys["encoder"],) if no_pool else (),
                ),
                Part(
                    _DEC,
                    (dp,),
                    tuple(_shift(r, dp, dshift) for r in dec),
                    forbidden=(dp + str(3 + dshift) + ".pool.0.weight",) if no_pool else (),
                ),
            )
            title = {
                "": "TAESD tiny autoencoder (taesd/taesdxl/taesd3/taef1)",
                "pool": "TAEF2 tiny autoencoder (TAESD with pool blocks)",
                "f32": "TAESana tiny autoencoder (TAESD, 32× variant)",
            }[variant]
            scalars = COMFYUI_TAESD_SCALARS if layout == "comfyui" else ()
            out.append(
                Signature(
                    "taesd",
                    variant,
                    layout,
                    f"{title}, {layout} keys",
                    parts,
                    shared_prefixes=scalars,
                    ratio=ratio,
                    native_space="model",
                    serves=serves,
                    format_scalars=scalars,
                )
            )
    return tuple(out)


# TAEHV (madebyollin/taehv: taehv, taew2_1, taew2_2, taecvx, taehv1_5, …): TAESD-like video autoencoders whose
# MemBlocks read each frame beside its predecessor (a 3×3 conv over 2× the channels) and whose TPool/TGrow
# 1×1 convs fold time into channels. Encoder and decoder share one file (``encoder.{i}`` / ``decoder.{i}``).
# Three stride-2 stages give 8× spatially, times the pixel patchify (3·p² image channels); time shrinks 4×.
_TAEHV_SERVES = ("wan21", "hunyuan_video", "cogvideox", "cogvideox_2b", "wan22", "hunyuan_video15", "ltxv")


def _taehv() -> tuple[Signature, ...]:
    out = []
    for patch in (1, 2, 4):
        pixels = 3 * patch * patch
        patchify = f", {patch}×{patch} patchify" if patch > 1 else ""
        parts = (
            Part(
                _ENC,
                ("encoder.",),
                (
                    KeyRule("encoder.0.weight", (64, pixels, 3, 3)),
                    KeyRule("encoder.2.conv.weight", (64, "*", 1, 1)),  # TPool
                    KeyRule("encoder.4.conv.0.weight", (64, 128, 3, 3)),  # MemBlock: frame + its past
                    KeyRule("encoder.17.weight", ("C", 64, 3, 3)),
                ),
            ),
            Part(
                _DEC,
                ("decoder.",),
                (
                    KeyRule("decoder.1.weight", ("*", "C", 3, 3)),
                    KeyRule("decoder.3.conv.0.weight", ("D", "2D", 3, 3)),  # MemBlock
                    KeyRule("decoder.22.weight", (pixels, "*", 3, 3)),
                ),
            ),
        )
        out.append(
            Signature(
                "taehv",
                f"p{patch}" if patch > 1 else "",
                "module",
                f"TAEHV tiny video autoencoder (taehv/taew2_1/taew2_2/taecvx…){patchify}; "
                "identified only: latentbridge cannot load TAEHV yet",
                parts,
                ratio=8 * patch,
                dims=3,
                native_space="model",
                serves=_TAEHV_SERVES,
                loadable=False,
            )
        )
    return tuple(out)


_VAEAPPROX = Signature(
    "vaeapprox",
    "",
    "a1111",
    "A1111 VAE-approx preview decoder (conv1…conv8)",
    (
        Part(
            _DEC,
            ("conv",),
            (
                KeyRule("conv1.weight", (8, "C", 7, 7)),
                KeyRule("conv2.weight", (16, 8, 5, 5)),
                KeyRule("conv8.weight", (3, 8, 3, 3)),
            ),
        ),
    ),
    ratio=8,
    native_space="model",
    serves=("sd1", "sdxl", "sd3"),
)

_VAELIGHT = Signature(
    "vaelight",
    "",
    "onnx",
    "VAElight tiny ONNX encoder/decoder (raw SD1 latents)",
    (
        Part(
            _ENC,
            ("",),
            (
                KeyRule("onnx.input.input", ("*", 3, "*", "*")),
                KeyRule("onnx.output.latent", ("*", "C", "*", "*")),
                KeyRule("cv1.weight", (16, 3, 2, 2)),
            ),
        ),
        Part(
            _DEC,
            ("",),
            (
                KeyRule("onnx.input.latent", ("*", "C", "*", "*")),
                KeyRule("onnx.output.output", ("*", 3, "*", "*")),
                KeyRule("cv1.weight", (8, "C", 3, 3)),
            ),
        ),
    ),
    ratio=8,
    serves=("sd1",),
    container="onnx",
)

SIGNATURES: tuple[Signature, ...] = (
    _kl("diffusers", "optional", flux2=False),
    _kl("ldm", "top", flux2=False),
    _kl("bfl", "none", flux2=False),
    _kl("diffusers", "top", flux2=True),
    _kl("bfl", "inner", flux2=True),
    _kl("ldm", "top", flux2=True),
    _hunyuan_video("diffusers"),
    _hunyuan_video("ldm"),
    _hunyuan_dcae(2),
    _hunyuan_dcae(3),
    _SVD,
    _LTXV,
    _MOCHI,
    _COSMOS,
    _STAGE_A,
    _wan("diffusers", residual=False),
    _wan("diffusers", residual=True),
    _wan("wan", residual=False),
    _wan("wan", residual=True),
    _DC,
    _DC_EFFICIENTVIT,
    *_taesd(),
    *_taehv(),
    _VAEAPPROX,
    _VAELIGHT,
)

if len({s.name for s in SIGNATURES}) != len(SIGNATURES):  # pragma: no cover - guards the table above
    raise ValueError("duplicate signature names")
