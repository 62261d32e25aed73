"""What a running training run tells the process that started it, and how that process stops it.

- `status.json` in the run folder: the phase (preparing, training, validating, saving, stopped, done),
  the step and the run's length, the last logged loss and the latest validation scores. Rewritten
  atomically (temp file, then os.replace) at every step, so a reader never sees half of it. The
  service's training jobs (backend/service/training_jobs.py) read it for their status.
- A stop request: the file `stop` in the run folder, or SIGTERM. The loop checks it after every
  optimizer step, saves its resumable state there (last_state.pt, atomic) and ends with
  CancelledError (exit code 130): the run continues with `rs2sam2 train --out RUN --resume`.
  Under DDP the request is not honoured (the ranks would have to agree on the step): stop the
  launcher instead.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
STOP_FILE = "stop"


class RunStatus:
    """The run folder's status.json; with `out` None (another rank, an in-process test) it only keeps
    the fields."""

    def __init__(self, out: Path | None = None):
        self.path = None if out is None else Path(out) / STATUS_FILE
        self.fields: dict[str, Any] = {}

    def update(self, **fields: Any) -> None:
        self.fields.update(fields, updated=time.time(), pid=os.getpid())
        if self.path is None:
            return
        tmp = self.path.with_name(f".{STATUS_FILE}.part")
        tmp.write_text(json.dumps(self.fields, default=float), encoding="utf-8")
        os.replace(tmp, self.path)


def read_status(out: Path) -> dict[str, Any]:
    """The run's last status ({} when it has written none)."""
    try:
        data = json.loads((Path(out) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def request_stop(out: Path) -> None:
    """Ask the run in `out` to stop at its next step (it may not have started yet)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / STOP_FILE).touch()


_SIGTERM = threading.Event()


def stop_on_sigterm() -> None:
    """SIGTERM becomes a stop request of the run in this process instead of killing it (the command
    line's `rs2sam2 train`; main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: _SIGTERM.set())


class StopRequest:
    """Whether the run has been asked to stop: its stop file, or SIGTERM after `stop_on_sigterm()`."""

    def __init__(self, out: Path | None = None):
        self.path = None if out is None else Path(out) / STOP_FILE

    def requested(self) -> bool:
        return _SIGTERM.is_set() or (self.path is not None and self.path.exists())

    def clear(self) -> None:
        """Forget an earlier request (a run being resumed)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
