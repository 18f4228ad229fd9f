"""Errors as JSON: the library's own message (what was found, what was expected, the fix: the CLI's text), a type
and a status code; never a traceback. Also the JSON encoder every response goes through (NaN/inf made JSON-safe)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentbridge import Cancelled, LatentBridgeError

log = logging.getLogger("latentbridge.web")


class ApiError(Exception):
    """An error the service itself raises: a status code and a message that says what, what was expected, the fix."""

    def __init__(self, status: int, message: str, kind: str = "", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind or {
            400: "BadRequest",
            403: "Forbidden",
            404: "NotFound",
            409: "Conflict",
            413: "TooLarge",
            429: "Busy",
        }.get(status, "Error")
        self.headers = dict(headers or {})


def jsonable(value: Any) -> Any:
    """A value JSON can hold: NaN -> None, ±inf -> "inf"/"-inf" (as the results' to_dict do), tuples -> lists,
    numpy scalars -> Python numbers, anything else unknown -> its str."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return jsonable(item())
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    return str(value)


class SafeJSONResponse(JSONResponse):
    """JSON with non-finite floats made safe (the standard encoder refuses NaN) and UTF-8 kept as it is."""

    def render(self, content: Any) -> bytes:
        return json.dumps(jsonable(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def error_response(status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"error": {"type": …, "message": …, "status": …}}``."""
    body = {"error": {"type": kind, "message": message, "status": status}}
    return SafeJSONResponse(body, status_code=status, headers=dict(headers or {}))


def status_of(exc: BaseException) -> int:
    """The HTTP status of a library error: 404 for a missing file, 403 for a refused one, 409 cancelled, 400 else."""
    if isinstance(exc, FileNotFoundError):
        return 404
    if isinstance(exc, PermissionError):
        return 403
    if isinstance(exc, Cancelled):
        return 409
    return 400


USER_ERRORS: tuple[type[Exception], ...] = (
    ApiError,
    LatentBridgeError,
    ValueError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
"""What the CLI turns into one red line (``fail_on_error``): here into a JSON error with the same text."""


def describe(exc: BaseException) -> dict[str, Any]:
    """The JSON form of an error raised by a job or a request: type, message, status."""
    if isinstance(exc, ApiError):
        return {"type": exc.kind, "message": exc.message, "status": exc.status}
    if isinstance(exc, USER_ERRORS):
        return {"type": type(exc).__name__, "message": str(exc), "status": status_of(exc)}
    return {"type": "InternalError", "message": INTERNAL, "status": 500}


INTERNAL = "the server failed unexpectedly (a bug in latentbridge: its log has the details); please report it"


def install(app: FastAPI, clean: Callable[[str], str] = str) -> None:
    """Register the handlers that turn every exception into a JSON error (``clean`` hides server paths)."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        message = "the request does not fit the API: " + "; ".join(problems[:8]) + " (see /docs for each field)"
        return error_response(422, "InvalidRequest", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = clean(str(exc.detail))
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path} (the API is listed at /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (the API is listed at /docs)"
        return error_response(exc.status_code, "HTTPError", message, getattr(exc, "headers", None))

    for kind in USER_ERRORS:
        if kind is ApiError:
            continue

        @app.exception_handler(kind)
        async def _user(request: Request, exc: Exception) -> JSONResponse:
            return error_response(status_of(exc), type(exc).__name__, clean(str(exc)))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "InternalError", INTERNAL)
