"""Read a latent from any container and say what the file records about it (format, space, layout, provenance).

Who wrote the file decides how its tensor is interpreted; the container is recognised from content only:

* **latentbridge** (any container with a ``latentbridge.*`` record): format, space, layout and provenance
  as recorded.
* **ComfyUI SaveLatent** (``latent_tensor`` + the empty ``latent_format_version_0`` marker): raw space,
  family unknown. ComfyUI's LoadLatent multiplies by 1/0.18215 when the marker is absent: such **legacy**
  files hold SD1-scaled (model-space) latents, so they read as ``sd1``, model space.
* **kohya-ss/sd-scripts** latent caches (``latents`` / ``latents_<H>x<W>``, ``original_size``, ``crop_ltrb``,
  ``latents_flipped``, ``alpha_mask``; one image per file, C×H×W, float32). Family unknown. Verified in
  sd-scripts: SD1/SD2/SDXL caches hold **raw** latents (``vae.encode(x).latent_dist.sample()`` is cached;
  ``train_network.shift_scale_latents`` multiplies by the scaling factor only after loading), SD3 caches are
  raw too (``SDVAE.process_in`` is applied after loading), while FLUX.1 caches hold **model-space** latents
  (its autoencoder's ``encode`` already applies ``scale * (z - shift)`` and ``shift_scale_latents`` is the
  identity); Anima caches (``*_anima.npz``, the Qwen-Image VAE: Wan 2.1 space) hold the normalised one-frame
  latent without its time axis (``strategy_anima`` → ``encode_pixels_to_latents``). Given ``format``, the space
  follows from that table.
* **kohya-ss/musubi-tuner** latent caches (safetensors; ``latents_<F>x<H>x<W>_<dtype>`` holding C×F×H×W, read
  as layout CTHW, beside ``latents_image_…``/``clip_…`` conditioning; ``architecture`` metadata). Wan caches are
  model space (its encoder normalises), HunyuanVideo caches raw; other architectures: unknown.
* anything else: format and space unknown unless the caller says.

A format/space/layout given by the caller fills in what the file does not record and overrides what is only
implied by a convention (ComfyUI's raw, the legacy SD1 scale, the kohya table), with a note. It conflicts with
what latentbridge *recorded* in the file only when ``override=True`` says the record is wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentbridge._guard import load_json
from latentbridge.errors import FileFormatError, IncompatibleError, ShapeError, UnknownFormatError
from latentbridge.files._classify import weight_names
from latentbridge.files._containers import Contents, read_contents
from latentbridge.files._sniff import COMFY_KEY, COMFY_MARKER, Entry, sniff
from latentbridge.formats import LatentFormat, formats, get_format, grid_options, token_formats, tokens_to_model
from latentbridge.latent import Latent, Provenance, as_space, check_layout

META_PREFIX = "latentbridge."
COMFY_LEGACY_SCALE = 0.18215  # ComfyUI LoadLatent: multiplier 1/0.18215 when latent_format_version_0 is absent
# kohya-ss/sd-scripts: which space a latent cache holds, per family (see the module docstring for the sources)
KOHYA_SPACE: dict[str, str] = {"sd1": "raw", "sdxl": "raw", "sd3": "raw", "flux1": "model", "wan21": "model"}
_KOHYA_LATENT = re.compile(r"latents(_flipped)?(_\d+x\d+)?")
# kohya-ss/musubi-tuner caches (save_latent_cache_common): one item per safetensors file, keys
# latents[_image|_control]_<F>x<H>x<W>_<dtype> holding C×F×H×W (or latents_<H>x<W>_<dtype>: C×H×W), metadata
# architecture / width / height / format_version (/ frame_count).
_MUSUBI_LATENT = re.compile(r"latents(_image|_control)?_(?:(\d+)x)?(\d+)x(\d+)_[a-z0-9]+")


def _musubi_suffix(name: str) -> str:
    """The suffix group of a musubi-tuner latent entry name ("" for the main latent)."""
    m = _MUSUBI_LATENT.fullmatch(name)
    return (m.group(1) or "") if m is not None else ""


# musubi architecture -> {channels: (format, space)}, only where the caching code was read: Wan's WanVAE.encode
# normalises with the VAE's per-channel mean/std (model space; "wan21" in early releases); HunyuanVideo's
# cache_latents.py stores latent_dist.sample() without the scaling factor (raw). Other architectures: unknown.
# Qwen-Image's qwen_image_cache_latents.py stores its Wan-2.1-space latent normalised, one frame (16×1×H×W);
# FLUX.2's flux_2_cache_latents.py stores the VAE's packed, BatchNorm-normalised latent (128×H/16×W/16). An
# architecture ending in "*" names a prefix (flux_2_dev, flux_2_klein_…).
MUSUBI_FORMATS: dict[str, dict[int, tuple[str, str]]] = {
    "wan": {16: ("wan21", "model"), 48: ("wan22", "model")},
    "wan21": {16: ("wan21", "model")},
    "hunyuan_video": {16: ("hunyuan_video", "raw")},
    "qwen_image": {16: ("wan21", "model")},
    "flux_2*": {128: ("flux2", "model")},
}


def musubi_known(arch: str) -> dict[int, tuple[str, str]]:
    """The {channels: (format, space)} of a musubi-tuner architecture name ({} when its caching was not read)."""
    if arch in MUSUBI_FORMATS:
        return MUSUBI_FORMATS[arch]
    for name, known in MUSUBI_FORMATS.items():
        if name.endswith("*") and arch.startswith(name[:-1]):
            return known
    return {}


_COMFY_DICT_EXTRAS = frozenset(("noise_mask", "batch_index", "type"))  # ComfyUI LATENT dict keys beside samples
_DEFAULT_LAYOUT = {3: "CHW", 4: "NCHW", 5: "NCTHW"}
MAX_LISTED = 12  # arrays named in an error message; the rest are counted
MIN_WEIGHT_NAMES = 4  # parameter-style names that make a file a network's (the smallest we know, VAEApprox, has 16)


@dataclass(frozen=True, slots=True)
class LatentFile:
    """A latent read from a file, with everything the file says about it.

    Attributes:
        path: the file.
        container: container kind from content (see :func:`latentbridge.files.sniff`).
        writer: who wrote it, as far as the content tells: "latentbridge", "ComfyUI SaveLatent",
            "ComfyUI SaveLatent (legacy)", "kohya-ss/sd-scripts latent cache", "musubi-tuner latent cache",
            "ComfyUI LATENT dict" or "".
        key: the entry that holds the latent ("" for a bare .npy or a .pt holding one tensor).
        entries: every array in the file, described from its header.
        metadata: the file's string metadata (safetensors ``__metadata__`` such as ComfyUI's ``prompt`` and
            ``workflow``, or latentbridge's record).
        other: non-tensor values stored beside the tensors (a .pt dict), as text.
        notes: how the file was interpreted, for humans (legacy scale, kohya space, overrides, …).
        latent: the latent itself, with format, space, layout and provenance.
    """

    path: Path
    container: str
    writer: str
    key: str
    entries: tuple[Entry, ...]
    metadata: dict[str, str]
    other: dict[str, str]
    notes: tuple[str, ...]
    latent: Latent
    recorded: dict[str, str] = field(default_factory=dict)  # latentbridge.* entries only

    @property
    def recorded_layout(self) -> str | None:
        """The layout the file's latentbridge record states, or None when it states none."""
        return self.recorded.get(META_PREFIX + "layout")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (no tensor data)."""
        lat = self.latent
        return {
            "file": str(self.path),
            "container": self.container,
            "writer": self.writer,
            "key": self.key,
            "entries": [{"name": e.name, "dtype": e.dtype, "shape": list(e.shape)} for e in self.entries],
            "shape": list(lat.shape),
            "dtype": str(lat.tensor.dtype).removeprefix("torch."),
            "layout": lat.layout,
            "space": lat.space,
            "format": lat.format_name or None,
            "provenance": lat.provenance.to_dict(),
            "metadata": self.metadata,
            "other": self.other,
            "notes": list(self.notes),
        }


def _fail(path: Path, problem: str) -> FileFormatError:
    return FileFormatError(f"{path}: {problem}")


def _listing(entries: list[Entry], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(f"{e.name or '<unnamed>'} {e.dtype}{list(e.shape)}" for e in entries[:limit]) or "nothing"
    return shown + (f", … ({len(entries)} arrays in all)" if len(entries) > limit else "")


def _refuse_weights(path: Path, contents: Contents) -> None:
    """A clear error for a network's weight file given where a latent is expected (swapped arguments)."""
    names = list(contents.entries)
    params = weight_names(names)
    if len(params) < MIN_WEIGHT_NAMES or len(params) * 2 <= len(names):  # a latent file with a stray entry or two
        return
    raise _fail(
        path,
        f"this is a network's weight file ({len(names)} tensors such as {', '.join(params[:3])}), not a latent: "
        "pass it as the VAE (--vae FILE), or run `latentbridge inspect` on it; if it really holds a latent, "
        "name its array with key='NAME' (--key NAME)",
    )


def _choose_key(path: Path, contents: Contents, key: str | None, preferred: str | None) -> str:
    entries = contents.entries
    if key is not None:
        if key not in entries:
            raise _fail(path, f"no array named {key!r}; the file holds {_listing(list(entries.values()))}")
        return key
    if preferred is not None:
        return preferred
    candidates = [e for e in entries.values() if e.could_be_latent]
    if len(candidates) == 1:
        return candidates[0].name
    if not candidates:
        raise _fail(
            path,
            "no array here could be a latent (a floating-point array with 3 to 5 dimensions); the file holds "
            f"{_listing(list(entries.values()))}",
        )
    raise _fail(
        path,
        f"{len(candidates)} arrays could be the latent: {_listing(candidates)}; say which with key='NAME' "
        "(--key NAME on the command line)",
    )


def _recorded_format(path: Path, name: str) -> LatentFormat | None:
    if not name:
        return None
    try:
        return get_format(name)
    except UnknownFormatError as exc:
        raise _fail(
            path,
            f"the file records format {name!r}, which this latentbridge does not know (it knows "
            f"{', '.join(formats())}); upgrade latentbridge, or pass format=... with override=True (--override)",
        ) from exc


def _parse_provenance(path: Path, text: str) -> Provenance:
    if not text:
        return Provenance()
    fix = "re-export the latent, or remove the record"
    data = load_json(text, str(path), "damaged latentbridge.provenance record", fix)
    try:
        return Provenance.from_dict(data)
    except FileFormatError as exc:
        raise _fail(path, f"damaged latentbridge.provenance record ({exc}); {fix}") from exc


def _check_space(space: str | None) -> None:
    if space is not None and space not in ("raw", "model"):
        raise ValueError(
            f"unknown space {space!r}: expected 'raw' (VAE output) or 'model' (what the diffusion model sees)"
        )


@dataclass
class _Reading:
    """Mutable scratch state while one file is interpreted (never escapes this module)."""

    writer: str = ""
    preferred: str | None = None
    fmt: LatentFormat | None = None
    space: str = "unknown"
    layout: str | None = None
    provenance: Provenance = field(default_factory=Provenance)
    recorded: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    legacy_comfy: bool = False
    comfy: bool = False  # written by ComfyUI: the space follows the format's comfy_space once it is known
    kohya: bool = False
    musubi: bool = False


def _interpret(path: Path, contents: Contents, key: str | None) -> _Reading:
    """Who wrote the file and what it records, before the caller's choices are applied."""
    r = _Reading()
    names = set(contents.entries)
    r.recorded = {k: v for k, v in contents.metadata.items() if k.startswith(META_PREFIX)}
    if r.recorded:
        r.writer = "latentbridge"
        r.fmt = _recorded_format(path, r.recorded.get(META_PREFIX + "format", ""))
        space = r.recorded.get(META_PREFIX + "space", "unknown")
        if space not in ("raw", "model", "unknown"):
            raise _fail(path, f"the file records space {space!r}; expected raw, model or unknown")
        r.space = space
        r.layout = r.recorded.get(META_PREFIX + "layout") or None
        r.provenance = _parse_provenance(path, r.recorded.get(META_PREFIX + "provenance", ""))
        r.preferred = COMFY_KEY if COMFY_KEY in names else "latent" if "latent" in names else None
        if contents.kind == "npy":
            r.preferred = ""
        if COMFY_KEY in names and COMFY_MARKER not in names:
            r.notes.append(
                f"{COMFY_MARKER} is missing: ComfyUI's LoadLatent would divide this latent by 0.18215; add the "
                "marker (re-export with latentbridge) before loading it in ComfyUI"
            )
        return r
    if contents.kind == "latent":
        r.preferred = COMFY_KEY
        r.provenance = Provenance(tool="ComfyUI SaveLatent")
        if COMFY_MARKER in names:
            r.writer = "ComfyUI SaveLatent"
            r.space, r.comfy = "raw", True  # settled by the channel count once the tensor is read
        else:
            r.writer = "ComfyUI SaveLatent (legacy)"
            r.legacy_comfy = True
            r.fmt, r.space = get_format("sd1"), "model"
            r.notes.append(
                f"legacy ComfyUI file (no {COMFY_MARKER} marker): it holds SD1-scaled latents (raw × 0.18215); "
                "ComfyUI's LoadLatent divides them by 0.18215"
            )
        return r
    if contents.kind == "kohya-npz":
        r.writer = "kohya-ss/sd-scripts latent cache"
        r.kohya = True
        r.provenance = Provenance(tool="kohya-ss/sd-scripts latent cache")
        plain = sorted(n for n in names if re.fullmatch(r"latents(_\d+x\d+)?", n))
        if len(plain) == 1:
            r.preferred = plain[0]
        elif len(plain) > 1 and key is None:
            listed = _listing([contents.entries[n] for n in plain])
            raise _fail(
                path,
                f"this kohya cache holds {len(plain)} resolutions: {listed}; say which with key='NAME' (--key NAME)",
            )
        return r
    meta = contents.metadata
    musubi = [n for n in names if _MUSUBI_LATENT.fullmatch(n)]
    if contents.kind == "safetensors" and musubi and {"architecture", "format_version"} <= set(meta):
        r.writer = "musubi-tuner latent cache"
        r.musubi = True
        extra = {f"musubi.{k}": meta[k] for k in ("architecture", "width", "height", "frame_count") if k in meta}
        r.provenance = Provenance(tool=r.writer, extra=tuple(sorted(extra.items())))
        main = [n for n in musubi if not _musubi_suffix(n)]
        r.preferred = main[0] if len(main) == 1 else None
        return r
    if contents.kind == "pt" and "samples" in names and names - {"samples"} <= _COMFY_DICT_EXTRAS:
        r.writer = "ComfyUI LATENT dict"
        r.preferred = "samples"
        r.space, r.comfy = "raw", True  # settled by the channel count once the tensor is read
    return r


def _comfy_space(tensor: torch.Tensor, what: str) -> tuple[str, str]:
    """The space a ComfyUI LATENT of unknown family holds, from its channel count, and a note saying why.

    ComfyUI keeps most families raw, but FLUX.2 and LTX-Video (statistics in the VAE file) in model space —
    FLUX.2 packed to 128 channels. The families whose ComfyUI tensor has this many channels (and this rank)
    decide: all raw → raw, all model → model, a mix or none → unknown (the note names them).
    """
    dims = 3 if tensor.ndim == 5 else 2
    held: dict[str, list[str]] = {}
    for f in formats().values():
        if f.dims == dims and f.space_shape(f.comfy_space)[0] == tensor.shape[1]:
            held.setdefault(f.comfy_space, []).append(f.name)
    spaces = sorted(held)
    if len(spaces) == 1:
        names = ", ".join(held[spaces[0]])
        return spaces[0], f"{what} of {tensor.shape[1]} channels: ComfyUI holds {names} in {spaces[0]} space there"
    listing = "; ".join(f"{sp} for {', '.join(n)}" for sp, n in held.items()) or "no registered family"
    return "unknown", (
        f"{what} of {tensor.shape[1]} channels: ComfyUI holds {listing}; the family is not recorded, so pass "
        "--format (and the space follows ComfyUI's convention for it)"
    )


def _musubi_extras(contents: Contents, key: str, r: _Reading) -> None:
    """Layout from the key's own sizes (C×F×H×W or C×H×W), and the format/space where the architecture is known."""
    m = _MUSUBI_LATENT.fullmatch(key)
    shape = contents.entries[key].shape
    if m is None:
        return
    sizes = tuple(int(g) for g in m.groups()[1:] if g is not None)
    if len(shape) == len(sizes) + 1 and shape[1:] == sizes:
        r.layout = "CTHW" if len(sizes) == 3 else "CHW"
    arch = dict(r.provenance.extra).get("musubi.architecture", "")
    known = musubi_known(arch).get(shape[0]) if shape else None
    if known is not None:
        r.fmt, r.space = get_format(known[0]), known[1]
    others = sorted(n for n in contents.entries if n != key and _MUSUBI_LATENT.fullmatch(n))
    if others:
        r.notes.append(f"the cache also holds {', '.join(others)} (conditioning latents: name one with --key)")
    what = f"{known[0]} in {known[1]} space" if known else "format and space not recorded: pass --format and --space"
    layout = r.layout or "layout as stored"
    r.notes.append(f"a musubi-tuner cache for architecture {arch!r}, one item per file ({layout}): {what}")


def _kohya_extras(contents: Contents, key: str, r: _Reading) -> None:
    m = _KOHYA_LATENT.fullmatch(key)
    suffix = (m.group(2) or "") if m else ""
    extra: dict[str, str] = dict(r.provenance.extra)
    for name in ("original_size", "crop_ltrb"):
        if name + suffix in contents.entries:
            extra[f"kohya.{name}"] = json.dumps(contents.load(name + suffix).tolist())
    r.provenance = Provenance(tool=r.provenance.tool, extra=tuple(sorted(extra.items())))
    if key.startswith("latents_flipped"):
        r.notes.append("this is the horizontally flipped copy that sd-scripts caches for flip_aug")
    elif "latents_flipped" + suffix in contents.entries:
        r.notes.append(f"the cache also holds a horizontally flipped copy: key 'latents_flipped{suffix}'")
    if "alpha_mask" + suffix in contents.entries:
        r.notes.append(f"the cache also holds an alpha mask: 'alpha_mask{suffix}'")
    r.notes.append(
        "kohya caches hold one image per file (C×H×W); SD1/SD2/SDXL/SD3 caches are raw, FLUX.1 caches model-space "
        "(sd-scripts applies the scaling after loading SD caches, while FLUX.1's encoder scales before caching)"
    )


def parse_grid(grid: str | tuple[int, int]) -> tuple[int, int]:
    """``"64x64"`` (rows x columns of tokens; "×" and "," also separate) or a (rows, columns) pair."""
    if isinstance(grid, tuple):
        rows, cols = grid
    else:
        parts = re.split(r"\s*[x×,]\s*", grid.strip().lower())
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"a token grid is ROWSxCOLUMNS, e.g. 64x64 (a 1024×1024 FLUX image); got {grid!r}")
        rows, cols = int(parts[0]), int(parts[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"a token grid needs positive rows and columns, got {rows}x{cols}")
    return rows, cols


def _token_candidates(
    tensor: torch.Tensor, user_fmt: LatentFormat | None, *, asked: bool = False
) -> list[LatentFormat]:
    """Formats whose diffusers token form [N, L, D] / [L, D] this tensor could be (the user's format only, if given).

    Unasked (no grid given), a sequence must have at least twice as many tokens as features to be taken for one
    (FLUX at 256 px: 256 × 64 or 256 × 128); a [C, H, W] latent of an unregistered VAE is not.
    """
    if tensor.ndim not in (2, 3):
        return []
    if not asked and tensor.shape[-2] < max(4, 2 * tensor.shape[-1]):
        return []
    if user_fmt is not None:
        return [user_fmt] if user_fmt.token_patch and user_fmt.token_dim == tensor.shape[-1] else []
    return token_formats(tensor.shape[-1])


def _token_hint(tensor: torch.Tensor, cands: list[LatentFormat]) -> str:
    """How to read a token sequence: the formats, the grids that hold its length, the option."""
    length, dim = tensor.shape[-2], tensor.shape[-1]

    def what(f: LatentFormat) -> str:
        if f.dims == 3:
            return "one-frame tokens, as Qwen-Image's"
        return f"{f.token_dim} = {f.model_channels}·{f.token_patch}²"

    names = " or ".join(f"{f.name} ({what(f)})" for f in cands)
    ratio = cands[0].token_spatial_ratio
    grids = ", ".join(f"{h}x{w} ({h * ratio} px high, {w * ratio} wide)" for h, w in grid_options(length))
    video = [f.name for f in formats().values() if f.dims == 3 and f.model_channels == dim and not f.token_patch]
    clip = (
        f" (a {'/'.join(video)} clip's tokens [N, T·H·W, {dim}] also need the frame count: reshape it to "
        "[N, C, T, H, W] yourself; video token sequences are not read)"
        if video
        else ""
    )
    which = (
        f" and --format {'|'.join(f.name for f in cands)} (the tensor cannot tell them apart)" if len(cands) > 1 else ""
    )
    return (
        f"{length} tokens × {dim} features looks like a diffusers token sequence (output_type='latent') of {names}; "
        f"the grid is not stored with it: pass --grid ROWSxCOLUMNS (grid=...) with the image's size in "
        f"{ratio}-px tokens — {grids} hold {length} tokens{which}{clip}"
    )


def _read_tokens(
    path: Path,
    tensor: torch.Tensor,
    cands: list[LatentFormat],
    grid: str | tuple[int, int],
    space: str | None,
    user_fmt: LatentFormat | None,
) -> tuple[torch.Tensor, LatentFormat, str]:
    if not cands:
        if user_fmt is not None and tensor.ndim in (2, 3):
            dim = f"{user_fmt.token_dim} features" if user_fmt.token_patch else "no token form"
            raise _fail(
                path,
                f"--format {user_fmt.name} has {dim}, but this token sequence has {tensor.shape[-1]} per token; "
                f"formats with {tensor.shape[-1]}: "
                + (", ".join(f.name for f in token_formats(tensor.shape[-1])) or "none"),
            )
        raise _fail(
            path,
            f"--grid reads a diffusers token sequence [N, L, D] with D = {' or '.join(map(str, _token_dims()))} "
            f"(FLUX.1, FLUX.2, Qwen-Image), but the array has shape {list(tensor.shape)}; drop --grid for a spatial "
            "latent",
        )
    if len(cands) > 1:
        raise _fail(path, _token_hint(tensor, cands))
    if space == "raw":
        raise _fail(path, "a token sequence is the transformer's input, in model space; drop --space raw")
    try:
        return tokens_to_model(tensor, cands[0], parse_grid(grid)), cands[0], "model"
    except (ShapeError, ValueError) as exc:
        raise _fail(path, str(exc)) from exc


def _token_dims() -> list[int]:
    return sorted({f.token_dim for f in formats().values() if f.token_patch})


def open_latent(
    path: str | Path,
    *,
    key: str | None = None,
    format: str | LatentFormat | None = None,
    space: str | None = None,
    layout: str | None = None,
    override: bool = False,
    grid: str | tuple[int, int] | None = None,
) -> LatentFile:
    """Read the latent in ``path`` and everything the file says about it.

    Args:
        path: a ComfyUI/latentbridge ``.latent``, safetensors, .pt/.pth, .npy/.npz or kohya cache; recognised
            from content, whatever its name.
        key: which array holds the latent, when several could (the error lists them).
        format: the latent format (a registry name), when the file does not record it.
        space: "raw" or "model": the space the stored tensor is in, when the file does not record it.
        layout: dimension letters of the stored tensor ("NCHW", "NHWC", "CHW", …); default from the record,
            else NCHW / NCTHW / CHW by the number of dimensions.
        override: let ``format``/``space``/``layout`` replace what latentbridge recorded in the file.
        grid: "ROWSxCOLUMNS" (or a pair) of a diffusers token sequence [N, L, D] — what FLUX.1/FLUX.2 pipelines
            return for ``output_type="latent"``: it is unpacked to the format's model-space latent (FLUX.1
            [N, 16, 2·rows, 2·columns], FLUX.2 [N, 128, rows, columns]). Without it such a tensor is refused
            with the grids that fit its length, not misread as a 1-channel image.

    Returns:
        A :class:`LatentFile`; its ``latent.tensor`` is exactly as stored (dtype and values), except for a legacy
        ComfyUI file read with a non-sd1 ``format`` and no ``space``, which is divided by 0.18215 into float32
        raw space exactly as ComfyUI's LoadLatent does.

    Raises:
        FileFormatError: damaged, truncated or impostor files, unsafe pickles, ambiguous or missing keys.
        IncompatibleError: ``format``/``space``/``layout`` contradict the file's latentbridge record.
    """
    path = Path(path)
    user_fmt = get_format(format) if format is not None else None
    _check_space(space)
    kind = sniff(path)
    if kind in ("onnx", "gguf"):
        raise _fail(path, f"this is an {kind.upper()} network, not a latent: inspect it with `latentbridge inspect`")
    contents = read_contents(path, kind)
    r = _interpret(path, contents, key)
    if key is None and not r.writer:
        _refuse_weights(path, contents)
    chosen = _choose_key(path, contents, key, r.preferred)
    if r.kohya:
        _kohya_extras(contents, chosen, r)
    if r.musubi:
        _musubi_extras(contents, chosen, r)
    entry = contents.entries[chosen]
    if 0 in entry.shape:
        raise _fail(
            path,
            f"array {chosen!r} has shape {list(entry.shape)}: a dimension of size 0 holds no values, so it is no "
            "latent (an empty batch, or a failed write): re-export it",
        )
    tensor = contents.load(chosen)
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        raise _fail(path, f"array {chosen!r} is {entry.dtype}, not floating point: not a latent")

    fmt, sp, lay = r.fmt, r.space, r.layout
    recorded = bool(r.recorded)
    if r.comfy and user_fmt is None and tensor.ndim in (4, 5):
        what = "a ComfyUI .latent file" if kind == "latent" else "a ComfyUI LATENT dict ('samples')"
        sp, note = _comfy_space(tensor, what)
        r.notes.append(note)

    def conflict(what: str, found: str, asked: str) -> None:
        if override:
            r.notes.append(f"override: the file records {what} {found}, read as {asked} as asked")
            return
        raise IncompatibleError(
            f"{path}: the file records {what} {found!r} but {asked!r} was asked for; the record wins unless you "
            "know it is wrong: pass override=True (--override) to read it your way"
        )

    if user_fmt is not None:
        if recorded and fmt is not None and fmt.name != user_fmt.name:
            conflict("format", fmt.name, user_fmt.name)
        elif r.legacy_comfy and user_fmt.name != "sd1" and space is None:
            tensor = tensor.float() * (1.0 / COMFY_LEGACY_SCALE)
            sp = "raw"
            r.notes.append(
                f"divided by 0.18215 into raw {user_fmt.name} space (float32), as ComfyUI's LoadLatent does for "
                "legacy files"
            )
        elif fmt is not None and fmt.name != user_fmt.name:
            r.notes.append(f"format {user_fmt.name} as asked (the file's convention implied {fmt.name})")
        fmt = user_fmt
        if r.comfy and space is None and sp != fmt.comfy_space:
            sp = fmt.comfy_space
            r.notes.append(
                f"ComfyUI holds {fmt.name} latents in {sp} space (its VAE applies the statistics in the VAE file)"
            )
        if r.kohya and space is None and sp == "unknown":
            sp = KOHYA_SPACE.get(fmt.name, "unknown")
            if sp == "unknown":
                r.notes.append(f"sd-scripts' cache space for {fmt.name} is not verified: pass space=raw|model")
    if r.legacy_comfy and sp == "model" and space is None:
        r.notes.append("read as sd1 in model space, values unchanged")
    if space is not None:
        if recorded and sp != "unknown" and sp != space:
            conflict("space", sp, space)
        elif sp not in ("unknown", space):
            r.notes.append(f"space {space} as asked (the file's convention implied {sp})")
        sp = space
    if layout is not None:
        if recorded and lay is not None and lay != layout:
            conflict("layout", lay, layout)
        lay = layout
    tokens = _token_candidates(tensor, user_fmt, asked=grid is not None) if lay is None else []
    if grid is not None:
        if lay is not None:
            raise _fail(path, f"--grid reads a token sequence, but the array's layout is {lay} (drop --grid)")
        tensor, fmt, sp = _read_tokens(path, tensor, tokens, grid, space, user_fmt)
        lay = fmt.layout
        r.notes.append(f"unpacked a diffusers {fmt.name} token sequence on a {grid} grid into model space")
    elif tokens:
        channel_counts = {c for f in formats().values() for c in (f.channels, f.model_channels)}
        # a CHW reading is absurd when its "image" is a strip many times taller than the token width (FLUX at 512 px:
        # 1024 × 64) — a batch of 4 or 16 sequences has a valid channel count but is no 4-channel latent
        strip = tensor.ndim == 3 and tensor.shape[1] >= 8 * tensor.shape[2]
        if tensor.ndim == 2 or tensor.shape[0] not in channel_counts or strip:
            raise _fail(
                path,
                (f"array {chosen!r}: " if chosen else "")
                + _token_hint(tensor, tokens)
                + ("; if it is a [C, H, W] latent instead, say so: --layout CHW" if tensor.ndim == 3 else ""),
            )
        r.notes.append(f"read as CHW; if this is a token sequence rather than a latent: {_token_hint(tensor, tokens)}")
    if lay is None:
        if tensor.ndim not in _DEFAULT_LAYOUT:
            raise _fail(path, f"array {chosen!r} has shape {list(tensor.shape)}: a latent has 3 to 5 dimensions")
        lay = _DEFAULT_LAYOUT[tensor.ndim]
    try:
        check_layout(lay, tensor.ndim)
    except ShapeError as exc:
        raise _fail(path, f"array {chosen!r} of shape {list(tensor.shape)} does not fit layout {lay!r}: {exc}") from exc

    latent = Latent(tensor, fmt, as_space(sp), lay, r.provenance)
    return LatentFile(
        path=path,
        container=kind,
        writer=r.writer,
        key=chosen,
        entries=tuple(contents.entries.values()),
        metadata=dict(contents.metadata),
        other=dict(contents.other),
        notes=tuple(r.notes),
        latent=latent,
        recorded=r.recorded,
    )


def read_latent(
    path: str | Path,
    *,
    key: str | None = None,
    format: str | LatentFormat | None = None,
    space: str | None = None,
    layout: str | None = None,
    override: bool = False,
    grid: str | tuple[int, int] | None = None,
) -> Latent:
    """Read the latent in ``path`` (any container, recognised from content). See :func:`open_latent`.

    Returns:
        The Latent exactly as stored: shape in its ``layout`` (NCHW/NCTHW/CHW by default), stored dtype,
        in the space the file records or the caller gives ("unknown" otherwise).
    """
    return open_latent(path, key=key, format=format, space=space, layout=layout, override=override, grid=grid).latent
