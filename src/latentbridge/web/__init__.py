"""latentbridge's local web service and one-page UI (``latentbridge serve``): a thin shell over the public face.

Endpoints mirror the face (inspect, identify, check, preview, decode, compare, transfer, report, formats, the
finding catalogue, the library); bodies are the results' own ``to_dict()`` forms, described by pydantic models
so that ``/openapi.json`` is real. Long work runs as jobs in a bounded worker pool, reporting progress through
the Run's callback as server-sent events and stopping through its cancel token::

    from latentbridge.web import WebConfig, create_app
    app = create_app(WebConfig(roots=(Path("~/latents").expanduser(),)))   # uvicorn.run(app, port=8765)

Security defaults: loopback only (another address needs a token), loopback Host names only, no CORS unless
asked, same-origin for anything that changes state, files only under the ``--root`` folders, uploads
size-limited, pickles loaded with ``weights_only=True`` (as everywhere in latentbridge), errors as JSON with the
library's message and never a traceback.
"""

from __future__ import annotations

from latentbridge.web._app import create_app, loopback_hosts
from latentbridge.web._config import DEFAULT_HOST, DEFAULT_PORT, WebConfig, is_loopback
from latentbridge.web._jobs import capture_warnings

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "WebConfig",
    "capture_warnings",
    "create_app",
    "is_loopback",
    "loopback_hosts",
]
