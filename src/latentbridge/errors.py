"""One hierarchy of errors. Every message says what was found, what was expected, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "Cancelled",
    "DtypeError",
    "FileFormatError",
    "FormatRequiredError",
    "IncompatibleError",
    "InputTypeError",
    "LatentBridgeError",
    "LatentBridgeWarning",
    "LibraryError",
    "MissingPartError",
    "NonFiniteError",
    "ShapeError",
    "SpaceError",
    "UnknownFormatError",
    "WeightsError",
    "did_you_mean",
]


class LatentBridgeError(Exception):
    """Base of every error latentbridge raises on purpose."""


class UnknownFormatError(LatentBridgeError, KeyError):
    """A latent-format name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FileFormatError(LatentBridgeError):
    """A file that cannot be read as what it claims to be (corrupt, truncated, mislabelled, unsafe)."""


class MissingFileError(FileFormatError, FileNotFoundError):
    """A path that names no file (nothing there, or a symbolic link to nothing); also a FileNotFoundError."""


class WeightsError(LatentBridgeError):
    """A weight file that cannot be identified or loaded strictly."""


class MissingPartError(WeightsError):
    """A weight file (or file set) that holds only one half of a VAE when the other half is needed.

    Attributes:
        held: the halves the files hold ("encoder", "decoder").
        lacking: the halves the request needs and the files do not hold.
    """

    def __init__(self, message: str, *, held: tuple[str, ...] = (), lacking: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.held = held
        self.lacking = lacking


class IncompatibleError(LatentBridgeError):
    """A latent and a VAE (or two formats) that do not belong together."""


class ShapeError(LatentBridgeError, ValueError):
    """A tensor whose shape does not fit what the operation needs."""


class SpaceError(LatentBridgeError, ValueError):
    """A latent space that is unknown where it must be known, or not one of "raw", "model", "unknown"."""


class FormatRequiredError(LatentBridgeError, ValueError):
    """An operation that needs the latent's format where it is unknown (pass it, or identify it first)."""


class InputTypeError(LatentBridgeError, TypeError):
    """A value of the wrong kind where it enters latentbridge (a str where a tensor belongs, …)."""


class DtypeError(LatentBridgeError, ValueError):
    """A dtype name or torch dtype latentbridge does not compute or load in."""


class Cancelled(LatentBridgeError):
    """A long operation stopped because its :class:`~latentbridge.run.CancelToken` was cancelled.

    Nothing the operation would have written was written (finished files of a folder stay finished).
    """


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean 'x'?' for the closest choices, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


class NonFiniteError(LatentBridgeError, ValueError):
    """A tensor with NaN or infinite values where finite ones are needed (a corrupt latent, a diverging VAE)."""


class DeviceError(LatentBridgeError, ValueError):
    """A device this torch build or machine cannot run on (``cuda`` on a CPU-only torch, ``cuda:3`` of two GPUs)."""


class LatentBridgeWarning(UserWarning):
    """Something latentbridge did on your behalf that you should know about (a redo in fp32, automatic tiling)."""


class LibraryError(LatentBridgeError):
    """A local model library that cannot be opened or used, or a lookup in it that found nothing usable."""
