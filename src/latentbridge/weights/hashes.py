"""Content hashes: sha256 of weight files, and the official files we recognise by it.

Hashing reads the whole file (about 1 s per 500 MB here), so :func:`describe` hashes only files up to
:data:`AUTO_HASH_LIMIT` unless asked; each result is cached per (path, size, mtime) for the process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AUTO_HASH_LIMIT = 64 * 2**20  # bytes: every tiny decoder and zoo VAE is far below, full VAEs (160–340 MB) above


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
