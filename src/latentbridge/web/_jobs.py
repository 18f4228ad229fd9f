"""Long work as jobs in a bounded worker pool: create -> progress events -> result or error; cancel at any time.

A job's function gets the :class:`Job`; it builds its :class:`latentbridge.Run` with ``job.progress`` as the
progress callback and ``job.token`` as the cancel token, so the library reports each step and stops at the next
one when cancelled (``Cancelled``, nothing written). Results and their files are kept ``keep_seconds`` after the
job ends, then removed.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from latentbridge import Cancelled, CancelToken, LatentBridgeWarning, Progress
from latentbridge.web._errors import USER_ERRORS, ApiError, describe, jsonable

log = logging.getLogger("latentbridge.web")

STATES: tuple[str, ...] = ("queued", "running", "done", "error", "cancelled")
FINAL: frozenset[str] = frozenset(("done", "error", "cancelled"))
MAX_EVENTS = 2000  # past this, progress events replace the last one (a long tiled run would fill memory)


class Job:
    """One piece of long work: its state, progress events, result or error, and the files it wrote."""

    def __init__(self, kind: str, folder: Path, params: dict[str, Any]) -> None:
        self.id = uuid.uuid4().hex
        self.kind = kind
        self.folder = folder / self.id
        self.params = params
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.state = "queued"
        self.last: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.files: dict[str, tuple[Path, str]] = {}
        self.warnings: list[str] = []
        self.token = CancelToken()
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._emit("state", {"state": "queued"})

    # --- events ---------------------------------------------------------------------------------------------
    def _emit(self, event: str, data: dict[str, Any]) -> None:
        with self._cond:
            if event == "progress" and len(self._events) >= MAX_EVENTS and self._events[-1]["event"] == "progress":
                self._events[-1] = {"id": self._events[-1]["id"], "event": event, "data": data}
            else:
                self._events.append({"id": len(self._events), "event": event, "data": data})
            self._cond.notify_all()

    def progress(self, p: Progress) -> None:
        """The Run's progress callback: one event per step the library reports."""
        data = {"task": p.task, "done": p.done, "total": p.total}
        self.last = data
        self._emit("progress", data)

    def warn(self, message: str) -> None:
        """Something the library did on the job's behalf (automatic tiling, an fp32 redo): kept and streamed."""
        self.warnings.append(message)
        self._emit("warning", {"message": message})

    def events_since(self, index: int) -> tuple[list[dict[str, Any]], bool]:
        """Events from ``index`` on, and whether the job has ended (its last event is then among them)."""
        with self._cond:
            return list(self._events[index:]), self.state in FINAL

    def wait(self, timeout: float) -> bool:
        """Block until the job ends (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.state in FINAL, timeout)

    # --- life -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self.state, self.started = "running", time.time()
            self._emit("state", {"state": "running"})

    def finish(self, state: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        with self._cond:  # the state and its last event change together: a reader never sees one without the other
            if self.state in FINAL:
                return
            self.state, self.finished = state, time.time()
            self.result, self.error = (jsonable(result) if result is not None else None), error
            self._emit(state, self.to_dict())

    def add_file(self, name: str, media_type: str) -> Path:
        """Where the job writes a downloadable file ``name`` (registered under that name)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        self.files[name] = (path, media_type)
        return path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready status: state, progress, result or error, download links."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "progress": self.last,
            "params": self.params,
            "result": self.result,
            "error": self.error,
            "warnings": list(self.warnings),
            "files": [
                {"name": n, "media_type": m, "url": f"/api/jobs/{self.id}/files/{n}"}
                for n, (p, m) in self.files.items()
                if self.state == "done" and p.exists()
            ],
            "events": f"/api/jobs/{self.id}/events",
        }


JobFn = Callable[[Job], dict[str, Any]]


class JobPool:
    """A bounded pool: ``workers`` jobs run at once, at most ``max_jobs`` wait or run; finished ones are kept."""

    def __init__(self, folder: Path, workers: int, max_jobs: int, keep_seconds: float, max_kept: int) -> None:
        self.folder = folder
        self.max_jobs = max_jobs
        self.keep_seconds = keep_seconds
        self.max_kept = max_kept
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="latentbridge-job")
        folder.mkdir(parents=True, exist_ok=True)

    def submit(self, kind: str, fn: JobFn, params: dict[str, Any]) -> Job:
        """Queue ``fn`` as a job (429 when ``max_jobs`` are already queued or running)."""
        self.expire()
        with self._lock:
            active = sum(j.state not in FINAL for j in self._jobs.values())
            if active >= self.max_jobs:
                raise ApiError(
                    429,
                    f"{active} jobs are queued or running, this server's limit: wait for some to finish (or cancel "
                    "them), then submit again",
                    headers={"Retry-After": "5"},
                )
            job = Job(kind, self.folder, jsonable(params))
            self._jobs[job.id] = job
        self._executor.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn: JobFn) -> None:
        if job.token.cancelled:
            job.finish("cancelled", error=describe(Cancelled(f"{job.kind} was cancelled before it started")))
            return
        job.start()
        _current.job = job
        try:
            result = fn(job)
        except Cancelled as exc:
            shutil.rmtree(job.folder, ignore_errors=True)  # a cancelled job leaves nothing behind
            job.finish("cancelled", error=describe(exc))
        except USER_ERRORS as exc:  # ApiError is one of them
            job.finish("error", error=describe(exc))
        except Exception as exc:  # a bug: logged with its traceback here, reported without it
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.finish("error", error=describe(exc))
        else:
            job.finish("done", result=result)
        finally:
            _current.job = None

    def get(self, job_id: str) -> Job:
        """The job with this id (404 when unknown or expired)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (finished jobs expire; GET /api/jobs lists them): submit it again")
        return job

    def all(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop: a queued one ends now, a running one at its next step."""
        job = self.get(job_id)
        job.token.cancel("cancelled by a client")
        if job.state == "queued":
            job.finish("cancelled", error=describe(Cancelled(f"{job.kind} was cancelled before it started")))
        return job

    def expire(self, now: float | None = None) -> int:
        """Drop finished jobs older than ``keep_seconds`` (and the oldest beyond ``max_kept``) with their files."""
        now = time.time() if now is None else now
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.state in FINAL), key=lambda j: j.finished or 0)
            old = [j for j in done if (j.finished or now) < now - self.keep_seconds]
            old += [j for j in done[: max(0, len(done) - self.max_kept)] if j not in old]
            for j in old:
                del self._jobs[j.id]
        for j in old:
            shutil.rmtree(j.folder, ignore_errors=True)
        return len(old)

    def shutdown(self) -> None:
        """Cancel every job and wait for the running ones to stop."""
        for job in self.all():
            job.token.cancel("the server is shutting down")
        self._executor.shutdown(wait=True, cancel_futures=True)
        for job in self.all():  # queued jobs whose futures were dropped
            job.finish("cancelled", error=describe(Cancelled(f"{job.kind} was cancelled: the server shut down")))


_current = threading.local()  # the job a worker thread runs, for capture_warnings


def current_job() -> Job | None:
    """The job the calling thread runs, or None outside a job."""
    return getattr(_current, "job", None)


def capture_warnings() -> None:
    """Send every :class:`~latentbridge.LatentBridgeWarning` raised inside a job to that job ("warning" events and
    ``warnings`` in its status), each time it occurs; other warnings are shown as before.

    Changes the process's warning filters and ``warnings.showwarning``: ``latentbridge serve`` calls it for its own
    process (a test does inside ``warnings.catch_warnings()``, which restores both).
    """
    original = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        job = current_job()
        if job is not None and issubclass(category, LatentBridgeWarning):
            job.warn(str(message))
            return
        original(message, category, filename, lineno, file, line)

    warnings.simplefilter("always", LatentBridgeWarning)
    warnings.showwarning = show
