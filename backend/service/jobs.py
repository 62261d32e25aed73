"""Segmentation jobs and the one worker that runs them.

One model per process and one worker thread: every model call is serialised through the queue, so
concurrent clients never contend for the accelerator, and the HTTP event loop stays free (health
answers at once during a run). Jobs check their cancel flag before every tile.

Bounded: at most `max_queued` jobs wait or run at once, at most `max_per_client` of them from one client
address (past either, 429 with Retry-After), and a job running longer than `time_limit_s` stops at its
next tile and fails with `time_limit`. Whatever a job does, the worker survives it and serves the next.
"""

from __future__ import annotations

import logging
import math
import queue
import statistics
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.contract import FINAL_JOB_STATES
from backend.engine.errors import ModelOutOfMemoryError
from backend.engine.options import EngineOptions
from backend.engine.predict import is_out_of_memory
from backend.engine.segment import segment
from backend.errors import CancelledError, UserError
from backend.model.api import PhraseSegmenter
from backend.service.config import (
    DEFAULT_JOB_TIME_LIMIT_S,
    DEFAULT_MAX_JOBS_PER_CLIENT,
    DEFAULT_MAX_QUEUED_JOBS,
    FINISHED_JOBS_KEPT,
)
from backend.service.security import ServiceError

log = logging.getLogger("rs2sam2.service")
TIME_LIMIT = "time_limit"
SHUTTING_DOWN = "shutting_down"
RETRY_AFTER_DEFAULT_S = 5  # before any job has finished, a client waits this long before asking again
RETRY_AFTER_MAX_S = 300
RECENT_JOBS = 20  # the run times Retry-After is estimated from
# The engine's codes that are not a plain 400 (docs/service-api.md lists every code with its status).
_STATUS_OF_CODE = {"not_found": 404, "path_not_allowed": 403}


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
    options: EngineOptions
    cleanup: Callable[[], None] = lambda: None  # removes the uploaded temp file when the job ends
    client: str = ""  # the client's address: queue places are counted per client


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
    if is_out_of_memory(exc):  # outside a model call (reading, refining, vectorising): the same answer
        return JobError(
            ModelOutOfMemoryError.code,
            "the server ran out of memory on this request; choose a smaller area, fewer phrases or a "
            "smaller tile size",
            503,
        )
    if isinstance(exc, ServiceError):
        return JobError(exc.code, str(exc), exc.status)
    if isinstance(exc, UserError):
        code = getattr(exc, "code", "bad_input")
        return JobError(code, str(exc), _STATUS_OF_CODE.get(code, 400))
    return JobError("internal", f"the server failed on this request ({type(exc).__name__}); see its log", 500)


class JobManager:
    def __init__(
        self,
        model: PhraseSegmenter,
        finished_kept: int = FINISHED_JOBS_KEPT,
        max_queued: int = DEFAULT_MAX_QUEUED_JOBS,
        max_per_client: int = DEFAULT_MAX_JOBS_PER_CLIENT,
        time_limit_s: float = DEFAULT_JOB_TIME_LIMIT_S,
    ):
        self.model = model
        self.max_queued = max_queued
        self.max_per_client = max_per_client
        self.time_limit_s = time_limit_s
        self.clock: Callable[[], float] = time.monotonic  # what the time limit is measured with
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._finished_kept = finished_kept
        self._running: Job | None = None
        self._closing = False
        self._recent_seconds: deque[float] = deque(maxlen=RECENT_JOBS)
        self._worker = threading.Thread(target=self._work, name="rs2sam2-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def shutdown(self) -> None:
        """The server is stopping: refuse new jobs, cancel every job (each stops before its next tile)."""
        with self._lock:
            self._closing = True
            jobs = [job for job in self._jobs.values() if not job.is_final]
        for job in jobs:
            job.error = JobError(SHUTTING_DOWN, "the server is shutting down; the run was cancelled", 503)
            self.cancel(job)
        if jobs:
            log.info("shutting down: %d job(s) cancelled", len(jobs))

    def stop(self, timeout_s: float = 30) -> None:
        self.shutdown()
        self._queue.put(None)
        self._worker.join(timeout=timeout_s)

    @property
    def busy(self) -> bool:
        return self._running is not None or not self._queue.empty()

    def check_capacity(self, client: str) -> None:
        """429 (with Retry-After) when the server's or this client's queue is full; 503 when stopping."""
        with self._lock:
            self._check_capacity(client)

    def _check_capacity(self, client: str) -> None:
        if self._closing:
            raise ServiceError(503, SHUTTING_DOWN, "the server is shutting down; try again when it is back")
        waiting = [job for job in self._jobs.values() if not job.is_final]
        mine = sum(job.request.client == client for job in waiting)
        if len(waiting) < self.max_queued and mine < self.max_per_client:
            return
        seconds = self._retry_after_s()
        if len(waiting) >= self.max_queued:
            code, message = "queue_full", f"the server already has {len(waiting)} jobs waiting or running"
        else:
            code, message = "too_many_jobs", f"you already have {mine} jobs waiting or running on this server"
        retry = {"Retry-After": str(seconds)}
        raise ServiceError(429, code, f"{message}, its limit; try again in {seconds} s", headers=retry)

    def _retry_after_s(self) -> int:
        if not self._recent_seconds:
            return RETRY_AFTER_DEFAULT_S
        typical = statistics.median(self._recent_seconds)
        return int(min(RETRY_AFTER_MAX_S, max(1, math.ceil(typical))))

    def submit(self, request: SegmentRequest) -> Job:
        job = Job(request)
        with self._lock:
            self._check_capacity(request.client)
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
            started = time.monotonic()
            try:
                if not job.cancel_requested.is_set():
                    self._running = job
                    self._run(job)
            except Exception as exc:  # noqa: BLE001 - whatever a job does, the worker serves the next one
                log.exception("job %s failed outside the run", job.id)
                job.error, job.status = error_for(exc), "failed"
            finally:
                self._running = None
                self._recent_seconds.append(time.monotonic() - started)
                try:
                    job.request.cleanup()
                except Exception:  # noqa: BLE001 - a temp file that will not go is not the client's problem
                    log.exception("job %s: cleaning up its upload failed", job.id)
                if job.cancel_requested.is_set() and job.status != "failed":
                    job.status = "cancelled"
                job.finished.set()

    def _run(self, job: Job) -> None:
        job.status = "running"
        request = job.request
        started = time.monotonic()
        deadline = self.clock() + self.time_limit_s

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        def stop() -> bool:
            return job.cancel_requested.is_set() or self.clock() > deadline

        try:
            result = segment(
                request.raster,
                request.phrases,
                self.model,
                request.options,
                progress=progress,
                cancel=stop,
                name=request.name,
            )
            job.result = result.to_geojson()
        except CancelledError:
            if job.cancel_requested.is_set():
                job.status = "cancelled"
                return
            job.error = JobError(
                TIME_LIMIT,
                f"the run took longer than this server's limit of {self.time_limit_s:g} s per job and was "
                f"stopped after {job.done} of {job.total} steps; choose a smaller area, fewer phrases or a "
                "coarser gsd",
                400,
            )
            job.status = "failed"
            log.info("job %s stopped at the time limit (%g s)", job.id, self.time_limit_s)
            return
        except Exception as exc:  # every failure becomes the job's error; the worker keeps serving
            job.error = error_for(exc)
            if job.error.status >= 500:  # a fault or out of memory: the traceback in the log
                log.exception("job %s failed", job.id)
            job.status = "failed"
            return
        job.status = "done"
        log.info("job %s: %d features in %.1f s", job.id, len(result.features), time.monotonic() - started)
