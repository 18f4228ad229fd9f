"""The Latent value: a tensor with its format, space, layout and provenance — a small immutable record."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch

from latentbridge.errors import (
    FileFormatError,
    FormatRequiredError,
    InputTypeError,
    ShapeError,
    SpaceError,
    UnknownFormatError,
)
from latentbridge.formats import LatentFormat, NormStats, Space, convert, get_format

__all__ = [
    "KNOWN_LAYOUTS",
    "LAYOUT_LETTERS",
    "LAYOUT_NAMES",
    "SPACE_VALUES",
    "Latent",
    "LatentSpace",
    "Provenance",
    "alternative_layouts",
    "as_format",
    "as_space",
    "check_layout",
    "to_layout",
]

LatentSpace = Literal["raw", "model", "unknown"]
"""A latent's space: "raw" (VAE output), "model" (what the diffusion model sees) or "unknown"."""
SPACE_VALUES: tuple[str, ...] = ("raw", "model", "unknown")


def as_space(space: str, *, unknown: bool = True) -> LatentSpace:
    """``space`` checked: "raw", "model" (or "unknown" when ``unknown``), else a :class:`SpaceError`."""
    allowed = SPACE_VALUES if unknown else SPACE_VALUES[:2]
    if space not in allowed:
        raise SpaceError(f"unknown space {space!r}: expected one of {', '.join(repr(s) for s in allowed)}")
    return cast(LatentSpace, space)


def as_format(fmt: LatentFormat | str | None) -> LatentFormat | None:
    """A format given by name or value (None stays None); an unknown name is an UnknownFormatError."""
    if fmt is None or isinstance(fmt, LatentFormat):
        return fmt
    if isinstance(fmt, str):
        return get_format(fmt)
    raise InputTypeError(
        f"a latent format is a registry name such as 'sd1' or a LatentFormat, got {type(fmt).__name__}; "
        "see `latentbridge formats`"
    )


LAYOUT_LETTERS = frozenset("NCTHW")
KNOWN_LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC", "CHW", "HWC", "NCTHW", "NTCHW", "CTHW", "TCHW", "NTHWC")


def check_layout(layout: str, ndim: int | None = None) -> str:
    """Validate a layout string (letters from N, C, T, H, W, each once, C/H/W required)."""
    letters = set(layout)
    if not layout or letters - LAYOUT_LETTERS or len(letters) != len(layout) or not {"C", "H", "W"} <= letters:
        raise ShapeError(
            f"unknown layout {layout!r}: expected letters from N, C, T, H, W, each at most once, with C, H and W "
            f"(e.g. {', '.join(KNOWN_LAYOUTS)})"
        )
    if ndim is not None and ndim != len(layout):
        raise ShapeError(f"layout {layout!r} has {len(layout)} dimensions but the tensor has {ndim}")
    return layout


def to_layout(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Permute ``x`` from layout ``src`` to ``dst``; an N missing from ``src`` becomes a batch of one.

    Letters present in ``src`` but not in ``dst`` must have size 1 (they are squeezed), e.g. NCTHW → NCHW
    for a single-frame video latent.
    """
    check_layout(src, x.ndim)
    check_layout(dst)
    for letter in src:
        if letter not in dst:
            size = x.shape[src.index(letter)]
            if size != 1:
                raise ShapeError(
                    f"cannot convert layout {src} -> {dst}: dimension {letter} has size {size}, not 1; "
                    f"choose a layout that keeps {letter}"
                )
    keep = [letter for letter in src if letter in dst]
    x = x.reshape([x.shape[src.index(letter)] for letter in keep])
    cur = "".join(keep)
    for letter in dst:
        if letter not in cur:
            x = x.unsqueeze(-1)
            cur += letter
    return x.permute([cur.index(letter) for letter in dst])


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a latent came from. Empty strings / None mean "not recorded"."""

    vae_name: str = ""  # "zoo-a", a file name, or a hub id
    vae_sha256: str = ""  # sha256 of the VAE weight file that produced or should decode it
    source_image: str = ""  # file name or built-in photo name
    seed: int | None = None
    prompt: str = ""
    tool: str = ""  # producing tool, "latentbridge 0.1.0 encode", "ComfyUI"
    history: tuple[str, ...] = ()  # each step applied, in order: "encode zoo-a", "transfer zoo-a->zoo-b"
    extra: tuple[tuple[str, str], ...] = ()  # keys we do not know (kept, never dropped)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; empty fields are omitted."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value in ("", None, ()):
                continue
            out[f.name] = dict(value) if f.name == "extra" else list(value) if f.name == "history" else value
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Provenance:
        """Inverse of :meth:`to_dict`; unknown keys are kept in ``extra`` as strings.

        Raises:
            FileFormatError: a record whose fields have the wrong JSON types (a ``seed`` that is not an integer, a
                ``history`` that is not a list of strings, an ``extra`` that is not an object…); the message names
                the field. Readers prefix it with the file.
        """
        if not isinstance(data, dict):
            raise FileFormatError(f"provenance record: expected a JSON object, found {_json_type(data)}")
        known = {f.name for f in dataclasses.fields(Provenance)}
        extra_in = data.get("extra", {})
        if not isinstance(extra_in, dict):
            raise FileFormatError(f"provenance record: 'extra' is {_json_type(extra_in)}; expected an object")
        extra = {str(k): _plain(v) for k, v in extra_in.items()}
        extra.update({k: _plain(v) for k, v in data.items() if k not in known})
        seed = data.get("seed")
        if seed is not None and (type(seed) is not int):
            raise FileFormatError(f"provenance record: 'seed' is {_json_type(seed)}; expected an integer or null")
        history = data.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
            raise FileFormatError(
                f"provenance record: 'history' is {_json_type(history)}; expected a list of strings (one per step)"
            )
        texts = {}
        for name in ("vae_name", "vae_sha256", "source_image", "prompt", "tool"):
            value = data.get(name, "")
            if not isinstance(value, str):
                raise FileFormatError(f"provenance record: {name!r} is {_json_type(value)}; expected a string")
            texts[name] = value
        return Provenance(
            **texts,
            seed=seed,
            history=tuple(history),
            extra=tuple(sorted(extra.items())),
        )

    def then(self, step: str) -> Provenance:
        """A copy with ``step`` appended to the history."""
        return dataclasses.replace(self, history=(*self.history, step))


def _json_type(value: Any) -> str:
    """How a JSON value is named in a message: "the string 'x'", "the number 3", "a list", "null"."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, int | float):
        return f"the number {str(value)[:40]}"
    names: dict[type, str] = {list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _plain(value: Any) -> str:
    """An ``extra`` value as text: a string as it is, anything else as compact JSON (a newer writer's field)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True, eq=False)
class Latent:
    """A latent tensor and what is known about it.

    Attributes:
        tensor: the values, in ``layout`` (canonical: NCHW for images, NCTHW for video).
        format: the latent format, or None when unknown.
        space: "raw" (VAE output), "model" (what the diffusion model sees) or "unknown".
        layout: dimension letters, e.g. "NCHW", "NCTHW", "NTCHW", "NHWC".
        provenance: where it came from.
        stats: per-channel statistics from the VAE file, for formats with ``norm_source == "vae"``.
    """

    tensor: torch.Tensor
    format: LatentFormat | None = None
    space: LatentSpace = "unknown"
    layout: str = "NCHW"
    provenance: Provenance = field(default_factory=Provenance)
    stats: NormStats | None = None

    def __init__(
        self,
        tensor: torch.Tensor,
        format: LatentFormat | str | None = None,
        space: LatentSpace = "unknown",
        layout: str = "NCHW",
        provenance: Provenance | None = None,
        stats: NormStats | None = None,
    ) -> None:
        """Validate every field where it enters: a format may be given by name ("sd1"), a space must be one of
        "raw" / "model" / "unknown", the layout must fit the tensor's rank."""
        if not isinstance(tensor, torch.Tensor):
            raise InputTypeError(
                f"Latent.tensor must be a torch.Tensor, got {type(tensor).__name__}; convert it with torch.as_tensor"
            )
        try:
            fmt = as_format(format)
        except UnknownFormatError as exc:
            raise UnknownFormatError(f"Latent(format={format!r}): {exc}") from exc
        if not isinstance(space, str):
            raise InputTypeError(f"Latent.space must be 'raw', 'model' or 'unknown', got {type(space).__name__}")
        if provenance is not None and not isinstance(provenance, Provenance):
            raise InputTypeError(f"Latent.provenance must be a Provenance, got {type(provenance).__name__}")
        if stats is not None and not isinstance(stats, NormStats):
            raise InputTypeError(f"Latent.stats must be NormStats or None, got {type(stats).__name__}")
        if not isinstance(layout, str):
            raise InputTypeError(f"Latent.layout must be letters such as 'NCHW', got {type(layout).__name__}")
        check_layout(layout, tensor.ndim)
        setattr_ = object.__setattr__
        setattr_(self, "tensor", tensor)
        setattr_(self, "format", fmt)
        setattr_(self, "space", as_space(space))
        setattr_(self, "layout", layout)
        setattr_(self, "provenance", provenance if provenance is not None else Provenance())
        setattr_(self, "stats", stats)

    # --- views ------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape, in ``layout`` order."""
        return tuple(self.tensor.shape)

    @property
    def format_name(self) -> str:
        """The format's registry name, or "" when unknown."""
        return self.format.name if self.format is not None else ""

    def dim(self, letter: str) -> int:
        """Size of the dimension named ``letter`` ("C", "H", …); 1 when the layout lacks it."""
        return self.tensor.shape[self.layout.index(letter)] if letter in self.layout else 1

    def replace(self, **changes: Any) -> Latent:
        """A copy with some fields changed (``format`` may be given by name), validated like a new Latent."""
        return dataclasses.replace(self, **changes)

    def canonical(self) -> Latent:
        """The same latent in its format's canonical layout (NCHW / NCTHW); needs a known format."""
        fmt = self.require_format("change its layout")
        return self.to_layout(fmt.layout)

    def frames_as_batch(self) -> Latent:
        """A video latent's frames as a batch of image latents, for an image VAE that decodes them one by one
        (AnimateDiff, SVD): [N, C, T, h, w] (any layout with T) -> [N·T, C, h, w] NCHW, clip by clip (item n·T + t
        is frame t of clip n), same space and format. An image latent is returned unchanged."""
        if "T" not in self.layout:
            return self
        x = self.to_layout("NTCHW").tensor
        n, t = x.shape[:2]
        return dataclasses.replace(self, tensor=x.reshape(n * t, *x.shape[2:]), layout="NCHW")

    def to_layout(self, layout: str) -> Latent:
        """The same latent permuted to ``layout``."""
        if layout == self.layout:
            return self
        return dataclasses.replace(self, tensor=to_layout(self.tensor, self.layout, layout), layout=layout)

    def require_format(self, why: str) -> LatentFormat:
        """The format, or a clear error when it is unknown."""
        if self.format is None:
            raise FormatRequiredError(
                f"this latent's format is unknown, so latentbridge cannot {why}; "
                "pass --format NAME (see `latentbridge formats`) or run `latentbridge identify` on it"
            )
        return self.format

    def to_space(self, space: Space, stats: NormStats | None = None) -> Latent:
        """The same latent converted to ``space`` ("raw" or "model"), in canonical layout."""
        space = cast(Space, as_space(space, unknown=False))
        fmt = self.require_format(f"convert it to {space} space")
        if self.space == "unknown":
            raise SpaceError(
                "this latent's space is unknown (raw VAE output or model space?); pass --space raw|model, "
                "or run `latentbridge check` to have it estimated"
            )
        lat = self.canonical()
        if space == lat.space:
            return lat
        stats = stats if stats is not None else self.stats
        return dataclasses.replace(lat, tensor=convert(lat.tensor, fmt, lat.space, space, stats), space=space)


# Layouts other than the canonical ones that real files use: (finding code, description, the permute that fixes it)
LAYOUT_NAMES: dict[str, tuple[str, str, str]] = {
    "NHWC": ("channels-last", "channels-last [N, H, W, C]", "x.permute(0, 3, 1, 2)"),
    "NTCHW": (
        "frames-first",
        "frames-first [N, T, C, H, W] (TAEHV; diffusers CogVideoX, SVD)",
        "x.permute(0, 2, 1, 3, 4)",
    ),
    "NTHWC": ("channels-last", "channels-last video [N, T, H, W, C]", "x.permute(0, 4, 1, 2, 3)"),
    "HWC": ("channels-last", "channels-last without batch [H, W, C]", "x.permute(2, 0, 1)[None]"),
    "TCHW": ("frames-first", "frames-first without batch [T, C, H, W]", "x.permute(1, 0, 2, 3)[None]"),
}


def alternative_layouts(shape: tuple[int, ...], channels: set[int], vae_dims: int) -> list[str]:
    """Layouts (other than canonical) under which the channel dimension has an accepted size.

    ``shape`` is the stored tensor's, ``channels`` the accepted channel counts, ``vae_dims`` 2 (image) or 3
    (video: a 4-D tensor may then be a clip without batch, TCHW).

    A channels-last reading also needs the channel count to be smaller than the spatial sizes (a latent of
    4 channels and 64×64 cells: [1, 64, 64, 4]); otherwise [1, 128, 4, 4] would read as channels-last too.
    """
    out = []
    n = len(shape)
    if n == 4:
        if shape[3] in channels and shape[3] < min(shape[1], shape[2]):
            out.append("NHWC")
        if vae_dims == 3 and shape[1] in channels:
            out.append("TCHW")
    elif n == 5:
        if shape[2] in channels:
            out.append("NTCHW")
        if shape[4] in channels and shape[4] < min(shape[2], shape[3]):
            out.append("NTHWC")
    elif n == 3 and shape[2] in channels and shape[2] < min(shape[0], shape[1]):
        out.append("HWC")
    return out
