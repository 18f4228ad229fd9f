"""latentbridge: make diffusion-model latents safe to make, move and decode.

The public face. Everything a program needs is here; anything else is private or reached through a public
module"s own ``__all__`` (``latentbridge.files``, ``latentbridge.weights``, ``latentbridge.checks`` …)::

    import latentbridge as lb

    vae = lb.load_vae("zoo-a")                         # a file, a diffusers folder, a zoo name, or lb.as_vae(pipe.vae)
    latent = lb.Latent(tensor, format="sd1", space="raw")
    report = lb.check(latent, vae)                     # "ok" / "warn" / "error", with findings and fixes
    images = lb.decode(vae, latent, run=lb.Run(dtype="bf16"))   # [N, 3, H, W] in [0, 1]

Image ranges: :func:`decode` returns images in [0, 1] and :func:`save_images` writes [0, 1]; :func:`encode`,
:func:`load_images` and a VAE"s own functions use [-1, 1], as diffusers does (``pipe.vae.decode(z).sample`` is
[-1, 1]). :func:`to_unit` ([-1, 1] -> [0, 1]) and :func:`to_signed` ([0, 1] -> [-1, 1]) convert.

Importing this package is cheap and has no side effects: names load on first use (PEP 562), so
``import latentbridge`` does not import torch or diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "FINDINGS",
    "VAE",
    "CancelToken",
    "Cancelled",
    "DtypeError",
    "FileFormatError",
    "Finding",
    "FindingKind",
    "FormatRequiredError",
    "Identification",
    "IncompatibleError",
    "InputTypeError",
    "Latent",
    "LatentBridgeError",
    "LatentBridgeWarning",
    "LatentFile",
    "LatentFormat",
    "LatentSpace",
    "LibraryError",
    "MissingPartError",
    "NonFiniteError",
    "NormStats",
    "Progress",
    "Provenance",
    "Refine",
    "Report",
    "Run",
    "ShapeError",
    "Space",
    "SpaceError",
    "Tiling",
    "UnknownFormatError",
    "VaeIdentity",
    "WeightsError",
    "WeightsInfo",
    "__version__",
    "as_vae",
    "build_report",
    "check",
    "compare",
    "decode",
    "describe_weights",
    "encode",
    "estimate_memory",
    "fidelity_report",
    "find_formats",
    "fit_bridge",
    "get_format",
    "identify",
    "latent_stats",
    "list_formats",
    "load_bridge",
    "load_images",
    "load_vae",
    "model_to_raw",
    "open_latent",
    "preview",
    "raw_to_model",
    "read_latent",
    "save_images",
    "to_signed",
    "to_unit",
    "transfer",
    "transfer_dir",
    "write_latent",
    "write_report",
]

# where each name is defined, by module; loaded on first attribute access
_MODULES: dict[str, tuple[str, ...]] = {
    "latentbridge.latent": ("Latent", "LatentSpace", "Provenance"),
    "latentbridge.formats": (
        "Space",
        "LatentFormat",
        "NormStats",
        "get_format",
        "list_formats",
        "find_formats",
        "raw_to_model",
        "model_to_raw",
    ),
    "latentbridge.files": ("read_latent", "open_latent", "write_latent", "LatentFile", "latent_stats"),
    "latentbridge.weights": ("describe_weights", "WeightsInfo", "load_vae"),
    "latentbridge.vae": ("VAE", "VaeIdentity", "as_vae"),
    "latentbridge.run": ("Run", "Tiling", "Progress", "CancelToken"),
    "latentbridge.codec": ("encode", "decode", "estimate_memory"),
    "latentbridge.checks": ("check", "Report", "Finding", "FindingKind", "FINDINGS"),
    "latentbridge.fingerprint": ("identify", "Identification"),
    "latentbridge.previews": ("preview",),
    "latentbridge.transfers": ("transfer", "transfer_dir", "fidelity_report", "Refine"),
    "latentbridge.bridge": ("load_bridge", "fit_bridge"),
    "latentbridge.comparison": ("compare",),
    "latentbridge.report": ("build_report", "write_report"),
    "latentbridge.images": ("load_images", "save_images", "to_signed", "to_unit"),
    "latentbridge.errors": (
        "LatentBridgeError",
        "LatentBridgeWarning",
        "UnknownFormatError",
        "FileFormatError",
        "WeightsError",
        "MissingPartError",
        "IncompatibleError",
        "ShapeError",
        "SpaceError",
        "FormatRequiredError",
        "InputTypeError",
        "LibraryError",
        "DtypeError",
        "NonFiniteError",
        "Cancelled",
    ),
}
_EXPORTS: dict[str, str] = {name: module for module, names in _MODULES.items() for name in names}
# face names whose definition has another name in its module
_RENAMED: dict[str, str] = {"list_formats": "formats", "describe_weights": "describe"}


def __getattr__(name: str) -> Any:
    """Load a face name from its module on first use (PEP 562) and keep it."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'latentbridge' has no attribute {name!r}")
    value = getattr(_load(module_name), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def _load(module_name: str) -> Any:
    """The module, imported with plain import statements (no importlib: the architecture test forbids it)."""
    if module_name == "latentbridge.latent":
        from latentbridge import latent

        return latent
    if module_name == "latentbridge.formats":
        from latentbridge import formats

        return formats
    if module_name == "latentbridge.files":
        from latentbridge import files

        return files
    if module_name == "latentbridge.weights":
        from latentbridge import weights

        return weights
    if module_name == "latentbridge.vae":
        from latentbridge import vae

        return vae
    if module_name == "latentbridge.run":
        from latentbridge import run

        return run
    if module_name == "latentbridge.codec":
        from latentbridge import codec

        return codec
    if module_name == "latentbridge.checks":
        from latentbridge import checks

        return checks
    if module_name == "latentbridge.fingerprint":
        from latentbridge import fingerprint

        return fingerprint
    if module_name == "latentbridge.previews":
        from latentbridge import previews

        return previews
    if module_name == "latentbridge.transfers":
        from latentbridge import transfers

        return transfers
    if module_name == "latentbridge.bridge":
        from latentbridge import bridge

        return bridge
    if module_name == "latentbridge.comparison":
        from latentbridge import comparison

        return comparison
    if module_name == "latentbridge.report":
        from latentbridge import report

        return report
    if module_name == "latentbridge.images":
        from latentbridge import images

        return images
    from latentbridge import errors

    return errors


if TYPE_CHECKING:  # what mypy and editors see; at run time the names load lazily
    from latentbridge.bridge import fit_bridge, load_bridge
    from latentbridge.checks import FINDINGS, Finding, FindingKind, Report, check
    from latentbridge.codec import decode, encode, estimate_memory
    from latentbridge.comparison import compare
    from latentbridge.errors import (
        Cancelled,
        DtypeError,
        FileFormatError,
        FormatRequiredError,
        IncompatibleError,
        InputTypeError,
        LatentBridgeError,
        LatentBridgeWarning,
        LibraryError,
        MissingPartError,
        NonFiniteError,
        ShapeError,
        SpaceError,
        UnknownFormatError,
        WeightsError,
    )
    from latentbridge.files import LatentFile, latent_stats, open_latent, read_latent, write_latent
    from latentbridge.fingerprint import Identification, identify
    from latentbridge.formats import (
        LatentFormat,
        NormStats,
        Space,
        find_formats,
        get_format,
        model_to_raw,
        raw_to_model,
    )
    from latentbridge.formats import formats as list_formats
    from latentbridge.images import load_images, save_images, to_signed, to_unit
    from latentbridge.latent import Latent, LatentSpace, Provenance
    from latentbridge.previews import preview
    from latentbridge.report import build_report, write_report
    from latentbridge.run import CancelToken, Progress, Run, Tiling
    from latentbridge.transfers import Refine, fidelity_report, transfer, transfer_dir
    from latentbridge.vae import VAE, VaeIdentity, as_vae
    from latentbridge.weights import WeightsInfo, load_vae
    from latentbridge.weights import describe as describe_weights
