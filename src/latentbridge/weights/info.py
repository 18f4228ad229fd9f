"""``describe``: what a weight file is — architecture, key layout, latent geometry, format — from its header.

The latent format is resolved from the strongest signal present, in this order: the user's ``format=``,
our own ``latentbridge.format`` safetensors metadata (zoo files), a known sha256, a diffusers folder's
``config.json`` scaling (``scaling_factor`` / ``shift_factor``), the ``modelspec.architecture`` metadata, and
last the geometry (channels, ratio, dims) when exactly one format fits. When several fit, the answer says so
("sd1 or sdxl — the file alone cannot tell") instead of guessing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from latentbridge.errors import IncompatibleError
from latentbridge.formats import LatentFormat, Space, formats, get_format
from latentbridge.latent import as_space
from latentbridge.vae import VaeIdentity
from latentbridge.weights._header import ONNX_INPUT, ONNX_OUTPUT, Header, read_header
from latentbridge.weights.hashes import AUTO_HASH_LIMIT, known_file, sha256_file
from latentbridge.weights.signatures import SIGNATURES, Match, checkpoint_markers, detect, owner

# modelspec.architecture prefixes (kohya / SAI model spec) -> latent format
MODELSPEC_FORMATS: tuple[tuple[str, str], ...] = (
    ("stable-diffusion-xl", "sdxl"),
    ("stable-diffusion-v1", "sd1"),
    ("stable-diffusion-v2", "sd1"),
    ("stable-diffusion-3", "sd3"),  # sd-scripts: "stable-diffusion-3", "-3-medium", "-3.5-large" …
    ("stable-diffusion-v3", "sd3"),  # ComfyUI's CheckpointSave: "stable-diffusion-v3-medium"
    ("flux-1", "flux1"),
    ("chroma", "flux1"),
    ("z-image", "flux1"),
    ("lumina-2", "flux1"),
    ("flux-2", "flux2"),
)
FORMAT_METADATA_KEY = "latentbridge.format"
# config.json values are the registry's numbers written out (0.13025, 1.5305, 0.0609); the closest two registered
# scales that share a geometry differ by far more (sd1 0.18215 vs sdxl 0.13025), so 0.1 % only absorbs rounding.
CONFIG_RTOL = 1e-3
CONFIG_ATOL = 1e-4  # for a shift of 0

_SHORT = {
    "autoencoder_kl": "KL",
    "autoencoder_kl_flux2": "FLUX.2 KL",
    "autoencoder_kl_wan": "Wan 3-D KL",
    "autoencoder_kl_hunyuan_video": "HunyuanVideo 3-D KL",
    "autoencoder_hunyuan_dcae": "Hunyuan DC-AE-style KL",
    "autoencoder_kl_temporal_decoder": "SVD temporal-decoder KL",
    "autoencoder_kl_ltx_video": "LTX-Video 3-D KL",
    "autoencoder_mochi": "Mochi",
    "cosmos_tokenizer": "Cosmos tokenizer",
    "vqgan_stage_a": "Stable Cascade VQGAN",
    "autoencoder_dc": "DC-AE",
    "taesd": "TAESD",
    "taehv": "TAEHV",
    "vaeapprox": "VAEApprox",
    "vaelight": "VAElight",
}
AMBIGUOUS_FIX = "pass --format (format=...), or run `check` on a latent"


@dataclass(frozen=True, slots=True)
class WeightsInfo:
    """What a weight file holds, read from its header (tensors are never loaded).

    ``architecture`` is None when zero or several signatures match; ``format`` is None when the file alone
    cannot tell which latent format it serves (``formats`` then lists the candidates).
    """

    path: str  # what was described (file or folder)
    file: str  # the weight file read (inside the folder for diffusers folders)
    container: str  # "safetensors", "pickle", "onnx"
    size: int  # bytes of ``file``
    architecture: str | None
    variant: str
    layout: str
    title: str
    prefix: str  # key prefix of the VAE inside a checkpoint ("first_stage_model."), "" for a bare VAE
    checkpoint: bool  # a full diffusion checkpoint (UNet/DiT or text-encoder keys present)
    has_vae: bool
    has_encoder: bool
    has_decoder: bool
    latent_channels: int | None  # raw space
    spatial_ratio: int | None  # raw space
    dims: int | None  # 2 image, 3 video
    native_space: str | None  # the space the network reads/writes: "raw" or "model"
    dtype: str  # stored dtype(s) of the VAE tensors, "float16" or "float16+float32"
    parameters: int  # elements in the VAE tensors (BatchNorm step counters excluded)
    formats: tuple[str, ...]  # latent formats the file's geometry fits
    format: str | None  # the resolved format
    format_source: str  # "user", "metadata", "sha256", "config.json", "modelspec", "geometry" or ""
    sha256: str  # "" when not computed
    known_file: str  # the official file this hash identifies, or ""
    metadata: tuple[tuple[str, str], ...]  # modelspec.* and latentbridge.* metadata
    matches: tuple[str, ...]  # names of every matching signature
    notes: tuple[str, ...]
    match: Match | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for ``--json``)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "match"}
        for key in ("formats", "matches", "notes"):
            out[key] = list(out[key])
        out["metadata"] = dict(self.metadata)
        return out

    def identity(self) -> VaeIdentity:
        """The VAE's identity from the header: raw geometry converted to its native space, the resolved format
        (or the candidates its geometry fits), which halves the file holds.

        Raises:
            IncompatibleError: the file is no (single, identified) VAE.
        """
        if self.architecture is None or self.latent_channels is None or self.spatial_ratio is None:
            why = self.notes[0] if self.notes else "no VAE architecture matches its tensors"
            raise IncompatibleError(
                f"cannot check against {self.path}: {why}; expected a VAE weight file (or a checkpoint holding one)"
            )
        fmt = get_format(self.format) if self.format else None
        native = as_space(self.native_space or "raw", unknown=False)
        channels, ratio = fmt.space_shape(native) if fmt is not None else (self.latent_channels, self.spatial_ratio)
        return VaeIdentity(
            self.path,
            self.sha256,
            self.architecture,
            fmt,
            cast(Space, native),
            channels,
            ratio,
            self.dims or 2,
            has_encoder=self.has_encoder,
            has_decoder=self.has_decoder,
            candidates=tuple(self.formats),
        )

    def lines(self) -> list[str]:
        """Human-readable lines, one fact per line."""
        out = [f"file          {self.file} ({self.container}, {_size(self.size)})"]
        if self.file != self.path:
            out.insert(0, f"path          {self.path}")
        if self.checkpoint:
            where = f"under '{self.prefix}'" if self.has_vae else "none"
            out.append(f"checkpoint    full diffusion checkpoint; VAE: {where}")
        if self.architecture is not None:
            out.append(f"architecture  {self.title}")
            out.append(f"signature     {self.matches[0]}")
            parts = " + ".join(p for p, has in (("encoder", self.has_encoder), ("decoder", self.has_decoder)) if has)
            out.append(f"parts         {parts}")
            out.append(
                f"latent        {self.latent_channels} channels, {self.spatial_ratio}× spatial, {self.dims}-D "
                f"(raw); the network works in {self.native_space} space"
            )
        elif self.matches:
            out.append(f"architecture  ambiguous: {', '.join(self.matches)}")
        else:
            out.append("architecture  unknown")
        out.append(f"parameters    {self.parameters / 1e6:.2f} M ({self.dtype or 'no tensors'})")
        if self.format is not None:
            out.append(f"format        {self.format} (from {self.format_source})")
        elif self.formats:
            out.append(f"format        one of {', '.join(self.formats)}")
        out.append(f"sha256        {self.sha256 or 'not computed'}")
        if self.known_file:
            out.append(f"known file    {self.known_file}")
        out += [f"metadata      {k} = {v}" for k, v in self.metadata]
        out += [f"note          {n}" for n in self.notes]
        return out

    def render(self) -> str:
        """:meth:`lines` joined with newlines."""
        return "\n".join(self.lines())


def _size(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def _fits(fmt: LatentFormat, m: Match) -> bool:
    return (fmt.channels, fmt.spatial_ratio, fmt.dims) == (m.channels, m.spatial_ratio, m.signature.dims)


def geometry_phrase(m: Match) -> str:
    """'4-channel KL f8' — how a match is named in messages."""
    dim = " 3-D" if m.signature.dims == 3 else ""
    return f"{m.channels}-channel{dim} {_SHORT[m.signature.architecture]} f{m.spatial_ratio}"


def ambiguity(m: Match) -> str:
    """The honest answer when several formats fit."""
    return f"{geometry_phrase(m)}: {' or '.join(m.candidates)} — the file alone cannot tell; {AMBIGUOUS_FIX}"


def modelspec_format(value: str) -> str:
    """The latent format a ``modelspec.architecture`` names ("stable-diffusion-xl-v1-base/lora" -> "sdxl"), or ""."""
    arch = value.strip().lower().split("/")[0]
    for prefix, name in MODELSPEC_FORMATS:
        if arch.startswith(prefix):
            return name
    return ""


def config_format(config: Mapping[str, Any], m: Match) -> str:
    """The one candidate format whose scale and shift a diffusers ``config.json`` states, or "".

    diffusers pipelines scale latents by the VAE config's ``scaling_factor`` (and ``shift_factor``), so a
    config that states them says which latent space the folder serves: 0.13025 is SDXL's, 0.18215 SD1's,
    1.5305 / 0.0609 SD3's, 0.3611 / 0.1159 FLUX.1's. A config without ``scaling_factor`` (older SD1 folders)
    says nothing: diffusers' default is not evidence.
    """
    scale, shift = config.get("scaling_factor"), config.get("shift_factor") or 0.0
    if not isinstance(scale, int | float) or not isinstance(shift, int | float):
        return ""
    reg = formats()
    named = [
        name
        for name in m.candidates
        if math.isclose(reg[name].scale, scale, rel_tol=CONFIG_RTOL)
        and math.isclose(reg[name].shift, shift, rel_tol=CONFIG_RTOL, abs_tol=CONFIG_ATOL)
    ]
    return named[0] if len(named) == 1 else ""


def resolve_format(
    m: Match, header: Header, user: str | LatentFormat | None, known_format: str
) -> tuple[str | None, str, list[str]]:
    """(format name or None, its source, notes) for a match, strongest signal first (see module doc).

    Raises:
        IncompatibleError: ``user`` names a format whose raw geometry does not fit the file.
    """
    notes: list[str] = []
    reg = formats()
    signals: list[tuple[str, str]] = []  # (source, format name), strongest first
    if user is not None:
        fmt = get_format(user)
        if not _fits(fmt, m):
            fitting = [f.name for f in reg.values() if _fits(f, m)]
            raise IncompatibleError(
                f"format {fmt.name!r} ({fmt.channels} raw channels, {fmt.spatial_ratio}×, {fmt.dims}-D) does not fit "
                f"{header.source}: it is a {geometry_phrase(m)} VAE; formats that fit: "
                f"{', '.join(fitting) or 'none in the registry'}. Pass one of those, or another VAE"
            )
        signals.append(("user", fmt.name))
    meta = header.metadata.get(FORMAT_METADATA_KEY, "")
    if meta:
        signals.append(("metadata", meta))
    if known_format:
        signals.append(("sha256", known_format))
    from_config = config_format(header.config, m)
    if from_config:
        signals.append(("config.json", from_config))
    spec = header.metadata.get("modelspec.architecture", "")
    if spec and modelspec_format(spec):
        signals.append(("modelspec", modelspec_format(spec)))
    chosen: tuple[str, str] | None = None
    for source, name in signals:
        named = reg.get(name)
        if named is None or not _fits(named, m):
            why = "is not a registered format" if named is None else f"does not fit a {geometry_phrase(m)}"
            notes.append(f"{source} names format {name!r}, which {why}: ignored")
            continue
        if source not in ("user", "metadata") and name not in m.candidates:
            notes.append(
                f"{source} names format {name!r}, which {_SHORT[m.signature.architecture]} files do not serve: ignored"
            )
            continue
        if chosen is None:
            chosen = (source, name)
        elif name != chosen[1]:
            notes.append(f"{source} says {name!r} but {chosen[0]} says {chosen[1]!r}: using {chosen[1]!r}")
    if chosen is not None:
        return chosen[1], chosen[0], notes
    if len(m.candidates) == 1:
        return m.candidates[0], "geometry", notes
    if not m.candidates:
        notes.append(
            f"no registered latent format has {m.channels} raw channels at {m.spatial_ratio}× for this architecture; "
            "pass format= with a custom format"
        )
        return None, "", notes
    notes.append(ambiguity(m))
    return None, "", notes


def _dtype_summary(counts: Counter[str]) -> str:
    return "+".join(d for d, _ in counts.most_common())


def _vae_keys(header: Header, m: Match | None) -> tuple[list[str], list[str]]:
    """(keys of the VAE's parts, keys under its prefix that belong to no part); all stored keys without a match."""
    keys = [k for k in header.tensors if not k.startswith((ONNX_INPUT, ONNX_OUTPUT))]
    if m is None:
        return keys, []
    n = len(m.prefix)
    under = [k for k in keys if k.startswith(m.prefix)]
    return [k for k in under if owner(m, k[n:])], [k for k in under if not owner(m, k[n:])]


def _hash(header: Header, hash: bool | None) -> tuple[str, str]:
    if hash is False:
        return "", "sha256 not computed (hash=False)"
    if header.shards:
        files = len(set(header.shards.values()))
        return "", f"sha256 not computed: the weights are sharded over {files} files (no official VAE file is)"
    if hash is None and header.size > AUTO_HASH_LIMIT:
        return "", (
            f"sha256 not computed: {_size(header.size)} is above the {_size(AUTO_HASH_LIMIT)} automatic limit "
            "(hashing reads the whole file); pass hash=True (inspect --hash) to identify official files by content"
        )
    return sha256_file(header.path), ""


def identify(header: Header, format: str | LatentFormat | None = None, *, hash: bool | None = None) -> WeightsInfo:
    """:func:`describe` for an already-read header."""
    matches = detect(header)
    markers = checkpoint_markers(header)
    sha, hash_note = _hash(header, hash)
    known = known_file(sha) if sha else None
    notes: list[str] = [hash_note] if hash_note else []
    m = matches[0] if len(matches) == 1 else None
    keys, unowned = _vae_keys(header, m)
    if unowned:
        notes.append(
            f"{len(unowned)} tensors under the VAE's keys belong to no part of it ({', '.join(unowned[:3])}"
            f"{' …' if len(unowned) > 3 else ''}): load_vae drops declared training-only tensors (loss.*, "
            "model_ema.*) and refuses any other"
        )
    counted = [k for k in keys if not k.endswith("num_batches_tracked")]
    parameters = sum(header.tensors[k].numel for k in counted)
    dtype = _dtype_summary(Counter(header.tensors[k].dtype for k in counted))
    metadata = tuple(
        sorted((k, v) for k, v in header.metadata.items() if k.startswith(("modelspec.", "latentbridge.")))
    )
    fmt_name, fmt_source = None, ""
    if m is not None:
        fmt_name, fmt_source, fmt_notes = resolve_format(m, header, format, known.format if known else "")
        notes += fmt_notes
        held = [k for k in m.signature.format_scalars if m.prefix + k in header.tensors]
        if held and fmt_name is None:
            notes.append(
                f"its header cannot tell, but the file also carries {' and '.join(held)} (ComfyUI's latent "
                "scaling), whose values name the format: load_vae reads them (describe reads headers only)"
            )
        if not m.signature.loadable:
            notes.append(
                f"latentbridge identifies {_SHORT[m.signature.architecture]} files but cannot load them yet: "
                "run this one with its own code"
            )
        if m.prefix:
            notes.insert(0, f"full checkpoint: its VAE sits under {m.prefix!r} ({len(keys)} tensors)")
    elif matches:
        notes.insert(
            0,
            f"{len(matches)} signatures match ({', '.join(x.name for x in matches)}): the file mixes key layouts "
            "or holds several VAEs, so latentbridge will not guess which to load; extract one VAE into its own file",
        )
    elif markers:
        notes.insert(
            0, f"this checkpoint has no VAE: load a separate VAE file (it holds only {', '.join(markers)} … tensors)"
        )
    else:
        first = ", ".join(list(header.tensors)[:4])
        notes.insert(
            0,
            f"no known VAE architecture matches its {len(header.tensors)} tensors (first keys: {first}); "
            f"latentbridge knows {len({s.architecture for s in SIGNATURES})} architectures in "
            f"{len(SIGNATURES)} key layouts (latentbridge.weights.SIGNATURES)",
        )
    sig = m.signature if m is not None else None
    return WeightsInfo(
        path=str(header.source),
        file=str(header.path),
        container=header.container,
        size=header.size,
        architecture=sig.architecture if sig else None,
        variant=sig.variant if sig else "",
        layout=sig.layout if sig else "",
        title=sig.title if sig else "",
        prefix=m.prefix if m else "",
        checkpoint=bool(markers),
        has_vae=m is not None,
        has_encoder=m is not None and "encoder" in m.parts,
        has_decoder=m is not None and "decoder" in m.parts,
        latent_channels=m.channels if m else None,
        spatial_ratio=m.spatial_ratio if m else None,
        dims=sig.dims if sig else None,
        native_space=sig.native_space if sig else None,
        dtype=dtype,
        parameters=parameters,
        formats=m.candidates if m else (),
        format=fmt_name,
        format_source=fmt_source,
        sha256=sha,
        known_file=known.what if known else "",
        metadata=metadata,
        matches=tuple(x.name for x in matches),
        notes=tuple(notes),
        match=m,
    )


def describe(path: str | Path, format: str | LatentFormat | None = None, *, hash: bool | None = None) -> WeightsInfo:
    """Identify a VAE weight file (or diffusers folder) from its header, never loading its tensors.

    Args:
        path: a .safetensors / .ckpt / .pt / .pth / .bin / .onnx file, or a diffusers (pipeline) folder.
        format: the latent format the user says it serves; always wins when its geometry fits.
        hash: compute the sha256 (True), never (False), or only for files up to
            :data:`~latentbridge.weights.hashes.AUTO_HASH_LIMIT` (None, the default).

    Returns:
        A :class:`WeightsInfo`; its ``notes`` say plainly when nothing or several things match,
        when a checkpoint has no VAE, and when the format cannot be told from the file.

    Raises:
        FileFormatError: unreadable, corrupt or unsafe file.
        IncompatibleError: ``format`` does not fit the file's latent geometry.
    """
    return identify(read_header(path), format, hash=hash)
