"""Images in and out of the codec: PNG/JPEG/WebP in, PNG (with provenance) out.

* In: :func:`load_image` / :func:`load_images` read PNG, JPEG and WebP files with Pillow (EXIF orientation
  applied, greyscale and 16-bit files converted, an alpha channel dropped with a warning) and return float32
  tensors [N, 3, H, W] in **[-1, 1]**, the range :func:`latentbridge.codec.encode` takes. A size the latent
  format cannot take is an error naming the nearest valid sizes, unless ``pad=True`` (reflect-pad to the next
  multiple, recorded in a :class:`Padding` so decode can crop it off again) or ``crop=True`` (centre crop to
  the previous multiple).
* Out: :func:`save_images` writes what :func:`latentbridge.codec.decode` returns (float [N, 3, H, W] in
  **[0, 1]**, or [N, 3, T, H, W] for video) as PNG files, one per batch item (video: an animated PNG per
  item), each with a ``latentbridge`` text chunk holding JSON provenance; every write is atomic (a temp file in
  the same folder, then ``os.replace``). :func:`read_png_metadata` reads that chunk back.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from latentbridge._atomic import atomic_write
from latentbridge._guard import MAX_IMAGE_PIXELS, MAX_JSON_BYTES, check_pixels, load_json, regular_file
from latentbridge.errors import FileFormatError, LatentBridgeWarning, ShapeError
from latentbridge.formats import nearest_sizes

__all__ = [
    "IMAGE_MAGIC",
    "PADDING_KEY",
    "PNG_KEY",
    "READ_FORMATS",
    "LoadedImages",
    "Padding",
    "fit_size",
    "image_kind",
    "load_image",
    "load_images",
    "output_paths",
    "read_image_text",
    "read_png_metadata",
    "save_images",
    "to_signed",
    "to_uint8",
    "to_unit",
]

READ_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
"""Pillow format names :func:`load_image` accepts."""

PNG_KEY = "latentbridge"
"""The PNG text-chunk key under which :func:`save_images` stores provenance JSON."""

PADDING_KEY = "padding"
"""The :class:`~latentbridge.latent.Provenance` ``extra`` key that records encode-time padding."""

# What Pillow raises on a damaged file once it has recognised the format, each seen in the fuzz suite:
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # truncated data, "broken data stream", a decoder error (UnidentifiedImageError is one too)
    SyntaxError,  # Pillow's plugins raise it for malformed chunks and markers ("broken PNG file")
    ValueError,  # impossible modes, sizes or tile extents; EXIF fields of the wrong type
    EOFError,  # a frame or chunk that ends early
    struct.error,  # a header field cut short
    IndexError,  # palette or EXIF tables shorter than they claim
    TypeError,  # EXIF values of unexpected types
    KeyError,  # EXIF tags and palettes referring to entries that do not exist
    zlib.error,  # damaged compressed PNG text chunks
    Image.DecompressionBombError,  # more than twice MAX_IMAGE_PIXELS; refused before this by check_pixels
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class Padding:
    """Pixels added on each side of an image before encoding (reflect padding); all zero means none."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def __post_init__(self) -> None:
        if min(self.top, self.bottom, self.left, self.right) < 0:
            raise ValueError(f"padding must be non-negative pixel counts, got {self.to_text()}")

    @property
    def is_zero(self) -> bool:
        """True when nothing was padded."""
        return not (self.top or self.bottom or self.left or self.right)

    def to_text(self) -> str:
        """``"top,bottom,left,right"``: the form stored in a latent's provenance (``extra["padding"]``)."""
        return f"{self.top},{self.bottom},{self.left},{self.right}"

    @staticmethod
    def parse(text: str) -> Padding:
        """Inverse of :meth:`to_text`. Raises FileFormatError for anything else."""
        parts = text.split(",")
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise FileFormatError(
                f"padding record {text!r} is not four non-negative integers 'top,bottom,left,right'; "
                "the latent's provenance is damaged: remove its 'padding' entry to decode without cropping"
            )
        top, bottom, left, right = (int(p) for p in parts)
        return Padding(top, bottom, left, right)

    def scaled(self, numerator: int, denominator: int) -> Padding:
        """The padding at another resolution (decoders whose output ratio differs from the encoder's)."""
        return Padding(*(v * numerator // denominator for v in (self.top, self.bottom, self.left, self.right)))

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """Remove this padding from the last two dimensions of ``images`` (any leading dimensions)."""
        if self.is_zero:
            return images
        h, w = images.shape[-2:]
        if self.top + self.bottom >= h or self.left + self.right >= w:
            raise ShapeError(
                f"cannot crop padding {self.to_text()} (top,bottom,left,right) from a {h}×{w} image: "
                "the padding is as large as the image; the latent's provenance does not match it"
            )
        return images[..., self.top : h - self.bottom, self.left : w - self.right]


@dataclass(frozen=True, slots=True, eq=False)
class LoadedImages:
    """Images ready for :func:`latentbridge.codec.encode`.

    Attributes:
        tensor: float32 [N, 3, H, W] in [-1, 1], H and W multiples of the requested ``multiple``.
        padding: what ``pad=True`` added (the same for every image), else all zero.
        source_size: (height, width) of the files before padding or cropping.
        paths: the files, in batch order.
    """

    tensor: torch.Tensor
    padding: Padding
    source_size: tuple[int, int]
    paths: tuple[Path, ...]


def _open(path: Path) -> Image.Image:
    """Open ``path`` with Pillow (header only), refusing what is not a regular image file."""
    try:
        regular_file(path, "image file")
    except FileNotFoundError as exc:
        if path.is_symlink():  # a dangling link: the message names where it points
            raise
        raise type(exc)(f"image file {str(path)!r} does not exist; check the path") from exc
    try:
        with warnings.catch_warnings():
            # above MAX_IMAGE_PIXELS Pillow only warns; check_pixels refuses such sizes with the numbers
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except UnidentifiedImageError as exc:
        raise FileFormatError(
            f"{path}: not an image Pillow can read; expected a PNG, JPEG or WebP file (convert it to PNG)"
        ) from exc
    except Image.DecompressionBombError as exc:  # Pillow's own refusal, at twice its limit: say it with ours
        found = re.search(r"\((\d+) pixels\)", str(exc))
        check_pixels(int(found.group(1)) if found else 2 * MAX_IMAGE_PIXELS + 1, None, str(path))
        raise  # pragma: no cover - check_pixels always raises for such a count
    except DECODE_ERRORS as exc:
        raise FileFormatError(f"{path}: a damaged image file ({type(exc).__name__}: {exc}); re-export it") from exc


def _open_rgb(path: Path) -> np.ndarray:
    """Read one file as float32 [H, W, 3] in [0, 1]; the pixel count is checked before anything is decoded."""
    image = _open(path)
    with image:
        if image.format not in READ_FORMATS:
            raise FileFormatError(
                f"{path}: a {image.format} image; latentbridge reads {', '.join(READ_FORMATS)} (convert it to PNG)"
            )
        check_pixels(*image.size, str(path))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = ImageOps.exif_transpose(image)
                image.load()
                check_pixels(*image.size, str(path))  # an EXIF rotation swaps the sides, never adds pixels
                return _to_rgb(image, path)
        except DECODE_ERRORS as exc:  # truncated or corrupt data
            raise FileFormatError(
                f"{path}: the {image.format or 'image'} data is damaged ({type(exc).__name__}: {exc}); re-export the "
                "image"
            ) from exc


def _to_rgb(image: Image.Image, path: Path) -> np.ndarray:
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        warnings.warn(
            f"{path}: has an alpha channel ({image.mode}); dropped it and kept the colour values "
            "(VAEs take RGB). Composite it onto a background first if transparent areas matter.",
            LatentBridgeWarning,
            stacklevel=4,
        )
    if image.mode.startswith("I;16"):  # 16-bit greyscale PNG: keep the precision
        grey = np.asarray(image, dtype=np.float32) / 65535.0
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("I", "F"):
        raise FileFormatError(
            f"{path}: a 32-bit {'integer' if image.mode == 'I' else 'float'} image (mode {image.mode}); "
            "latentbridge reads 8- and 16-bit images: save it as an 8- or 16-bit PNG"
        )
    if image.mode == "P":
        image = image.convert("RGBA")
    rgb = image.convert("RGB")
    return np.asarray(rgb, dtype=np.float32) / 255.0


def fit_size(
    images: torch.Tensor, multiple: int, *, pad: bool = False, crop: bool = False, what: str = "image"
) -> tuple[torch.Tensor, Padding]:
    """Make H and W of ``images`` multiples of ``multiple``: unchanged, reflect-padded, or centre-cropped.

    Args:
        images: [N, C, H, W], any value range.
        multiple: the pixel multiple the latent format needs (``LatentFormat.size_multiple``).
        pad: reflect-pad to the next multiple (split evenly, the extra pixel at the bottom/right).
        crop: centre-crop to the previous multiple.
        what: how to name the images in an error ("image cat.png").

    Returns:
        (images, padding): the fitted tensor and what was padded (all zero for crop / no change).

    Raises:
        ShapeError: a size that is not a multiple and neither ``pad`` nor ``crop`` is set (the message names
            the nearest valid sizes), or both are set, or the image is too small for the fix asked for.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be a positive number of pixels, got {multiple}")
    if pad and crop:
        raise ShapeError("pad and crop were both requested; choose one (--pad keeps every pixel, --crop cuts edges)")
    h, w = images.shape[-2:]
    if h % multiple == 0 and w % multiple == 0:
        return images, Padding()
    (h_lo, h_hi), (w_lo, w_hi) = nearest_sizes(multiple, h), nearest_sizes(multiple, w)
    h_lo, w_lo = (h if h % multiple == 0 else h_lo), (w if w % multiple == 0 else w_lo)
    h_hi, w_hi = (h if h % multiple == 0 else h_hi), (w if w % multiple == 0 else w_hi)
    if pad:
        dh, dw = h_hi - h, w_hi - w
        padding = Padding(dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
        if max(padding.top, padding.bottom) >= h or max(padding.left, padding.right) >= w:
            raise ShapeError(
                f"{what} is {h}×{w}: too small to reflect-pad to {h_hi}×{w_hi}; resize it to at least {multiple} px"
            )
        out = F.pad(images, (padding.left, padding.right, padding.top, padding.bottom), mode="reflect")
        return out, padding
    if crop:
        if h < multiple or w < multiple:
            raise ShapeError(f"{what} is {h}×{w}: smaller than one {multiple}-px cell, nothing is left to crop to")
        top, left = (h - h_lo) // 2, (w - w_lo) // 2
        return images[..., top : top + h_lo, left : left + w_lo], Padding()
    raise ShapeError(
        f"{what} is {h}×{w} but this latent format needs sizes that are multiples of {multiple}; "
        f"the nearest valid sizes are {h_lo}×{w_lo} and {h_hi}×{w_hi}: resize it, or pass --pad "
        f"(reflect-pad to {h_hi}×{w_hi}, cropped off again at decode) or --crop (centre-crop to {h_lo}×{w_lo})"
    )


def load_images(
    paths: Sequence[str | os.PathLike[str]], *, multiple: int = 1, pad: bool = False, crop: bool = False
) -> LoadedImages:
    """Read image files into one batch for :func:`latentbridge.codec.encode`.

    Args:
        paths: PNG, JPEG or WebP files, all of one size (a batch is one tensor).
        multiple: H and W must be multiples of this (``LatentFormat.size_multiple``; 1 = any size).
        pad: reflect-pad sizes that are not multiples (recorded in the returned ``padding``).
        crop: centre-crop sizes that are not multiples.

    Returns:
        :class:`LoadedImages` with ``tensor`` float32 [N, 3, H, W] in [-1, 1].

    Raises:
        FileNotFoundError, FileFormatError: a missing, unreadable or unsupported file.
        ShapeError: images of different sizes, or a size the format cannot take (see :func:`fit_size`).
    """
    if not paths:
        raise ValueError("no image files given: pass at least one PNG, JPEG or WebP file")
    files = tuple(Path(p) for p in paths)
    arrays = [_open_rgb(p) for p in files]
    sizes = [a.shape[:2] for a in arrays]
    if len(set(sizes)) > 1:
        listed = ", ".join(f"{p.name} {h}×{w}" for p, (h, w) in zip(files, sizes, strict=True))
        raise ShapeError(
            f"images of different sizes cannot share a batch ({listed}); "
            "encode them in separate calls or resize them to one size first"
        )
    tensor = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0
    what = f"image {files[0].name}" if len(files) == 1 else f"images {files[0].name}…"
    tensor, padding = fit_size(tensor, multiple, pad=pad, crop=crop, what=what)
    return LoadedImages(tensor=tensor.contiguous(), padding=padding, source_size=sizes[0], paths=files)


def load_image(
    path: str | os.PathLike[str], *, multiple: int = 1, pad: bool = False, crop: bool = False
) -> LoadedImages:
    """Read one image file: :func:`load_images` with a single path (``tensor`` is [1, 3, H, W] in [-1, 1])."""
    return load_images([path], multiple=multiple, pad=pad, crop=crop)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (what :func:`latentbridge.decode` returns) -> [-1, 1] (what encode and diffusers take)."""
    return images * 2.0 - 1.0


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (diffusers' decode output, :func:`load_images`) -> [0, 1], clamped."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1] (any leading dims, channels at dim -3) -> uint8 [..., H, W, 3], rounded."""
    x = images.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu()
    return x.movedim(-3, -1).numpy()


def output_paths(path: str | os.PathLike[str], count: int) -> list[Path]:
    """Where :func:`save_images` writes ``count`` items: ``out.png``, or ``out-0.png``, ``out-1.png``, …"""
    path = Path(path)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(count)]


def save_images(
    images: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    fps: float = 16.0,
) -> list[Path]:
    """Write decoded images as PNG files with provenance, atomically.

    Args:
        images: float [N, 3, H, W] in [0, 1] (what :func:`latentbridge.codec.decode` returns), or video
            [N, 3, T, H, W] in [0, 1]: each item becomes an animated PNG (APNG) of its T frames.
        path: the output file; it must end in ``.png``. With N > 1 the items go to ``<stem>-<i>.png``.
        metadata: JSON-serialisable provenance, stored in the text chunk ``latentbridge`` of every file
            (with ``"batch_index"`` added when N > 1).
        fps: frame rate of animated PNGs.

    Returns:
        The files written, in batch order.

    Raises:
        ShapeError: not [N, 3, H, W] / [N, 3, T, H, W]. ValueError: a path not ending in ``.png``.
        FileNotFoundError: the output folder does not exist.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"output {str(path)!r} is not a .png file; images are written as PNG: name it e.g. out.png")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist; create it first")
    if images.ndim not in (4, 5) or images.shape[1] != 3:
        raise ShapeError(
            f"images to save are [N, 3, H, W] or [N, 3, T, H, W] in [0, 1], got shape {tuple(images.shape)}"
        )
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    pixels = to_uint8(images.movedim(1, -3) if images.ndim == 5 else images)  # [N, (T,) H, W, 3]
    written = []
    for i, out in enumerate(output_paths(path, images.shape[0])):
        meta = dict(metadata or {})
        if images.shape[0] > 1:
            meta["batch_index"] = i
        info = PngInfo()
        info.add_text(PNG_KEY, json.dumps(meta, sort_keys=True))
        if images.ndim == 4:
            frame = Image.fromarray(pixels[i])

            def save_png(f: Any, frame: Image.Image = frame, info: PngInfo = info) -> None:
                frame.save(f, format="PNG", pnginfo=info)

            atomic_write(out, save_png)
        else:
            frames = [Image.fromarray(a) for a in pixels[i]]

            def save_apng(f: Any, frames: list[Image.Image] = frames, info: PngInfo = info) -> None:
                frames[0].save(
                    f,
                    format="PNG",
                    pnginfo=info,
                    save_all=True,
                    append_images=frames[1:],
                    duration=1000.0 / fps,
                    loop=0,
                )

            atomic_write(out, save_apng)
        written.append(out)
    return written


IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"RIFF", "WEBP"),
)
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286
_COMFY_EXIF_TAGS = (0x0110, 0x010F, 0x010E, 0x010D, 0x010C)  # ComfyUI WebP: Model "prompt:…", Make "workflow:…", …


def image_kind(path: str | os.PathLike[str]) -> str:
    """ "PNG", "JPEG" or "WEBP" from a file's first bytes, or "" for anything else (never from its name)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return ""  # a FIFO would block the open below; the readers refuse such files with their own message
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:  # missing, a folder, unreadable, a symlink loop: not an image, and the readers say why
        return ""
    for magic, kind in IMAGE_MAGIC:
        if head.startswith(magic) and (kind != "WEBP" or head[8:12] == b"WEBP"):
            return kind
    return ""


def _user_comment(raw: Any) -> str:
    """An EXIF UserComment's text: an 8-byte charset code ("UNICODE\\0" = UTF-16, "ASCII\\0\\0\\0"), then the text.

    A1111 writes it with piexif's ``UserComment.dump(..., encoding="unicode")`` (UTF-16 big-endian); other tools
    write little-endian, told apart here by where the zero bytes of ASCII characters fall.
    """
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes):
        return ""
    code, body = raw[:8], raw[8:]
    if code == b"UNICODE\x00":
        big = body[0::2].count(0) >= body[1::2].count(0)
        return body.decode("utf-16-be" if big else "utf-16-le", errors="replace").rstrip("\x00")
    if code in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        return body.decode("utf-8", errors="replace").rstrip("\x00")
    return raw.decode("utf-8", errors="replace").rstrip("\x00")


def read_image_text(path: str | os.PathLike[str]) -> dict[str, str]:
    """Every text an image file carries that generators write provenance into, by key.

    * PNG: every tEXt/zTXt/iTXt chunk (ComfyUI's ``prompt`` and ``workflow``, A1111's ``parameters``,
      latentbridge's ``latentbridge``).
    * JPEG / WebP: the EXIF UserComment as ``parameters`` (A1111 and Forge write their infotext there), ComfyUI's
      WebP EXIF entries ``"prompt:{json}"`` (0x0110 Model) and ``"workflow:{json}"`` (0x010F Make, then down), and a
      JPEG comment as ``comment``.

    Raises:
        FileFormatError: not a PNG, JPEG or WebP file, or text chunks too large for Pillow to read.
    """
    path = Path(path)
    if image_kind(path) == "PNG":
        return png_texts(path)  # chunk by chunk: Pillow's image.text decodes every pixel first
    try:
        with _open(path) as image:
            if image.format not in READ_FORMATS:
                raise FileFormatError(f"{path}: a {image.format} file; provenance is read from PNG, JPEG or WebP files")
            out: dict[str, str] = {}
            exif = image.getexif()
            comment = _user_comment(exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT))
            if comment:
                out["parameters"] = comment
            for tag in _COMFY_EXIF_TAGS:
                value = exif.get(tag)
                if isinstance(value, str) and ":" in value:
                    key, _, text = value.partition(":")
                    if key.isidentifier():
                        out.setdefault(key, text)
            if isinstance(image.info.get("comment"), bytes | str):
                c = image.info["comment"]
                out["comment"] = c.decode("utf-8", errors="replace") if isinstance(c, bytes) else c
            return out
    except DECODE_ERRORS as exc:  # a damaged EXIF block or comment
        raise FileFormatError(
            f"{path}: its metadata cannot be read ({type(exc).__name__}: {exc}); the file is damaged"
        ) from exc


def read_png_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance JSON :func:`save_images` stored in a PNG (``{}`` when the file has none).

    The PNG's chunks are walked without decoding a pixel (a damaged or huge image does not matter here); the
    ``latentbridge`` text chunk (tEXt, zTXt or iTXt) is CRC-checked and its JSON bounded in size and depth.

    Raises:
        FileFormatError: not a PNG, a damaged chunk structure, or a ``latentbridge`` chunk that is not a JSON object.
    """
    path = Path(path)
    text = png_texts(path).get(PNG_KEY)
    if text is None:
        return {}
    fix = "the file was edited: re-export it from latentbridge, or remove the chunk"
    data = load_json(text, str(path), f"damaged '{PNG_KEY}' text chunk", fix)
    if not isinstance(data, dict):
        raise FileFormatError(f"{path}: its '{PNG_KEY}' text chunk holds a {type(data).__name__}, expected an object")
    return data


def png_texts(path: Path) -> dict[str, str]:
    """Every text chunk (tEXt, zTXt, iTXt) of a PNG by keyword (the first of a keyword wins); no pixel is decoded.

    Each chunk's length is checked against the file, each text chunk's CRC is checked, compressed text is inflated
    to at most :data:`~latentbridge._guard.MAX_JSON_BYTES`.

    Raises:
        FileFormatError: not a PNG file, a chunk whose length runs past the end of the file, a text chunk with a bad
            CRC or damaged compression, or a file that ends before its IEND chunk.
    """
    size = regular_file(path, "PNG file").st_size
    found: dict[str, str] = {}
    with path.open("rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            raise _not_png(path)
        at = 8
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise FileFormatError(f"{path}: a truncated PNG file (it ends at byte {at} before its IEND chunk)")
            length, kind = struct.unpack(">I4s", head)
            if length > size - at - 12:
                raise FileFormatError(
                    f"{path}: a damaged PNG file: chunk {kind!r} at byte {at} claims {length} bytes, more than the "
                    "file holds; re-export it"
                )
            if kind in (b"tEXt", b"zTXt", b"iTXt") and length <= MAX_JSON_BYTES:
                body = f.read(length)
                (crc,) = struct.unpack(">I", f.read(4))
                if zlib.crc32(kind + body) != crc:
                    raise FileFormatError(
                        f"{path}: the {kind.decode()} chunk at byte {at} fails its CRC: the file is damaged"
                    )
                name, value = _text_chunk(path, kind, body)
                found.setdefault(name, value)
            else:
                f.seek(length + 4, os.SEEK_CUR)
            at += 12 + length
            if kind == b"IEND":
                found.pop("", None)
                return found


def _text_chunk(path: Path, kind: bytes, body: bytes) -> tuple[str, str]:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk body (PNG specification, section 11.3.4)."""
    name, sep, rest = body.partition(b"\x00")
    if not sep:
        return "", ""  # not a text chunk we can name: not ours
    try:
        if kind == b"tEXt":
            return name.decode("latin-1"), rest.decode("latin-1")
        if kind == b"zTXt":
            return name.decode("latin-1"), _inflate(rest[1:]).decode("latin-1")
        flag, _method, rest = rest[:1], rest[1:2], rest[2:]
        _lang, _, rest = rest.partition(b"\x00")
        _translated, _, text = rest.partition(b"\x00")
        return name.decode("latin-1"), (_inflate(text) if flag == b"\x01" else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:  # damaged compression, text that is not UTF-8
        raise FileFormatError(f"{path}: a damaged {kind.decode()} text chunk ({exc}); re-export the file") from exc


def _inflate(data: bytes) -> bytes:
    """zlib data inflated to at most MAX_JSON_BYTES (a bomb in a text chunk stops there)."""
    out = zlib.decompressobj().decompress(data, MAX_JSON_BYTES)
    if len(out) >= MAX_JSON_BYTES:
        raise ValueError(f"it inflates to more than {MAX_JSON_BYTES} bytes")
    return out


def _not_png(path: Path) -> FileFormatError:
    """The error for a file that is not a PNG: its format when Pillow recognises it."""
    try:
        with _open(path) as image:
            return FileFormatError(f"{path}: a {image.format} file; provenance is read from PNG files only")
    except FileFormatError:
        return FileFormatError(f"{path}: not an image Pillow can read; expected a PNG written by latentbridge")
