"""Content hashes: sha256 of weight files, the short hashes people see, and the official files we recognise.

Hashing reads the whole file (about 1 s per 500 MB here), so :func:`describe` hashes only files up to
:data:`AUTO_HASH_LIMIT` unless asked; each result is cached per (path, size, mtime) for the process.

The hashes users meet in the wild, each checked against its public source (:func:`file_hashes` computes all
of them in one pass over the file):

* **sha256** of the whole file: Hugging Face LFS object ids, ComfyUI workflow ``models[].hash``
  (``hash_type`` "sha256"), Civitai "SHA256".
* **AutoV2** = the first 10 hex digits of that sha256: what AUTOMATIC1111/Forge write as "Model hash" and
  "VAE hash" (``modules/sd_models.py`` ``CheckpointInfo``: ``self.shorthash = self.sha256[0:10]``;
  ``modules/sd_vae.py`` ``get_loaded_vae_hash``: ``sha256[0:10]``), and Civitai's AutoV2.
* **AutoV1** = sha256 of the 64 KiB at offset 1 MiB, first 8 hex digits: A1111's old ``model_hash``
  (``file.seek(0x100000); m.update(file.read(0x10000)); m.hexdigest()[0:8]``, "old hash that only looks at a
  small part of the file and is prone to collisions"), written as "Model hash" before the sha256 short hash
  existed; sd-scripts calls it ``addnet_hash_legacy``. A file shorter than 1 MiB hashes the empty string.
* **tensor sha256** = sha256 of a safetensors file after its header (from byte 8 + header length to the end):
  the SAI ModelSpec ``modelspec.hash_sha256`` ("a hash of all tensor content (ie excluding the header
  section), with 0x prefix"), sd-scripts' ``addnet_hash_safetensors`` (written as ``sshs_model_hash``), and,
  by third-party accounts (SwarmUI, model managers; Civitai's own code was not found), Civitai's AutoV3.
  A1111 writes its first 12 hex digits for LoRAs ("Lora hashes").
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AUTO_HASH_LIMIT = 64 * 2**20  # bytes: every tiny decoder and zoo VAE is far below, full VAEs (160–340 MB) above
AUTOV1_OFFSET = 0x100000  # A1111 model_hash: 64 KiB read at offset 1 MiB
AUTOV1_LENGTH = 0x10000
AUTOV2_DIGITS = 10  # A1111 "Model hash"/"VAE hash" and Civitai AutoV2: sha256[:10]
AUTOV1_DIGITS = 8
_CHUNK = 1 << 22


@dataclass(frozen=True, slots=True)
class KnownFile:
    """An official weight file recognised by its sha256."""

    sha256: str
    format: str  # latent format it serves
    what: str  # the file, as its publisher names it
    source: str  # where the hash comes from
    autoencoder: str = ""  # files published as halves of one autoencoder share this name ("" = a file on its own)


_README = "../shared/weights/README.md (sha256 list)"
_HF_LFS = "Hugging Face LFS object id of the file (sha256), repeated in public download manifests"

KNOWN_FILES: tuple[KnownFile, ...] = (
    KnownFile(
        "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
        "flux2",
        "TAEF2 encoder taef2_encoder.pth (madebyollin/taesd @5cccb12)",
        _README,
        "taef2",
    ),
    KnownFile(
        "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
        "flux2",
        "TAEF2 decoder taef2_decoder.pth (madebyollin/taesd @5cccb12)",
        _README,
        "taef2",
    ),
    KnownFile(
        "ee58bb0ab61769c48862963a21b5d84d966738db47d34d7d3463d7e4fe1aef5b",
        "sd1",
        "VAElight encoder VAEencoder.onnx (Graphnull/VAElight @87b43a0)",
        _README,
        "vaelight-sd1",
    ),
    KnownFile(
        "117ba84645544561b37a79685a56c90f1fbae803da6004080406f46f8d1c01c2",
        "sd1",
        "VAElight decoder VAEpreview.onnx (Graphnull/VAElight @87b43a0)",
        _README,
        "vaelight-sd1",
    ),
    KnownFile(
        "4f88c9078bb2238cdd0d8864671dd33e3f42e091e41f08903f3c15e4a54a9b39",
        "sd1",
        "A1111 VAE-approx decoder for SD1.x/2.x (vaeapprox-sd1.pt)",
        _README,
    ),
    KnownFile(
        "6c8db511f910184436a613807ce06a729f4cf96bbf7977c7c6c40d5b3e4a8333",
        "sdxl",
        "A1111 VAE-approx decoder for SDXL (vaeapprox-sdxl.pt)",
        _README,
    ),
    KnownFile(
        "61ea00b79a7bc60ee14a75769771ff425704798748dd35e8b02949bbc68d3471",
        "sd3",
        "A1111 VAE-approx decoder for SD3 (vaeapprox-sd3.pt)",
        _README,
    ),
    KnownFile(
        "735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75",
        "sd1",
        "stabilityai/sd-vae-ft-mse-original vae-ft-mse-840000-ema-pruned.safetensors (334,641,190 bytes)",
        _HF_LFS,
    ),
    KnownFile(
        "63aeecb90ff7bc1c115395962d3e803571385b61938377bc7089b36e81e92e2e",
        "sdxl",
        "stabilityai/sdxl-vae sdxl_vae.safetensors",
        _HF_LFS,
    ),
    KnownFile(
        "235745af8d86bf4a4c1b5b4f529868b37019a10f7c0b2e79ad0abca3a22bc6e1",
        "sdxl",
        "madebyollin/sdxl-vae-fp16-fix sdxl_vae.safetensors",
        _HF_LFS,
    ),
    KnownFile(
        "afc8e28272cd15db3919bacdb6918ce9c1ed22e96cb12c4d5ed0fba823529e38",
        "flux1",
        "black-forest-labs/FLUX.1-schnell / FLUX.1-dev ae.safetensors (335,304,388 bytes; also shipped for "
        "Z-Image and Lumina 2)",
        _HF_LFS,
    ),
)

_BY_HASH: dict[str, KnownFile] = {k.sha256: k for k in KNOWN_FILES}
if len(_BY_HASH) != len(KNOWN_FILES):  # pragma: no cover - guards the table above
    raise ValueError("duplicate sha256 in KNOWN_FILES")


def known_file(sha256: str) -> KnownFile | None:
    """The official file with this sha256, or None."""
    return _BY_HASH.get(sha256.lower())


def same_autoencoder(a: str, b: str) -> bool:
    """Whether two VAE hashes name the same autoencoder.

    A VAE loaded from several files (encoder and decoder halves) carries their hashes joined by "+"; a latent
    encoded with the encoder file alone records only that hash. Two hash strings name the same autoencoder
    when they share a file, or when every file of both is a known half of one published autoencoder (the
    TAEF2 encoder and decoder files). Anything else — two different files of unknown origin — is not proven
    the same.
    """
    left = {h.lower() for h in a.split("+") if h}
    right = {h.lower() for h in b.split("+") if h}
    if not left or not right:
        return False
    if left & right:
        return True
    known = [_BY_HASH.get(h) for h in left | right]
    groups = {k.autoencoder for k in known if k is not None}
    return all(k is not None for k in known) and len(groups) == 1 and "" not in groups


@lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, cached per (path, size, mtime) for this process."""
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class FileHashes:
    """Every hash users meet for one weight file (see the module docstring for each definition and its source).

    Attributes:
        sha256: sha256 of the whole file, 64 hex digits.
        autov1: A1111's old "Model hash" (sha256 of 64 KiB at offset 1 MiB), 8 hex digits.
        tensor_sha256: sha256 of a safetensors file's tensor data (after the header), 64 hex digits; "" for
            other containers.
    """

    sha256: str
    autov1: str
    tensor_sha256: str = ""

    @property
    def autov2(self) -> str:
        """A1111 "Model hash"/"VAE hash" and Civitai AutoV2: the first 10 hex digits of the sha256."""
        return autov2(self.sha256)

    def to_dict(self) -> dict[str, str]:
        """JSON-ready dict, with the derived AutoV2."""
        return {
            "sha256": self.sha256,
            "autov2": self.autov2,
            "autov1": self.autov1,
            "tensor_sha256": self.tensor_sha256,
        }


def autov2(sha256: str) -> str:
    """The A1111/Civitai short hash of a file whose sha256 is ``sha256``: its first 10 hex digits, lower case."""
    return sha256[:AUTOV2_DIGITS].lower()


def _safetensors_data_offset(head: bytes, size: int) -> int | None:
    """Where a safetensors file's tensor data starts (8 + header length), or None when ``head`` is not one."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (n,) = struct.unpack("<Q", head[:8])
    return 8 + n if 8 + n <= size else None


@lru_cache(maxsize=256)
def _file_hashes_cached(path: str, size: int, mtime_ns: int) -> FileHashes:
    whole, window, tensors = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    data_at: int | None = None
    pos = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if pos == 0:
                data_at = _safetensors_data_offset(chunk[:9], size)
            whole.update(chunk)
            end = pos + len(chunk)
            lo, hi = max(pos, AUTOV1_OFFSET), min(end, AUTOV1_OFFSET + AUTOV1_LENGTH)
            if lo < hi:
                window.update(chunk[lo - pos : hi - pos])
            if data_at is not None and end > data_at:
                tensors.update(chunk[max(data_at - pos, 0) :])
            pos = end
    return FileHashes(
        sha256=whole.hexdigest(),
        autov1=window.hexdigest()[:AUTOV1_DIGITS],
        tensor_sha256=tensors.hexdigest() if data_at is not None else "",
    )


def file_hashes(path: str | Path) -> FileHashes:
    """sha256, AutoV1 and (safetensors) tensor sha256 of a file in one read; cached per (path, size, mtime).

    The whole file is read once (about 1 s per 500 MB here).
    """
    p = Path(path).resolve()
    st = p.stat()
    return _file_hashes_cached(str(p), st.st_size, st.st_mtime_ns)


def clear_cache() -> None:
    """Forget the per-process hash caches (for benchmarks that time hashing, or a file rewritten within one mtime
    tick of the filesystem)."""
    _sha256_cached.cache_clear()
    _file_hashes_cached.cache_clear()
