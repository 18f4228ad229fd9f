"""Evidence from records other programs keep beside a latent: latentbridge's own, SAI ModelSpec keys, and trainer
latent caches (musubi-tuner, kohya-ss/sd-scripts, ostris/ai-toolkit).

Sources, read in each project's public code:

* **latentbridge**: ``latentbridge.format`` and the ``latentbridge.provenance`` JSON (``vae_name``,
  ``vae_sha256``, possibly several hashes joined by "+" for a VAE loaded from encoder and decoder files) in a
  latent's metadata; the ``latentbridge`` PNG text chunk ``decode`` writes (``vae_name``, ``vae_sha256``,
  ``format``, ``provenance``).
* **SAI ModelSpec** (Stability-AI/ModelSpec README): ``modelspec.architecture`` names the model class
  ("stable-diffusion-xl-v1-base", "flux-1-dev/lora" …; mapped by ``weights.info.modelspec_format``),
  ``modelspec.hash_sha256`` = "0x" + sha256 of the tensor data, ``modelspec.title``.
* **musubi-tuner** caches: ``architecture`` metadata ("wan", "hunyuan_video", "flux_2_dev" …), mapped by
  ``files.musubi_known`` (with the channel count where one architecture has several).
* **sd-scripts** caches are named ``<image>_<W>x<H><suffix>.npz`` with a per-family suffix (library/strategy_*.py:
  ``SD_LATENTS_NPZ_SUFFIX = "_sd.npz"`` for SD 1.x/2.x, ``"_sdxl.npz"``, ``"_sd3.npz"``, ``"_flux.npz"``,
  ``"_lumina.npz"``, ``"_hi.npz"`` (HunyuanImage 2.1), ``"_anima.npz"``); an old plain ``<image>.npz`` says nothing.
* **ai-toolkit** caches (``_latent_cache/<image>_<md5>.safetensors``, toolkit/dataloader_mixins.py) carry
  ``latent_space_version``: "sd1", "sdxl" (also for AuraFlow and PixArt-Σ), "sd3", "flux1", or the model's
  ``arch`` name for newer models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from latentbridge.files import MUSUBI_FORMATS, musubi_known
from latentbridge.formats import formats
from latentbridge.provenance._model import Evidence, Gap, ProvenanceReport
from latentbridge.weights.info import modelspec_format

SOURCE_LB = "latentbridge record"
SOURCE_MODELSPEC = "modelspec"
SOURCE_MUSUBI = "musubi-tuner cache"
SOURCE_KOHYA = "sd-scripts cache name"
SOURCE_AITK = "ai-toolkit cache"
_HEX64 = re.compile(r"(?:0x)?([0-9a-fA-F]{64})")
# sd-scripts latent-cache name suffix -> latent format (the registry's "shared by" lists the models)
KOHYA_SUFFIXES: dict[str, str] = {
    "sd": "sd1",
    "sdxl": "sdxl",
    "sd3": "sd3",
    "flux": "flux1",
    "lumina": "flux1",
    "hi": "hunyuan_image21",
    "anima": "wan21",
}
_KOHYA_NAME = re.compile(r".*_(\d{3,5})x(\d{3,5})_(" + "|".join(KOHYA_SUFFIXES) + r")\.npz", re.IGNORECASE)
# ai-toolkit latent_space_version -> latent format; other values are tried as registry names
AITK_SPACES: dict[str, str] = {"sd1": "sd1", "sdxl": "sdxl", "sd3": "sd3", "flux1": "flux1"}


def _family(source: str, name: str, note: str, via: tuple[str, ...] = ()) -> Evidence:
    return Evidence("family", "recorded", source, name, via=via, note=note)


def _hashes(text: str) -> list[str]:
    """The sha256 values of a recorded ``vae_sha256`` ("a", or "a+b" for a VAE loaded from two files)."""
    return [m.group(1).lower() for h in text.split("+") if (m := _HEX64.fullmatch(h.strip()))]


def latentbridge_record(data: Mapping[str, Any], via: str, relation: str = "") -> ProvenanceReport:
    """Evidence from latentbridge's provenance dict (``Provenance.to_dict()`` or a PNG chunk's fields).

    The VAE's relation is ``relation`` when given, else "encoded" when the history starts with an encode step,
    else "recorded"."""
    evidence: list[Evidence] = []
    name = data.get("vae_name")
    name = name.strip() if isinstance(name, str) else ""
    recorded = data.get("vae_sha256")
    hashes = _hashes(recorded) if isinstance(recorded, str) else []
    history = data.get("history")
    encoded = isinstance(history, list) and any(isinstance(h, str) and h.startswith("encode") for h in history)
    relation = relation or ("encoded" if encoded else "recorded")
    for h in hashes or [""]:
        if name or h:
            evidence.append(Evidence("vae", relation, SOURCE_LB, name, h, "sha256" if h else "", via=(via,)))
    fmt = data.get("format")
    if isinstance(fmt, str) and fmt in formats():
        evidence.append(_family(SOURCE_LB, fmt, "the format latentbridge recorded", (via,)))
    return ProvenanceReport(tuple(evidence), (), (SOURCE_LB,))


def _lb_metadata(meta: Mapping[str, str]) -> ProvenanceReport | None:
    keys = [k for k in meta if k.startswith("latentbridge.")]
    if not keys:
        return None
    text = meta.get("latentbridge.provenance", "")
    data: Any = {}
    gaps: tuple[Gap, ...] = ()
    if text:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = {}
        if not isinstance(data, dict):
            gaps = (Gap(SOURCE_LB, "latentbridge.provenance is not a JSON object"),)
            data = {}
    rep = latentbridge_record({**data, "format": meta.get("latentbridge.format", "")}, "latentbridge.provenance")
    return rep.merge(ProvenanceReport(gaps=gaps, sources=(SOURCE_LB,)))


def _modelspec(meta: Mapping[str, str]) -> ProvenanceReport | None:
    arch = meta.get("modelspec.architecture", "")
    if not isinstance(arch, str) or not arch:
        return None
    fmt = modelspec_format(arch)
    evidence = (
        [_family(SOURCE_MODELSPEC, fmt, f"modelspec.architecture {arch!r}", ("modelspec.architecture",))] if fmt else []
    )
    gaps = () if fmt else (Gap(SOURCE_MODELSPEC, f"modelspec.architecture {arch!r} maps to no registered format"),)
    facts = [
        (k.removeprefix("modelspec."), v) for k, v in meta.items() if k in ("modelspec.title", "modelspec.hash_sha256")
    ]
    return ProvenanceReport(tuple(evidence), gaps, (SOURCE_MODELSPEC,), tuple(facts))


def _musubi(meta: Mapping[str, str], channels: int | None) -> ProvenanceReport | None:
    arch = meta.get("architecture")
    if not isinstance(arch, str) or "format_version" not in meta:
        return None
    known = musubi_known(arch)
    if channels is not None and channels in known:
        fmt, space = known[channels]
        ev = _family(
            SOURCE_MUSUBI, fmt, f"architecture {arch!r}, {channels} channels: {space} space", ("architecture",)
        )
        return ProvenanceReport((ev,), (), (SOURCE_MUSUBI,))
    options = sorted({f for f, _ in known.values()})
    if len(options) == 1:
        return ProvenanceReport(
            (_family(SOURCE_MUSUBI, options[0], f"architecture {arch!r}", ("architecture",)),), (), (SOURCE_MUSUBI,)
        )
    why = (
        f"architecture {arch!r} has several latent formats ({', '.join(options)}) and the channel count was not given"
        if options
        else f"architecture {arch!r}: its caching code was not read (known: {', '.join(MUSUBI_FORMATS)})"
    )
    return ProvenanceReport((), (Gap(SOURCE_MUSUBI, why),), (SOURCE_MUSUBI,))


def _aitk(meta: Mapping[str, str]) -> ProvenanceReport | None:
    space = meta.get("latent_space_version")
    if not isinstance(space, str) or not space:
        return None
    fmt = AITK_SPACES.get(space, space if space in formats() else "")
    if not fmt:
        return ProvenanceReport(
            (), (Gap(SOURCE_AITK, f"latent_space_version {space!r} maps to no registered format"),), (SOURCE_AITK,)
        )
    return ProvenanceReport(
        (_family(SOURCE_AITK, fmt, f"latent_space_version {space!r}", ("latent_space_version",)),), (), (SOURCE_AITK,)
    )


def kohya_name(file_name: str) -> ProvenanceReport | None:
    """Family evidence from an sd-scripts latent-cache file name (``photo_0512x0768_sdxl.npz``), or None."""
    m = _KOHYA_NAME.fullmatch(file_name)
    if m is None:
        return None
    suffix = m.group(3).lower()
    ev = _family(SOURCE_KOHYA, KOHYA_SUFFIXES[suffix], f"file name suffix _{suffix}.npz", (file_name,))
    return ProvenanceReport((ev,), (), (SOURCE_KOHYA,))


def read_records(meta: Mapping[str, Any], *, channels: int | None = None) -> list[ProvenanceReport]:
    """Reports for every non-ComfyUI record in safetensors-style string metadata (latentbridge, modelspec,
    musubi-tuner, ai-toolkit). Values that are not strings are ignored."""
    clean = {str(k): v for k, v in meta.items() if isinstance(v, str)}
    found = [_lb_metadata(clean), _modelspec(clean), _musubi(clean, channels), _aitk(clean)]
    return [r for r in found if r is not None]
