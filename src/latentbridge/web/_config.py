"""How one server runs: one frozen value built by ``latentbridge serve`` (or a test) and given to ``create_app``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from latentbridge import LatentBridgeError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MB = 1 << 20


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost" (the only hosts served without a token by default)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class WebConfig:
    """Settings of one server.

    Attributes:
        host: the address uvicorn binds (only used to decide the security defaults here).
        roots: folders whose files (and sub-folders) requests may name by relative path; nothing else on disk is
            reachable, except what the library at ``library`` indexed, named by its entry.
        library: the model library's home (``latentbridge library``), or None: no library endpoints' data.
        work_dir: where uploads and job results are kept (None: a temporary folder removed at shutdown).
        token: a secret every request must carry (``Authorization: Bearer …``, a ``token`` query parameter or the
            cookie the page sets); required when ``host`` is not loopback.
        cors_origins: origins allowed to call the API from another page (none by default: no CORS headers).
        allowed_hosts: Host header values accepted (None: any). The CLI sets the loopback names for a loopback
            server, which stops DNS-rebinding pages from reaching it.
        max_upload_bytes: the largest upload; a bigger one is refused with 413 before it is stored whole.
        workers: jobs running at once (decode, compare, transfer, report, library scans).
        max_jobs: jobs queued or running at once; more are refused with 429.
        keep_seconds: finished jobs and uploads are kept this long, then removed with their files.
        max_kept_jobs: at most this many finished jobs are kept (the oldest go first).
        vae_cache_bytes: memory bound of the loaded-VAE cache (parameters and buffers, by content hash).
        device: where the networks run (the API does not let a request choose).
    """

    host: str = DEFAULT_HOST
    roots: tuple[Path, ...] = ()
    library: Path | None = None
    work_dir: Path | None = None
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None
    max_upload_bytes: int = 1024 * MB
    workers: int = 2
    max_jobs: int = 64
    keep_seconds: float = 3600.0
    max_kept_jobs: int = 200
    vae_cache_bytes: int = 2048 * MB
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise LatentBridgeError(
                f"binding to {self.host} would serve every file under the roots to anyone who can reach this "
                "machine, without a token: pass --token SECRET (or set LATENTBRIDGE_TOKEN), or bind to 127.0.0.1"
            )
        for root in self.roots:
            if not Path(root).is_dir():
                raise LatentBridgeError(f"--root {root} is not a folder: pass existing folders to serve files from")
        for name, value in (("workers", self.workers), ("max_jobs", self.max_jobs)):
            if value < 1:
                raise LatentBridgeError(f"{name} must be at least 1, got {value}")
        if self.max_upload_bytes < 1:
            raise LatentBridgeError(f"the upload limit must be at least 1 byte, got {self.max_upload_bytes}")
