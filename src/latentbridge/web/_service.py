"""What each endpoint does, through the public face: read the named files, call one library function, return its
``to_dict()``. The routes (``_app``) only parse requests and pick the response type.

Server paths never reach a client: uploads are called by their file names, root files by their relative paths,
in results and in error messages alike (:meth:`Service.clean`).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import latentbridge as lb
from latentbridge import (
    VAE,
    Cancelled,
    LatentBridgeError,
    LatentFile,
    MissingPartError,
    Refine,
    Run,
    Tiling,
    VaeIdentity,
)
from latentbridge.comparison import save_grid
from latentbridge.images import output_paths
from latentbridge.library import Library, LibraryEntry
from latentbridge.previews import choose_previewer, default_fits_dir, frames_per_item, png_bytes, preview_grid
from latentbridge.provenance import from_latent_file, read_provenance
from latentbridge.transfers import FIDELITY_NOTE
from latentbridge.web._config import WebConfig
from latentbridge.web._errors import USER_ERRORS, ApiError, jsonable, status_of
from latentbridge.web._files import Uploads, file_kind, listing, resolve_under_root
from latentbridge.web._jobs import Job, JobPool
from latentbridge.web._schemas import (
    CheckIn,
    CompareIn,
    DecodeIn,
    FileRef,
    IdentifyIn,
    InspectIn,
    PreviewIn,
    ReadOptions,
    ReportIn,
    RunOptions,
    ScanIn,
    TransferIn,
    VaeRef,
)
from latentbridge.web._vaes import VaeCache
from latentbridge.weights import resolve_spec
from latentbridge.zoo import ZOO_NAMES


@dataclasses.dataclass(frozen=True, slots=True)
class Named:
    """A file a request named: where it is on this machine and what to call it in answers."""

    path: Path
    display: str
    sha256: str = ""
    size: int = 0


class _ScanCancel:
    """``Library.scan``'s cancel protocol (``is_set()``) over a job's CancelToken."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def is_set(self) -> bool:
        return self.job.token.cancelled


class Service:
    """The state of one server (uploads, jobs, the VAE cache) and the operations the endpoints call."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.roots = tuple(Path(r).resolve() for r in config.roots)
        self.vaes = VaeCache(config.vae_cache_bytes, config.device)
        self.fits_dir = default_fits_dir(config.library)
        self._root_paths = [(str(r) + "/", f"root {i}: ") for i, r in enumerate(self.roots)]
        self._closed = True
        self.open()

    def open(self) -> None:
        """Make the work folder, the uploads and the job pool (again, after :meth:`close`)."""
        if not self._closed:
            return
        config = self.config
        self._own_work = config.work_dir is None
        self.work = Path(config.work_dir) if config.work_dir is not None else Path(tempfile.mkdtemp(prefix="lb-web-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.uploads = Uploads(self.work / "uploads", config.max_upload_bytes)
        self.jobs = JobPool(
            self.work / "jobs", config.workers, config.max_jobs, config.keep_seconds, config.max_kept_jobs
        )
        self._upload_path = re.compile(re.escape(str(self.uploads.folder.resolve())) + r"/[0-9a-f]{32}/")
        self._closed = False

    def close(self) -> None:
        """Stop the jobs (cancelled at their next step); remove the work folder when the server made it."""
        if self._closed:
            return
        self._closed = True
        self.jobs.shutdown()
        if self._own_work:
            shutil.rmtree(self.work, ignore_errors=True)

    # --- names and errors -----------------------------------------------------------------------------------
    def clean(self, text: str) -> str:
        """``text`` with server paths replaced by what the client called the files."""
        text = self._upload_path.sub("", text)
        for prefix, name in self._root_paths:
            text = text.replace(prefix, name)
        return text.replace(str(self.work), "<server>")

    def clean_json(self, value: Any) -> Any:
        """A to_dict() result made JSON-safe, with server paths replaced (see :meth:`clean`)."""
        value = jsonable(value)
        if isinstance(value, str):
            return self.clean(value)
        if isinstance(value, dict):
            return {k: self.clean_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.clean_json(v) for v in value]
        return value

    @contextmanager
    def errors(self) -> Iterator[None]:
        """The library's errors as API errors with the same message, server paths replaced."""
        try:
            yield
        except (ApiError, Cancelled):
            raise
        except USER_ERRORS as exc:
            raise ApiError(status_of(exc), self.clean(str(exc)), type(exc).__name__) from exc

    # --- files ----------------------------------------------------------------------------------------------
    def file(self, ref: FileRef) -> Named:
        """The file an upload id or a root-relative path names."""
        if ref.upload is not None:
            up = self.uploads.get(ref.upload)
            return Named(up.path, up.name, up.sha256, up.size)
        if ref.path is None:
            raise ApiError(400, "name a file by exactly one of 'upload' (an upload's id) or 'path' (under a root)")
        path = resolve_under_root(self.roots, ref.root, ref.path)
        return Named(path, ref.path if ref.root == 0 else f"root {ref.root}: {ref.path}")

    def latent_file(self, ref: FileRef, opts: ReadOptions | Any) -> tuple[LatentFile, Named]:
        """The latent file ``ref`` names, read with the CLI's reading options."""
        named = self.file(ref)
        with self.errors():
            if named.path.is_dir():
                raise LatentBridgeError(f"{named.display} is a folder: name a latent file")
            info = lb.open_latent(
                named.path,
                key=opts.key,
                format=opts.format,
                space=opts.space,
                layout=getattr(opts, "layout", None),
                grid=opts.grid,
            )
        return info, named

    def latent_dict(self, info: LatentFile, named: Named) -> dict[str, Any]:
        """``LatentFile.to_dict()`` with the file called by its display name."""
        return info.to_dict() | {"file": named.display}

    def vae_named(self, ref: VaeRef) -> tuple[str, Named]:
        """(what ``load_vae`` takes, the file) for a VAE reference."""
        if ref.zoo is not None:
            if ref.zoo not in ZOO_NAMES:
                raise ApiError(404, f"no zoo VAE {ref.zoo!r}: the zoo holds {', '.join(ZOO_NAMES)}")
            with self.errors():
                path, _ = resolve_spec(ref.zoo)
            return ref.zoo, Named(path, ref.zoo)
        if ref.library is not None:
            entry = self.library_entry(ref.library)
            return entry.path, Named(Path(entry.path), entry.name, entry.sha256, entry.size)
        named = self.file(FileRef(upload=ref.upload, path=ref.path, root=ref.root))
        return str(named.path), named

    def vae(self, ref: VaeRef, need: str = "decoder") -> VAE:
        """The loaded VAE (from the cache when its bytes were loaded before), holding the half ``need`` names."""
        spec, named = self.vae_named(ref)
        with self.errors():
            sha = named.sha256 or self.vaes.content_hash(named.path)
            size = named.size or (named.path.stat().st_size if named.path.is_file() else 0)
            vae = self.vaes.get(spec, sha, ref.format, size_hint=size, display=named.display)
            wanted = {"decoder": ("decoder",), "encoder": ("encoder",), "both": ("encoder", "decoder")}[need]
            held = tuple(p for p, has in (("encoder", vae.has_encoder), ("decoder", vae.has_decoder)) if has)
            lacking = tuple(p for p in wanted if p not in held)
            if lacking:
                raise MissingPartError(
                    f"{named.display} holds only the {' and '.join(held) or 'nothing'} of that VAE, but this needs "
                    f"its {' and '.join(lacking)}: pass a file with both halves",
                    held=held,
                    lacking=lacking,
                )
        return vae

    def vae_identity(self, ref: VaeRef, fmt: str | None) -> VaeIdentity:
        """The VAE's identity from its file's header (no tensors loaded): what a plain check needs."""
        spec, named = self.vae_named(ref)
        with self.errors():
            extra = resolve_spec(spec)[1] if ref.zoo is not None else {}
            info = lb.describe_weights(named.path, format=fmt or ref.format or extra.get("format"))
            return dataclasses.replace(info.identity(), name=named.display)

    def library(self) -> Library:
        """The model library (404 when the server was started without --library)."""
        if self.config.library is None:
            raise ApiError(404, "this server has no model library: start it with --library HOME")
        with self.errors():
            return Library(self.config.library)

    def library_entry(self, key: str) -> LibraryEntry:
        """An indexed VAE (or checkpoint with a VAE) by its sha256 or path."""
        for entry in self.library().entries():
            if key in (entry.sha256, entry.path) and (entry.kind == "vae" or entry.has_vae):
                return entry
        raise ApiError(404, f"the library indexes no VAE {key!r}: GET /api/library lists its entries (sha256, path)")

    def run(self, opts: RunOptions, job: Job | None) -> Run:
        """The Run a request's options describe, reporting to the job and cancelled by its token."""
        with self.errors():
            return Run(
                device=self.config.device,
                dtype=opts.dtype,
                batch_size=opts.batch_size,
                tiling=Tiling(tile=opts.tile, overlap=opts.overlap, passes=opts.tile_passes),
                max_memory=opts.max_memory,
                channels_last=opts.channels_last,
                progress=job.progress if job is not None else None,
                cancel=job.token if job is not None else None,
            )

    # --- quick answers --------------------------------------------------------------------------------------
    def inspect(self, req: InspectIn) -> dict[str, Any]:
        named = self.file(req.file)
        kind = "weights" if named.path.is_dir() else file_kind(named.path)[0]
        with self.errors():
            if kind == "image":
                found = read_provenance(named.path)
                return self.clean_json({"kind": "image", "name": named.display, "provenance_found": found.to_dict()})
            if kind == "weights":
                info = lb.describe_weights(named.path, format=req.format)
                out = info.to_dict() | {"path": named.display, "file": named.display}
                return self.clean_json({"kind": "weights", "name": named.display, "weights": out})
        latent, named = self.latent_file(req.file, req)
        with self.errors():
            stats = lb.latent_stats(latent.latent)
            found = from_latent_file(latent)
        return self.clean_json(
            {
                "kind": "latent",
                "name": named.display,
                "latent": self.latent_dict(latent, named),
                "stats": {"overall": stats["overall"], "channels": stats["channels"]},
                "provenance_found": found.to_dict(),
            }
        )

    def identify(self, req: IdentifyIn) -> dict[str, Any]:
        info, named = self.latent_file(req.latent, req)
        lat = info.latent
        known = req.layout is not None or req.grid is not None or info.recorded_layout is not None
        with self.errors():
            ident = lb.identify(lat, layout_known=known)
        recorded = " ".join(x for x in (lat.format_name, lat.space if lat.space != "unknown" else "") if x)
        out = {"file": named.display, "recorded": recorded, "read_notes": list(info.notes), **ident.to_dict()}
        return self.clean_json(out)

    def check(self, req: CheckIn) -> dict[str, Any]:
        info, _ = self.latent_file(req.latent, req)
        if req.preflight:  # the decode→encode cycle test needs both halves when the file has them
            probe = self.vae_identity(req.vae, None)
            vae: Any = self.vae(req.vae, need="both" if probe.has_encoder and probe.has_decoder else "decoder")
        else:
            vae = self.vae_identity(req.vae, req.vae.format)
        with self.errors():
            report = lb.check(info.latent, vae, preflight=req.preflight)
        return self.clean_json(report.to_dict())

    def preview(self, req: PreviewIn) -> tuple[bytes, str]:
        """PNG bytes of the preview and a line saying which previewer and why."""
        info, _ = self.latent_file(req.latent, req)
        lat = info.latent
        decoder = self.vae(req.vae, need="decoder") if req.vae is not None else None
        with self.errors():
            if decoder is not None and decoder.stats is not None and lat.stats is None:
                lat = lat.replace(stats=decoder.stats)  # FLUX.2 raw latents convert with the VAE's statistics
            previewer, why = choose_previewer(lat, req.method, vae=decoder, fits_dir=self.fits_dir)
            images = previewer(lat)
            png = png_bytes(preview_grid(images, frames_per_item(lat), upscale=req.upscale))
        return png, self.clean(why)

    # --- jobs -----------------------------------------------------------------------------------------------
    def submit(self, kind: str, fn: Callable[[Job], dict[str, Any]], params: Any) -> Job:
        return self.jobs.submit(kind, lambda job: self.clean_json(self._in_job(fn, job)), params)

    def _in_job(self, fn: Callable[[Job], dict[str, Any]], job: Job) -> dict[str, Any]:
        with self.errors():
            return fn(job)

    def decode(self, req: DecodeIn, job: Job) -> dict[str, Any]:
        info, named = self.latent_file(req.latent, req)
        latent = info.latent
        vae = self.vae(req.vae, need="decoder")
        report = lb.check(latent, vae)
        if report.verdict == "error" and not req.force:
            found = "; ".join(f"{f.code}: {f.message} (fix: {f.fix})" for f in report.findings if f.severity == "error")
            raise LatentBridgeError(
                f"refusing to decode, `latentbridge check` found {found}. Pass force (--force) to decode anyway"
            )
        if "T" in latent.layout and vae.dims == 2:  # frames of an image VAE's latents (AnimateDiff, SVD)
            latent = latent.frames_as_batch()
        run = self.run(req.run, job)
        images = lb.decode(vae, latent, run, crop_padding=not req.no_crop)
        fmt = latent.format or vae.format
        metadata = {
            "tool": f"latentbridge {lb.__version__} serve",
            "latent_file": named.display,
            "format": fmt.name if fmt is not None else "",
            "space": latent.space,
            "vae_name": vae.name,
            "vae_sha256": vae.sha256,
            "dtype": str(run.dtype),
            "tile": run.tiling.tile,
            "provenance": latent.provenance.to_dict(),
        }
        stem = Path(named.display).name.rsplit(".", 1)[0] or "decoded"
        targets = output_paths(job.folder / f"{stem}.png", int(images.shape[0]))
        for target in targets:
            job.add_file(target.name, "image/png")
        lb.save_images(images.cpu(), job.folder / f"{stem}.png", metadata=metadata)
        return {
            "check": report.to_dict(),
            "images": [t.name for t in targets],
            "shape": list(images.shape),
            "vae": vae.identity.to_dict(),
        }

    def compare(self, req: CompareIn, job: Job) -> dict[str, Any]:
        info, named = self.latent_file(req.latent, req)
        vaes = [self.vae(ref, need="decoder") for ref in req.vaes]
        ref_image, ref_name = None, ""
        if req.reference is not None:
            picture = self.file(req.reference)
            ref_image, ref_name = lb.to_unit(lb.load_images([picture.path]).tensor), picture.display
        result = lb.compare(
            info.latent,
            vaes,
            reference=ref_image,
            reference_name=ref_name or "reference image",
            item=req.item,
            frame=req.frame,
            run=self.run(req.run, job),
        )
        save_grid(result, job.add_file("compare.png", "image/png"))
        return {"latent": named.display, "comparison": result.to_dict()}

    def transfer(self, req: TransferIn, job: Job) -> dict[str, Any]:
        info, named = self.latent_file(req.latent, req)
        latent = info.latent
        src = self.vae(req.from_vae, need="decoder")
        dst = self.vae(req.to_vae, need="both" if req.report or req.refine else "encoder")
        method: Any = Refine(req.refine) if req.refine else "reencode"
        run = self.run(req.run, job)
        out = lb.transfer(latent, src, dst, method=method, space=req.out_space, fit=req.fit, run=run)
        stem = Path(named.display).name.rsplit(".", 1)[0] or "latent"
        name = f"{stem}.{dst.format.name if dst.format is not None else 'transferred'}.latent"
        path = job.add_file(name, "application/octet-stream")
        lb.write_latent(out, path, overwrite=True)
        rows: list[dict[str, Any]] = []
        if req.report:
            methods: list[Any] = ["reencode"] + ([method] if req.refine else [])
            rows = [r.to_dict() for r in lb.fidelity_report(latent, src, dst, methods, fit=req.fit, run=run)]
        return {
            "source": {"name": named.display, "format": latent.format_name or None, "shape": list(latent.shape)},
            "latent": {
                "file": name,
                "format": out.format_name or None,
                "space": out.space,
                "layout": out.layout,
                "shape": list(out.shape),
                "provenance": out.provenance.to_dict(),
            },
            "method": "refine" if req.refine else "reencode",
            "fidelity": rows,
            "fidelity_note": FIDELITY_NOTE if rows else "",
        }

    def report(self, req: ReportIn, job: Job) -> dict[str, Any]:
        vaes = [self.vae(ref, need="decoder") for ref in req.vaes]
        run = self.run(req.run, job)
        reports, summary = [], []
        for ref in req.latents:
            job.token.raise_if_cancelled("the report")
            info, named = self.latent_file(ref, req)
            rep = lb.build_report(
                info.latent,
                vaes,
                name=named.display,
                file_info=self.latent_dict(info, named),
                fits_dir=self.fits_dir,
                run=run,
            )
            reports.append(rep)
            summary.append({"name": named.display, "checks": [{"vae": v, "verdict": r.verdict} for v, r in rep.checks]})
        lb.write_report(reports, job.add_file("report.html", "text/html"), title=req.title)
        return {"latents": summary}

    def scan(self, req: ScanIn, job: Job) -> dict[str, Any]:
        lib = self.library()
        dirs = [self.file(ref).path for ref in req.dirs]
        for d, ref in zip(dirs, req.dirs, strict=True):
            if not d.is_dir():
                raise ApiError(400, f"{ref.path or ref.upload} is not a folder: a library scan indexes folders")

        def progress(done: int, total: int, path: str) -> None:
            job.progress(lb.Progress("library scan", done, total))

        report = lib.scan(*dirs, hash=req.hash, progress=progress, cancel=_ScanCancel(job))
        if report.cancelled:
            job.token.raise_if_cancelled("the library scan")
        return report.to_dict()

    def browse(self, root: int, path: str) -> list[dict[str, Any]]:
        return listing(self.roots, root, path)
