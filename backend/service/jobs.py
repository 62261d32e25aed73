"""Segmentation jobs and the one worker that runs them.

One model per process and one worker thread: every model call is serialised through the queue, so
concurrent clients never contend for the accelerator, and the HTTP event loop stays free (health
answers at once during a run). Jobs check their cancel flag before every tile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.engine.errors import ModelOutOfMemoryError
from backend.engine.options import SegmentOptions
from backend.engine.segment import segment
from backend.errors import CancelledError, UserError
from backend.model.api import PhraseSegmenter
from backend.service.config import FINISHED_JOBS_KEPT
from rs2sam2_qgis.contract import FINAL_JOB_STATES

log = logging.getLogger("rs2sam2.service")


@dataclass(frozen=True)
class JobError:
    code: str
    message: str
    status: int  # the HTTP status the result endpoint answers with


@dataclass
class SegmentRequest:
    """What a job segments: a raster file (upload saved to a temp file, or an allowed path)."""

    raster: Path
    name: str  # recorded as the features' `source`
    phrases: list[str]
    options: SegmentOptions
    cleanup: Callable[[], None] = lambda: None  # removes the uploaded temp file when the job ends


@dataclass
class Job:
    request: SegmentRequest
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = "queued"
    done: int = 0
    total: int = 0
    result: dict | None = None
    error: JobError | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_JOB_STATES


def error_for(exc: BaseException) -> JobError:
    """A job's failure as the HTTP error its result answers with."""
    if isinstance(exc, ModelOutOfMemoryError):
        return JobError(exc.code, str(exc), 503)
    if isinstance(exc, UserError):
        code = getattr(exc, "code", "bad_input")
        return JobError(code, str(exc), 404 if code == "not_found" else 400)
    return JobError("internal", f"the server failed on this request ({type(exc).__name__}); see its log", 500)


class JobManager:
    def __init__(self, model: PhraseSegmenter, finished_kept: int = FINISHED_JOBS_KEPT):
        self.model = model
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._finished_kept = finished_kept
        self._running: Job | None = None
        self._worker = threading.Thread(target=self._work, name="rs2sam2-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel_requested.set()
        self._queue.put(None)
        self._worker.join(timeout=30)

    @property
    def busy(self) -> bool:
        return self._running is not None or not self._queue.empty()

    def submit(self, request: SegmentRequest) -> Job:
        job = Job(request)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        job.cancel_requested.set()
        if not job.is_final:
            job.status = "cancelled"  # the worker stops before its next tile and leaves it so

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.is_final]
        for job_id in finished[: max(0, len(finished) - self._finished_kept)]:
            del self._jobs[job_id]

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                if not job.cancel_requested.is_set():
                    self._running = job
                    self._run(job)
            finally:
                self._running = None
                job.request.cleanup()
                if job.cancel_requested.is_set():
                    job.status = "cancelled"
                job.finished.set()

    def _run(self, job: Job) -> None:
        job.status = "running"
        request = job.request
        started = time.perf_counter()

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            result = segment(
                request.raster,
                request.phrases,
                self.model,
                request.options,
                progress=progress,
                cancel=job.cancel_requested.is_set,
                name=request.name,
            )
        except CancelledError:
            job.status = "cancelled"
            return
        except Exception as exc:  # every failure becomes the job's error; the worker keeps serving
            job.error = error_for(exc)
            if job.error.status >= 500:
                log.exception("job %s failed", job.id)
            job.status = "failed"
            return
        job.result = result.to_geojson()
        job.status = "done"
        log.info("job %s: %d features in %.1f s", job.id, len(result.features), time.perf_counter() - started)
