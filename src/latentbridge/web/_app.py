"""The FastAPI application: routes, the security layer, the page and its static files."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse

import latentbridge as lb
from latentbridge.style import page_css
from latentbridge.web import _errors
from latentbridge.web._config import WebConfig, is_loopback
from latentbridge.web._errors import SafeJSONResponse, error_response
from latentbridge.web._schemas import (
    BrowseEntry,
    CheckIn,
    CompareIn,
    DecodeIn,
    ErrorOut,
    FindingKindOut,
    FormatOut,
    IdentifyIn,
    IdentifyOut,
    InfoOut,
    InspectIn,
    InspectOut,
    JobOut,
    LibraryEntryOut,
    PreviewIn,
    ReportIn,
    ReportOut,
    RootOut,
    ScanIn,
    TransferIn,
    UploadOut,
)
from latentbridge.web._service import Service
from latentbridge.zoo import ZOO_NAMES

STATIC = Path(__file__).with_name("static")
TOKEN_COOKIE = "lb_token"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": what}
    for code, what in (
        (400, "the library refused the input (the message says what, what was expected and the fix)"),
        (401, "the server has a token and the request did not carry it"),
        (403, "a path outside the roots, or a cross-site request"),
        (404, "no such upload, job, file or format"),
        (409, "cancelled"),
        (422, "the request does not fit the schema"),
        (429, "too many jobs queued"),
    )
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


class Guard:
    """The security layer (pure ASGI, so event streams pass untouched): allowed Host names, a token when one is
    set, same-origin (or a --cors origin) for anything that changes state, and headers that stop sniffing and
    framing. Answers are JSON errors like every other."""

    def __init__(self, app: Any, config: WebConfig) -> None:
        self.app = app
        self.token = config.token or ""
        self.hosts = {h.lower() for h in config.allowed_hosts} if config.allowed_hosts is not None else None
        self.origins = set(config.cors_origins)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        problem = self._problem(scope, headers, host)
        if problem is not None:
            status, message = problem
            await error_response(status, "Forbidden" if status == 403 else "Unauthorized", message)(
                scope, receive, send
            )
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        set_cookie = bool(self.token) and query.get("token", [""])[0] == self.token and scope["path"] == "/"

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if set_cookie:
                    cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    extra.append((b"set-cookie", cookie.encode("latin-1")))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _problem(self, scope: dict[str, Any], headers: dict[str, str], host: str) -> tuple[int, str] | None:
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if self.hosts is not None and name.lower().strip("[]") not in {h.strip("[]") for h in self.hosts}:
            return 403, (
                f"Host {host!r} is not served here (this server answers {', '.join(sorted(self.hosts))}): open it by "
                "that address; a page elsewhere that resolves its name to this machine is refused"
            )
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None:
            same = origin.split("://", 1)[-1].lower() == host.lower()
            if not same and origin not in self.origins:
                return 403, (
                    f"a page at {origin} may not change anything here (uploads, jobs): only this server's own page, "
                    "or an origin the server was started with (--cors ORIGIN)"
                )
        if self.token and not (method == "OPTIONS" and origin in self.origins):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = [
                headers.get("authorization", "").removeprefix("Bearer ").strip(),
                query.get("token", [""])[0],
                _cookie(headers.get("cookie", ""), TOKEN_COOKIE),
            ]
            if not any(g and hmac.compare_digest(g, self.token) for g in given):
                return 401, (
                    "this server needs its token: open the page as /?token=SECRET, or send 'Authorization: Bearer "
                    "SECRET' (the token given to latentbridge serve --token)"
                )
        return None


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _json(service: Service, value: Any, status: int = 200) -> SafeJSONResponse:
    return SafeJSONResponse(service.clean_json(value), status_code=status)


def create_app(config: WebConfig | None = None) -> FastAPI:
    """The web service: the API under ``/api`` (OpenAPI at ``/openapi.json``, docs at ``/docs``) and the page at ``/``.

    Args:
        config: how it runs (roots, library, limits, token …); default: loopback, no roots, no library.
    """
    config = config or WebConfig()
    service = Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.open()  # a server started again after a shutdown (tests do) gets a fresh pool and work folder
        yield
        await asyncio.to_thread(service.close)

    app = FastAPI(
        title="latentbridge",
        version=lb.__version__,
        summary="Identify, check, preview, decode and move diffusion-model latents: the library's face over HTTP.",
        default_response_class=SafeJSONResponse,
        lifespan=lifespan,
    )
    app.state.service = service
    _errors.install(app, service.clean)
    api = APIRouter(prefix="/api", responses=ERRORS)
    _routes(api, service, config)
    app.include_router(api)
    _pages(app, config)
    app.add_middleware(Guard, config=config)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def _pages(app: FastAPI, config: WebConfig) -> None:
    def static(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
        async def serve() -> Response:
            return Response((STATIC / name).read_bytes(), media_type=media_type, headers={"Cache-Control": "no-cache"})

        return serve

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        page = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{version}}", lb.__version__)
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @app.get("/static/page.css", include_in_schema=False)
    async def css() -> Response:
        return Response(page_css(), media_type="text/css", headers={"Cache-Control": "no-cache"})

    app.get("/static/app.js", include_in_schema=False)(static("app.js", "text/javascript"))


def _routes(api: APIRouter, service: Service, config: WebConfig) -> None:
    # --- the registry, the catalogue, the server ----------------------------------------------------------------
    @api.get("/info", response_model=InfoOut, summary="What this server serves: roots, library, limits, VAEs")
    def info() -> Response:
        vaes: list[dict[str, Any]] = [
            {"ref": {"zoo": z}, "label": f"{z} (built-in zoo)", "format": z, "kind": "zoo"} for z in ZOO_NAMES
        ]
        if config.library is not None:
            for e in service.library().entries():
                if e.kind == "vae" or e.has_vae:
                    label = f"{e.name} ({e.format or '/'.join(e.formats) or 'format unknown'}; library)"
                    vaes.append({"ref": {"library": e.sha256 or e.path}, "label": label, "format": e.format or None,
                                 "kind": "library"})  # fmt: skip
        return _json(
            service,
            {
                "version": lb.__version__,
                "roots": [{"index": i, "name": r.name or str(r)} for i, r in enumerate(service.roots)],
                "library": config.library is not None,
                "max_upload_bytes": config.max_upload_bytes,
                "workers": config.workers,
                "token_required": bool(config.token),
                "vaes": vaes,
                "vae_cache": service.vaes.to_dict(),
            },
        )

    @api.get("/formats", response_model=list[FormatOut], summary="The latent-format registry (latentbridge formats)")
    def formats() -> Response:
        return _json(service, [f.to_dict() for f in lb.list_formats().values()])

    @api.get("/formats/{name}", response_model=FormatOut, summary="One format with every number and its source")
    def one_format(name: str) -> Response:
        with service.errors():
            return _json(service, lb.get_format(name).to_dict())

    @api.get("/findings", response_model=dict[str, FindingKindOut], summary="The finding catalogue (lb.FINDINGS)")
    def findings() -> Response:
        return _json(service, {code: kind.to_dict() for code, kind in lb.FINDINGS.items()})

    @api.get("/roots", response_model=list[RootOut], summary="The folders this server serves files from")
    def roots() -> Response:
        return _json(service, [{"index": i, "name": r.name or str(r)} for i, r in enumerate(service.roots)])

    @api.get("/browse", response_model=list[BrowseEntry], summary="The files of a folder under a root")
    def browse(
        root: int = Query(0, ge=0, le=1024), path: str = Query("", max_length=4096, description="relative")
    ) -> Response:
        return _json(service, service.browse(root, path))

    # --- uploads ------------------------------------------------------------------------------------------------
    @api.post(
        "/files",
        response_model=UploadOut,
        status_code=201,
        summary="Upload a latent, weight or image file (multipart 'file'; streamed, size-limited: 413)",
        openapi_extra=UPLOAD_BODY,
        responses={413: {"model": ErrorOut, "description": "over the upload limit"}},
    )
    async def upload(request: Request) -> Response:
        service.uploads.expire(_cutoff(config))
        got = await service.uploads.receive(request)
        return _json(service, got.to_dict(), 201)

    @api.get("/files", response_model=list[UploadOut], summary="The uploads kept")
    def uploads() -> Response:
        return _json(service, [u.to_dict() for u in service.uploads.all()])

    @api.get("/files/{upload_id}", response_model=UploadOut, summary="One upload")
    def one_upload(upload_id: str) -> Response:
        return _json(service, service.uploads.get(upload_id).to_dict())

    @api.delete("/files/{upload_id}", status_code=204, summary="Remove an upload")
    def delete_upload(upload_id: str) -> Response:
        service.uploads.delete(upload_id)
        return Response(status_code=204)

    # --- quick answers ------------------------------------------------------------------------------------------
    @api.post("/inspect", response_model=InspectOut, summary="What a latent, weight or image file holds (inspect)")
    def inspect(req: InspectIn) -> Response:
        return _json(service, service.inspect(req))

    @api.post("/identify", response_model=IdentifyOut, summary="Format and space from the values alone (identify)")
    def identify(req: IdentifyIn) -> Response:
        return _json(service, service.identify(req))

    @api.post("/check", response_model=ReportOut, summary="Do this latent and this VAE belong together (check)")
    def check(req: CheckIn) -> Response:
        return _json(service, service.check(req))

    @api.post(
        "/preview",
        summary="A preview in milliseconds, no full decode (preview): a PNG",
        response_class=Response,
        responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    def preview(req: PreviewIn) -> Response:
        png, why = service.preview(req)
        return Response(png, media_type="image/png", headers={"X-Preview": quote(why, safe=" ,;:()/=+-")})

    # --- jobs ---------------------------------------------------------------------------------------------------
    def job_response(job: Any) -> Response:
        return _json(service, job.to_dict(), 202)

    @api.post("/jobs/decode", response_model=JobOut, status_code=202, summary="Decode with the VAE, checked first")
    def decode(req: DecodeIn) -> Response:
        service.latent_file(req.latent, req)  # a bad file or option fails now, not in the job
        return job_response(service.submit("decode", lambda job: service.decode(req, job), req.model_dump()))

    @api.post("/jobs/compare", response_model=JobOut, status_code=202, summary="Decode with each VAE, side by side")
    def compare(req: CompareIn) -> Response:
        service.latent_file(req.latent, req)
        return job_response(service.submit("compare", lambda job: service.compare(req, job), req.model_dump()))

    @api.post("/jobs/transfer", response_model=JobOut, status_code=202, summary="Move a latent to another VAE")
    def transfer(req: TransferIn) -> Response:
        service.latent_file(req.latent, req)
        return job_response(service.submit("transfer", lambda job: service.transfer(req, job), req.model_dump()))

    @api.post("/jobs/report", response_model=JobOut, status_code=202, summary="The HTML report of latent files")
    def report(req: ReportIn) -> Response:
        for ref in req.latents:
            service.file(ref)
        return job_response(service.submit("report", lambda job: service.report(req, job), req.model_dump()))

    @api.post("/jobs/scan", response_model=JobOut, status_code=202, summary="Index folders into the model library")
    def scan(req: ScanIn) -> Response:
        service.library()
        for ref in req.dirs:
            service.file(ref)
        return job_response(service.submit("scan", lambda job: service.scan(req, job), req.model_dump()))

    @api.get("/jobs", response_model=list[JobOut], summary="The jobs kept (queued, running and finished)")
    def jobs() -> Response:
        service.jobs.expire()
        return _json(service, [j.to_dict() for j in service.jobs.all()])

    @api.get("/jobs/{job_id}", response_model=JobOut, summary="A job's state, progress, result or error")
    def one_job(job_id: str) -> Response:
        return _json(service, service.jobs.get(job_id).to_dict())

    @api.post("/jobs/{job_id}/cancel", response_model=JobOut, summary="Stop a job (at its next step)")
    def cancel(job_id: str) -> Response:
        return _json(service, service.jobs.cancel(job_id).to_dict())

    @api.get(
        "/jobs/{job_id}/events",
        summary="Server-sent events: state, progress (task, done, total), then done/error/cancelled with the job",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )
    async def events(job_id: str, request: Request) -> StreamingResponse:
        job = service.jobs.get(job_id)
        start = request.headers.get("last-event-id", "")
        first = int(start) + 1 if start.isdigit() else 0

        async def stream() -> AsyncIterator[bytes]:
            index, idle = first, 0.0
            while True:
                batch, ended = job.events_since(index)
                for e in batch:
                    data = json.dumps(service.clean_json(e["data"]), ensure_ascii=False)
                    yield f"id: {e['id']}\nevent: {e['event']}\ndata: {data}\n\n".encode()
                    index = e["id"] + 1
                if ended:  # the job's last event was in this batch
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)
                idle = 0.0 if batch else idle + 0.05
                if idle >= 15.0:  # a comment line keeps proxies from closing a quiet stream
                    idle = 0.0
                    yield b": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @api.get(
        "/jobs/{job_id}/files/{name}",
        summary="A file a finished job wrote (PNG, .latent, report.html)",
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    def job_file(job_id: str, name: str) -> Response:
        job = service.jobs.get(job_id)
        found = job.files.get(name)
        if job.state != "done" or found is None or not found[0].exists():
            listed = ", ".join(job.files) if job.state == "done" else f"none yet (the job is {job.state})"
            raise _errors.ApiError(404, f"job {job_id} has no file {name!r}: its files are {listed}")
        path, media_type = found
        headers = {"Content-Security-Policy": REPORT_CSP} if media_type == "text/html" else {}
        disposition = "inline" if media_type in ("image/png", "text/html") else "attachment"
        return FileResponse(path, media_type=media_type, filename=name, content_disposition_type=disposition,
                            headers=headers)  # fmt: skip

    # --- the library --------------------------------------------------------------------------------------------
    @api.get("/library", response_model=list[LibraryEntryOut], summary="The model library's entries")
    def library(kind: str | None = Query(None, max_length=32)) -> Response:
        lib = service.library()
        with service.errors():
            return _json(service, [e.to_dict() for e in lib.entries(kind)])

    @api.get("/library/find", response_model=list[LibraryEntryOut], summary="Library entries by hash, family, name")
    def library_find(q: str = Query(..., min_length=1, max_length=256)) -> Response:
        lib = service.library()
        with service.errors():
            return _json(service, [e.to_dict() for e in lib.find(q)])


def _cutoff(config: WebConfig) -> float:
    return time.time() - config.keep_seconds


def loopback_hosts(host: str) -> tuple[str, ...] | None:
    """The Host names a server bound to ``host`` answers: the loopback names for a loopback bind, else any."""
    if is_loopback(host):
        return ("127.0.0.1", "localhost", "::1", host)
    return None
