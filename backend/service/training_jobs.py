"""Training and evaluation jobs of the service: one at a time, each in a child process.

A job runs the real command line — `python -m backend.cli train … --out RUN` or `evaluate --region …`
— in a child process, so the service's own segmentation worker stays responsive (the two share the
CPU/GPU meanwhile). Each job has a folder under the training folder (`$RS2SAM2_TRAINING_DIR`, else
`<cache root>/training`): `job.json` (what it is and its state, rewritten atomically), `inputs/` (the
checked raster link or upload and labels: backend/service/training_inputs.py), `run/` (the training
run) or `evaluation/` (its result), and `log.txt` (the child's output).

Progress comes from the run folder's status.json (training/progress.py). Cancel asks a training run to
stop at its next step (the `stop` file): its state is saved and POST …/resume continues it. A service
that stops (or dies) leaves a running job `interrupted`; the next start finds it so, resumable. At the
end a training job's model is registered in the person's store (backend/weights/person_models.py).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.contract import DEFAULT_START_MODEL, RESUMABLE_STATES
from backend.service.security import ServiceError
from backend.weights.person_models import ModelStore, checkpoint_metadata, utc_now

log = logging.getLogger("rs2sam2.service")
TRAINING_DIR_ENV = "RS2SAM2_TRAINING_DIR"
JOB_FILE, LOG_FILE, STATUS_FILE, STOP_FILE, STATE_FILE = (
    "job.json",
    "log.txt",
    "status.json",
    "stop",
    "last_state.pt",
)
RUN, INPUTS, EVALUATION, RESULT_FILE = "run", "inputs", "evaluation", "result.json"
POLL_S = 0.2  # how often the worker looks at its child
STOP_WAIT_S = 20  # a stopping service waits this long for a training run to save its state
MAX_WAITING = 8  # training/evaluation jobs waiting at once; past it 429 queue_full
ACTIVE = ("queued", "running")


def training_dir() -> Path:
    from backend.cache import cache_root

    override = os.environ.get(TRAINING_DIR_ENV)
    return Path(override).expanduser() if override else cache_root() / "training"


@dataclass
class LearningJob:
    """One training or evaluation job; everything but the process is kept in job.json."""

    id: str
    kind: str  # "train" | "evaluate"
    folder: Path
    model_name: str  # train: the new model's; evaluate: the evaluated model's
    command: list[str]  # the child's arguments after `python -m backend.cli`
    params: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    state: str = "queued"
    error: dict[str, str] | None = None
    labels: dict[str, Any] | None = None
    val_labels: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    pid: int | None = None
    cancel_requested: bool = False

    @classmethod
    def new(cls, kind: str, root: Path, **fields: Any) -> LearningJob:
        job_id = uuid.uuid4().hex
        folder = root / job_id
        (folder / INPUTS).mkdir(parents=True)
        return cls(job_id, kind, folder, **fields)

    @property
    def work(self) -> Path:
        """The child's output folder: the run (train) or the evaluation's."""
        return self.folder / (RUN if self.kind == "train" else EVALUATION)

    def progress(self) -> dict[str, Any]:
        try:
            data = json.loads((self.work / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def resumable(self) -> bool:
        if self.kind != "train":
            return False
        if self.state in RESUMABLE_STATES:
            return True
        return self.state == "failed" and (self.error or {}).get("code") == "disk_full"

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k not in ("folder", "cancel_requested")}
        tmp = self.folder / f".{JOB_FILE}.part"
        tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, self.folder / JOB_FILE)

    @classmethod
    def load(cls, folder: Path) -> LearningJob | None:
        try:
            data = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
            return cls(folder=folder, **data)
        except (OSError, ValueError, TypeError):
            return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def failure_of(log_text: str, kind: str) -> dict[str, str]:
    """The child's error: its one-line `rs2sam2 …: error:` message, or the last line of a traceback."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    marker = ": error: "
    said = [line.split(marker, 1)[1] for line in lines if line.startswith("rs2sam2 ") and marker in line]
    full = "No space left on device" in log_text or "disk is full" in log_text
    if full:
        message = said[-1] if said else "the disk is full; free some space, then resume the run"
        return {"code": "disk_full", "message": message}
    if said:
        return {"code": f"{kind}_failed", "message": said[-1]}
    last = lines[-1][:300] if lines else "the process ended without a word"
    return {"code": "internal", "message": f"the {kind} process failed ({last}); see the server's log"}


class TrainingJobs:
    """The queue and the one worker that runs training and evaluation jobs in child processes."""

    def __init__(
        self,
        root: Path | None = None,
        store: ModelStore | None = None,
        python: str = sys.executable,
        threads: int | None = None,
    ):
        """`threads`: the CPU threads a child may use (OMP_NUM_THREADS; None: its environment's)."""
        self.root = root or training_dir()
        self.store = store or ModelStore.default()
        self.python = python
        self.threads = threads
        self._jobs: dict[str, LearningJob] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._running: LearningJob | None = None
        self._process: subprocess.Popen | None = None
        self._lock = threading.Condition()
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="rs2sam2-training", daemon=True)

    # ---- life
    def start(self) -> None:
        self.recover()
        self._worker.start()

    def recover(self) -> None:
        """Jobs a stopped service left: running or waiting ones are `interrupted` (resumable)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime):
            job = LearningJob.load(folder) if folder.is_dir() else None
            if job is None:
                continue
            if job.state in ACTIVE:
                if job.kind == "train" and pid_alive(job.pid):
                    _touch_stop(
                        job.work
                    )  # a child the old service left still runs: it stops at its next step
                job.state = "interrupted"
                job.save()
                log.info("training job %s was interrupted by a restart; it can be resumed", job.id)
            self._jobs[job.id] = job

    def stop(self) -> None:
        """The service stops: a running training run saves its state (interrupted, resumable)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            running, process = self._running, self._process
        if running is not None and process is not None:
            if running.kind == "train":
                _touch_stop(running.work)
                try:
                    process.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    process.terminate()
            else:
                process.terminate()
        self._worker.join(timeout=STOP_WAIT_S + 5)

    # ---- asking
    @property
    def running(self) -> LearningJob | None:
        return self._running

    def get(self, job_id: str) -> LearningJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise ServiceError(404, "unknown_job", f"there is no training or evaluation job {job_id!r}")
        return job

    def jobs(self) -> list[LearningJob]:
        return sorted(self._jobs.values(), key=lambda job: job.created, reverse=True)

    def queue_position(self, job: LearningJob) -> int | None:
        """0: it runs; n: n jobs run or wait before it; None: neither."""
        with self._lock:
            if self._running is job:
                return 0
            if job.id not in self._queue:
                return None
            return list(self._queue).index(job.id) + (self._running is not None)

    def names_in_use(self) -> set[str]:
        """The model names that waiting or running training jobs will register (casefolded)."""
        return {
            j.model_name.casefold() for j in self._jobs.values() if j.kind == "train" and j.state in ACTIVE
        }

    # ---- changing
    def check_capacity(self) -> None:
        if self._stopping:
            raise ServiceError(503, "shutting_down", "the server is shutting down; try again when it is back")
        if len(self._queue) >= MAX_WAITING:
            raise ServiceError(
                429,
                "queue_full",
                f"{len(self._queue)} training or evaluation jobs already wait; try again when one is done",
                headers={"Retry-After": "60"},
            )

    def submit(self, job: LearningJob) -> int:
        """Queue `job`; its queue position."""
        with self._lock:
            self.check_capacity()
            self._jobs[job.id] = job
            job.state, job.error = "queued", None
            job.save()
            self._queue.append(job.id)
            self._lock.notify_all()
        return self.queue_position(job) or 0

    def cancel(self, job: LearningJob) -> None:
        with self._lock:
            if job.state not in ACTIVE:
                raise ServiceError(409, "already_finished", f"the job has already finished ({job.state})")
            job.cancel_requested = True
            if job.id in self._queue:
                self._queue.remove(job.id)
                job.state = "cancelled"
                job.save()
                return
            process = self._process
        if job.kind == "train":
            _touch_stop(job.work)  # the run stops after its current step, its state saved
        elif process is not None:
            process.terminate()

    def resume(self, job: LearningJob) -> int:
        if not job.resumable:
            raise ServiceError(
                409, "not_resumable", f"the job is {job.state}; only a stopped training run resumes"
            )
        if pid_alive(job.pid):
            raise ServiceError(
                409, "still_stopping", "the run is still saving its state; try again in a moment"
            )
        run = job.work
        (run / STOP_FILE).unlink(missing_ok=True)
        if (run / STATE_FILE).is_file():
            job.command = ["train", "--out", str(run), "--resume", "--no-progress"]
        else:  # stopped before its first saved step: start again
            shutil.rmtree(run, ignore_errors=True)
        job.cancel_requested = False
        return self.submit(job)

    # ---- the worker
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._jobs[self._queue.popleft()]
                self._running = job
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001 - whatever a job does, the worker serves the next
                log.exception("training job %s failed in the service", job.id)
                job.state = "failed"
                job.error = {
                    "code": "internal",
                    "message": f"the service failed on this job ({type(exc).__name__})",
                }
            finally:
                with self._lock:
                    self._running, self._process = None, None
                try:
                    job.save()
                except OSError:
                    log.exception("training job %s: its state could not be saved", job.id)

    def _run(self, job: LearningJob) -> None:
        job.state = "running"
        job.save()
        job.work.mkdir(parents=True, exist_ok=True)
        with open(job.folder / LOG_FILE, "ab") as output:
            process = subprocess.Popen(
                [self.python, "-m", "backend.cli", *job.command],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **({"OMP_NUM_THREADS": str(self.threads)} if self.threads else {})},
                # Ctrl-C in the server's terminal must not kill a run mid-step: the service stops it
                # through its stop file (saved state, resumable)
                start_new_session=True,
            )
        with self._lock:
            self._process = process
        job.pid = process.pid
        job.save()
        code = process.wait()
        self._finish(job, code)

    def _finish(self, job: LearningJob, code: int) -> None:
        if code == 0 and not (job.cancel_requested and job.kind == "evaluate"):
            try:
                job.result = self._register(job) if job.kind == "train" else self._read_result(job)
                job.state = "done"
            except ServiceError as exc:
                job.state, job.error = "failed", {"code": exc.code, "message": str(exc)}
            except OSError as exc:
                job.state, job.error = "failed", _os_error(exc)
            return
        if self._stopping:
            job.state = "interrupted"
        elif job.cancel_requested:
            job.state = "cancelled"
        else:
            text = (job.folder / LOG_FILE).read_text(encoding="utf-8", errors="replace")[-20000:]
            job.state, job.error = "failed", failure_of(text, job.kind)
        log.info("training job %s ended %s (exit code %s)", job.id, job.state, code)

    def _read_result(self, job: LearningJob) -> dict[str, Any]:
        return json.loads((job.work / RESULT_FILE).read_text(encoding="utf-8"))

    def _register(self, job: LearningJob) -> dict[str, Any]:
        """The run's kept checkpoint into the store under the chosen name, with recipe and scores."""
        from backend.contract import to_wire

        best = job.work / "best.safetensors"
        checkpoint = best if best.is_file() else job.work / "final.safetensors"
        metadata = checkpoint_metadata(checkpoint)
        try:
            run_config = json.loads((job.work / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            run_config = {}
        recipe = {
            **(metadata.get("recipe") or {}),
            "kept": checkpoint.stem,
            "replay": job.params.get("replay"),
            "seed": job.params.get("seed"),
        }
        meta = {
            "start_model": job.params.get("start_model") or DEFAULT_START_MODEL,
            "labels": (job.labels or {}).get("used", 0),
            "scores": metadata.get("val") if best.is_file() else None,
            "recipe": recipe,
            "run_config": run_config,
            "job_id": job.id,
        }
        overwrite = bool(job.params.get("overwrite"))
        return to_wire(self.store.add(job.model_name, checkpoint, meta, overwrite=overwrite))


def _touch_stop(run: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / STOP_FILE).touch()


def _os_error(exc: OSError) -> dict[str, str]:
    import errno

    if exc.errno == errno.ENOSPC:
        return {
            "code": "disk_full",
            "message": "the disk is full; the model was not registered (free some space)",
        }
    return {"code": "internal", "message": f"the service could not store the model ({exc.strerror or exc})"}
